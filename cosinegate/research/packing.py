"""How many runs to train at once on one device: measure aggregate images/s against concurrency, pick the best.

Each level k starts k copies of `cosinegate bench-train --probe` (`python -m cosinegate.cli.bench_train`; the real
training step of a gated run); they warm up, wait at a file barrier, then count the images they train in the same wall-clock
window. The aggregate is the sum. The pick is the smallest k within `tolerance` of the best aggregate,
since fewer concurrent runs finish sooner each and carry less partial state to the next session.
"""

import json
import subprocess
import tempfile
import time
from pathlib import Path

from cosinegate.artifacts import atomic_write_json, read_json
from cosinegate.errors import CosineGateError
from cosinegate.schema import whole
from cosinegate.research import BENCH_TRAIN_COMMAND, child_env, experiments
from cosinegate.training.loop import hardware_label


def probe_level(k, device, backbone, setting, seconds, batch_size=128, timeout=180, extra=(), command=BENCH_TRAIN_COMMAND):
    """Aggregate images/s of k concurrent probe processes (`extra`: more cosinegate bench-train flags, e.g. --threads;
    `command`: the argv that starts cosinegate bench-train)."""
    with tempfile.TemporaryDirectory(prefix="cosinegate-probe-") as folder:
        barrier = Path(folder)
        procs = [subprocess.Popen([*command, "--probe", folder, "--probe-id", str(i), "--device", device,
                                   "--backbone", backbone, "--settings", setting, "--seconds", str(seconds),
                                   "--batch-size", str(batch_size), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env=child_env())
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
    return {"jobs": k, "images_per_s": sum(r["images"] / r["seconds"] for r in results),
            "max_memory_bytes": max(r["memory"] for r in results)}


def parse_concurrency(text):
    """'1x2,2x1' -> [(1, 2), (2, 1)] (jobs, threads)."""
    try:
        specs = [tuple(int(n) for n in spec.lower().split("x")) for spec in text.split(",")]
    except ValueError:
        specs = []
    if not specs or not all(len(s) == 2 and min(s) >= 1 for s in specs):
        raise CosineGateError(f"--concurrency {text!r}: give JOBSxTHREADS pairs, e.g. 1x2,2x1.")
    return specs


def concurrency_rows(specs, device, backbone, setting, seconds, batch_size=128, warmup=3):
    """Aggregate images/s of JOBS concurrent probe processes of THREADS threads each (``specs``: [(jobs, threads)]),
    dense ("none") and gated ("predictive")."""
    rows = []
    for jobs, threads in specs:
        row = {"jobs": jobs, "threads": threads}
        for mode in ("none", "predictive"):
            level = probe_level(jobs, device, backbone, setting, seconds, batch_size,
                                extra=["--threads", str(threads), "--probe-mode", mode, "--warmup", str(warmup)])
            row[mode] = level["images_per_s"]
        rows.append(row)
    return rows


def choose_jobs(levels, device, backbone="resnet20", setting="fp32", seconds=8.0, tolerance=0.05, log=print):
    """Probe each concurrency level in `levels` (ascending); return (chosen jobs, measurements). Stops early
    once a level is more than `tolerance` below the best so far."""
    measured = []
    for k in levels:
        row = probe_level(k, device, backbone, setting, seconds)
        measured.append(row)
        log(f"concurrency {k}: {row['images_per_s']:.0f} images/s aggregate")
        best = max(r["images_per_s"] for r in measured)
        if row["images_per_s"] < (1 - tolerance) * best:
            break
    best = max(r["images_per_s"] for r in measured)
    chosen = min(r["jobs"] for r in measured if r["images_per_s"] >= (1 - tolerance) * best)
    return chosen, measured


def parse_levels(text):
    """--jobs-levels '1,2,4' -> [1, 2, 4]; anything else than whole numbers >= 1 is one line."""
    try:
        levels = sorted({int(k) for k in str(text).split(",")})
    except ValueError:
        levels = [0]
    if not levels or levels[0] < 1:
        raise CosineGateError(f"--jobs-levels {text!r}: give comma-separated numbers of runs, each at least 1, e.g. 1,2,4.")
    return levels


def resolve_jobs(jobs, levels, device, out, pending, setting="fp32", seconds=8.0, log=print):
    """--jobs N, or for 'auto' the measured best concurrency (probed once per device and setting, kept in
    OUT/concurrency.json); never more than the runs pending."""
    if str(jobs) != "auto":
        try:
            count = int(jobs)
        except ValueError:
            count = 0
        if count < 1:
            raise CosineGateError(f"--jobs {jobs!r}: give a number of runs at once (at least 1) or auto.")
        return count
    key = {"hardware": hardware_label(device), "setting": setting}
    cache = Path(out) / "concurrency.json"
    if cache.is_file():
        known = read_json(cache, "the measured concurrency")
        chosen = known.get("chosen")
        if not whole(chosen) or chosen < 1:
            raise CosineGateError(f"{cache} holds chosen={chosen!r}, not a number of runs (1 or more); delete it and "
                                  "--jobs auto measures again.")
        if {k: known.get(k) for k in key} == key:
            log(f"--jobs auto: {chosen} (measured before, {cache})")
            return min(chosen, pending)
    chosen, measured = choose_jobs(parse_levels(levels), device, setting=setting, seconds=seconds, log=log)
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(cache, {**key, "chosen": chosen, "levels": measured})
    log(f"--jobs auto: {chosen} concurrent runs (aggregate images/s: "
          + ", ".join(f"{r['jobs']}: {r['images_per_s']:.0f}" for r in measured) + ")")
    return min(chosen, pending)


MIN_LAUNCH_SECONDS = 45  # no run is started with less time than this left before the deadline


def run_all(pending, out, device, jobs, extra=(), deadline=None, admit=None):
    """Train pending runs, `jobs` at a time, with a tqdm bar over runs; return failed names.

    A run that starts from another (two-phase) waits until that one is done. With a deadline (time.time()
    value) every run gets the time left as --time-limit and none is started with less than
    MIN_LAUNCH_SECONDS left. `admit(run, active_names)`, if given, may hold a run back (e.g. to bound the
    partial state a deadline leaves behind).
    """
    from tqdm import tqdm

    out = Path(out)
    queue, active, failed = list(pending), {}, []
    with tqdm(total=len(pending), desc="runs", unit="run") as bar:
        try:
            while queue or active:
                for run in [r for r in queue if r.init_from_run in failed]:
                    queue.remove(run)
                    failed.append(run.name)
                ready = [r for r in queue if not r.init_from_run or experiments.run_state(out / "runs" / r.init_from_run) == "done"]
                ready = [r for r in ready if admit is None or admit(r, list(active))]
                left = None if deadline is None else deadline - time.time()
                while ready and len(active) < jobs and (left is None or left > MIN_LAUNCH_SECONDS):
                    run = ready.pop(0)
                    queue.remove(run)
                    limit = [] if left is None else ["--time-limit", f"{left - 10:.0f}"]
                    active[run.name] = experiments.launch(run, out, device, [*extra, *limit])
                    ready = [r for r in ready if admit is None or admit(r, list(active))]
                if not active and (not ready or (left is not None and left <= MIN_LAUNCH_SECONDS)):
                    break  # what is left waits for a run that is not done, or for the next invocation
                for name, proc in list(active.items()):
                    if proc.poll() is not None:
                        if proc.returncode != 0:
                            failed.append(name)
                        del active[name]
                        bar.update(1)
                time.sleep(0.5)
        finally:
            for proc in active.values():
                proc.terminate()
    return failed
