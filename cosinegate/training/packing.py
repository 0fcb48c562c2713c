"""How many runs to train at once on one device: measure aggregate images/s against concurrency, pick the best.

Each level k starts k copies of `train/bench_train.py --probe` (the real training step of a gated
run); they warm up, wait at a file barrier, then count the images they train in the same wall-clock
window. The aggregate is the sum. The pick is the smallest k within `tolerance` of the best aggregate,
since fewer concurrent runs finish sooner each and carry less partial state to the next session.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cosinegate.errors import CosineGateError


def probe_level(script, k, device, backbone, setting, seconds, batch_size=128, timeout=180):
    """Aggregate images/s of k concurrent probe processes."""
    with tempfile.TemporaryDirectory(prefix="cosinegate-probe-") as folder:
        barrier = Path(folder)
        procs = [subprocess.Popen([sys.executable, str(script), "--probe", folder, "--probe-id", str(i), "--device", device,
                                   "--backbone", backbone, "--settings", setting, "--seconds", str(seconds),
                                   "--batch-size", str(batch_size)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for i in range(k)]
        try:
            deadline = time.time() + timeout
            while len(list(barrier.glob("ready-*"))) < k:
                failed = [p for p in procs if p.poll() not in (None, 0)]
                if failed or time.time() > deadline:
                    err = failed[0].stderr.read().decode()[-300:] if failed else "timed out"
                    raise CosineGateError(f"concurrency probe with {k} processes failed ({err.strip()}); pass --jobs N instead of auto.")
                time.sleep(0.05)
            (barrier / "go").write_text(str(time.time() + 0.5))
            for p in procs:
                p.wait(timeout=seconds + 120)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        results = [json.loads((barrier / f"result-{i}.json").read_text()) for i in range(k)]
    return {"jobs": k, "images_per_s": sum(r["images"] for r in results) / seconds,
            "max_memory_bytes": max(r["memory"] for r in results)}


def choose_jobs(levels, script, device, backbone="resnet20", setting="fp32", seconds=8.0, tolerance=0.05, log=print):
    """Probe each concurrency level in `levels` (ascending); return (chosen jobs, measurements). Stops early
    once a level is more than `tolerance` below the best so far."""
    measured = []
    for k in levels:
        row = probe_level(script, k, device, backbone, setting, seconds)
        measured.append(row)
        log(f"concurrency {k}: {row['images_per_s']:.0f} images/s aggregate")
        best = max(r["images_per_s"] for r in measured)
        if row["images_per_s"] < (1 - tolerance) * best:
            break
    best = max(r["images_per_s"] for r in measured)
    chosen = min(r["jobs"] for r in measured if r["images_per_s"] >= (1 - tolerance) * best)
    return chosen, measured
