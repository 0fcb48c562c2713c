"""One GPU run of the training campaign (`run_on_device`) and, back here, taking what it returned (`absorb`).

A GPU run unpacks the data tar and the previous run's state, measures training throughput and the best number of
concurrent runs (first run only, kept in the state), trains the planned runs in priority order until the deadline
(each run stops after its last whole epoch), and writes at most MAX_FILES files to the output folder: results.md,
results.json, pareto.png, campaign.json, bench.txt, state-N.tar (for the next run) and finals-N.tar (model-only
checkpoints of the runs that finished). `campaign.py` holds the stages and the state's packing.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cosinegate.errors import CosineGateError
from cosinegate.research import BENCH_TRAIN_COMMAND, child_env
from cosinegate.research import campaign as cp
from cosinegate.training.throughput import FAST

WORK = Path("/tmp/cosinegate-campaign")  # fixed: run configs record the data root and teacher paths under it
PACK_SECONDS = 40  # kept free at the end of the budget for collecting and packing
MAX_FILES, MAX_FILE_BYTES = 8, 16 * 2**20  # what the device tool returns
BENCH_TIMEOUT = 150


@dataclass(frozen=True)
class RunSettings:
    """What one GPU run does; `tiny` is the CPU dry-run size (2 epochs, 1 seed, 600 images, 2 stages)."""

    out: str
    data_tar: str = ".campaign/cifar10-jpeg.tar.gz"
    state: str = None  # folder with the previous run's state-*.tar; None: a fresh campaign
    device: str = "cuda"
    budget: float = 540.0
    epochs: int = 160
    seeds: int = 2
    subset: int = None
    jobs: str = "auto"
    jobs_levels: str = "1,4,8,12"
    bench_steps: int = 30
    compile: bool = False
    tiny: bool = False
    work: str = str(WORK)


@dataclass
class RunResult:
    """campaign.json's content: what one GPU run did."""

    seconds: float
    budget: float
    jobs: int
    device: str
    tiny: bool
    failed: list
    runs: dict  # {run name: {"state", "epochs_done", "epochs"}}
    log: list = field(default_factory=list)
    files: list = field(default_factory=list)  # names written to the output folder

    def counts(self):
        """{run state: how many runs are in it}."""
        return dict(Counter(entry["state"] for entry in self.runs.values()))


@dataclass(frozen=True)
class Absorbed:
    """Where `absorb` put a GPU run's returned files."""

    source: str
    carry: str
    states: int
    finals: str
    results: str


def run_bench(device, steps, tiny, work, out, log):
    """bench_train dense vs gated per setting, time-boxed; its table goes to OUT/bench.txt and WORK/bench.json."""
    cmd = [*BENCH_TRAIN_COMMAND, "--device", device, "--steps", str(steps), "--repeats", "2",
           "--json", str(Path(work) / "bench.json")]
    if tiny:
        cmd += ["--settings", "fp32", "--repeats", "1", "--warmup", "1", "--steps", "2"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=BENCH_TIMEOUT, env=child_env())
        text = result.stdout + (result.stderr[-1500:] if result.returncode else "")
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        text = stdout + f"\n(timed out after {BENCH_TIMEOUT} s)"
    (Path(out) / "bench.txt").write_text(text)
    log(text)


def speed_flags(bench_json, cuda, compile_, log):
    """cosinegate train's --fast on CUDA unless the bench could not run that setting (then the plain fp32 path); --compile
    if asked."""
    from cosinegate.artifacts import read_json

    flags = ["--fast"] if cuda else []
    bench_json = Path(bench_json)
    if cuda and bench_json.is_file():
        rows = read_json(bench_json, "the bench's table").get("rows")
        if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("setting"), str) for r in rows):
            raise CosineGateError(f"{bench_json} has no list of rows with a setting each; delete it to bench again.")
        if any("error" in r for r in rows if r["setting"] == FAST):
            log("bench: the fast setting failed on this machine; training with the fp32 path")
            flags = []
    return flags + (["--compile"] if compile_ else [])


def check_returned(out):
    """Refuse an output folder the device tool would not return whole (too many files, or one over 16 MiB)."""
    files = sorted(p for p in Path(out).iterdir() if p.is_file())
    too_big = [p.name for p in files if p.stat().st_size > MAX_FILE_BYTES]
    if len(files) > MAX_FILES or too_big:
        raise CosineGateError(f"{len(files)} files in {out} (limit {MAX_FILES}); over 16 MiB: {too_big or 'none'}.")
    return [p.name for p in files]


def run_on_device(settings, log=print):
    """Train what fits in settings.budget seconds, continuing from settings.state; return a RunResult (also written
    as OUT/campaign.json)."""
    s = settings
    began = time.time()
    deadline = began + s.budget - PACK_SECONDS
    out, work = Path(s.out), Path(s.work)
    out.mkdir(parents=True, exist_ok=True)
    lines = []

    def say(text):
        log(text)
        lines.append(f"[{time.time() - began:6.1f}s] {text}")

    shutil.rmtree(work / "data", ignore_errors=True)
    data_root = cp.unpack_data(s.data_tar, work / "data")
    campaign_dir = work / "campaign"
    if s.state is not None:  # a previous GPU run's state replaces whatever a local earlier try left here
        shutil.rmtree(campaign_dir, ignore_errors=True)
    campaign_dir.mkdir(parents=True, exist_ok=True)
    restored = cp.unpack_state(s.state, campaign_dir)
    say(f"data {data_root}; state: {len(restored)} tars restored")
    cache = os.environ.get("COSINEGATE_CACHE")
    os.environ["COSINEGATE_CACHE"] = str(work / "cache")  # inherited by every run: decode once, here
    try:
        return _train_and_pack(s, began, deadline, out, campaign_dir, data_root, say, lines)
    finally:
        if cache is None:
            os.environ.pop("COSINEGATE_CACHE", None)
        else:
            os.environ["COSINEGATE_CACHE"] = cache


def _train_and_pack(s, began, deadline, out, campaign_dir, data_root, say, lines):
    """run_on_device's work once the data and the state are unpacked."""
    from cosinegate.data import load_dataset
    from cosinegate.research.experiments import collect, run_state, write_results
    from cosinegate.research.packing import resolve_jobs, run_all

    train, test = load_dataset("imagefolder", data_root)
    say(f"decoded {len(train)} train / {len(test)} test images")

    if not (campaign_dir / "bench.json").is_file():
        run_bench(s.device, s.bench_steps, s.tiny, campaign_dir, out, say)
    stages = cp.TINY_STAGES if s.tiny else cp.STAGES
    epochs, seeds, subset = (2, 1, s.subset or 600) if s.tiny else (s.epochs, s.seeds, s.subset)
    subset = subset if subset and subset < len(train) else None
    runs = cp.plan(stages, epochs, seeds, str(data_root), subset, finetune_epochs=1 if s.tiny else None)
    pending = [r for r in runs if run_state(campaign_dir / "runs" / r.name) != "done"]
    say(f"{len(runs)} runs planned, {len(runs) - len(pending)} finished before, {len(pending)} to train")
    cuda = str(s.device).startswith("cuda")
    jobs = resolve_jobs(s.jobs, "1,2" if s.tiny else s.jobs_levels, s.device, campaign_dir, max(1, len(pending)),
                        FAST if cuda else "fp32", seconds=6.0 if s.tiny else 8.0, log=say) if pending else 0
    sizes = {b: cp.state_bytes(b) for b in {r.backbone for r in runs}}

    def admit(run, active):  # bound what the deadline leaves behind, so the next run can carry it
        partial = [r for r in runs if r.name in active or run_state(campaign_dir / "runs" / r.name) == "partial"]
        return sum(sizes[r.backbone] for r in partial if r.name != run.name) + sizes[run.backbone] <= cp.STATE_LIMIT_BYTES - 2**20

    extra = speed_flags(campaign_dir / "bench.json", cuda, s.compile, say)
    failed = run_all(pending, campaign_dir, s.device, jobs, extra, deadline, admit) if pending else []
    say(f"training stopped at {time.time() - began:.0f}s; {jobs} concurrent; failed: {failed or 'none'}")
    rows = collect(campaign_dir, runs)
    if rows:
        note = (f"Campaign (issue 16): {epochs} epochs, cosine LR 0.1, batch 128, SGD momentum 0.9, wd 5e-4 (paper: its own "
                f"recipe; two-phase: {1 if s.tiny else max(1, epochs // 4)} fine-tuning epochs from the dense run); "
                f"data: {data_root.name}{' subset ' + str(subset) if subset else ''}; seeds {seeds}; "
                f"hardware: {', '.join(sorted({r['hardware'] for r in rows}))}.")
        write_results(out, rows, note, failed, f"CIFAR-10, {epochs} epochs (campaign)")
    _write_state(campaign_dir, runs, out, say)
    result = RunResult(seconds=0.0, budget=s.budget, jobs=jobs, device=str(s.device), tiny=s.tiny, failed=failed,
                       runs=cp.progress_report(campaign_dir, runs), log=lines)
    say(f"done at {time.time() - began:.0f}s: " + ", ".join(f"{k} {v}" for k, v in result.counts().items()))
    result.seconds = time.time() - began
    (out / "campaign.json").write_text(json.dumps({k: v for k, v in asdict(result).items() if k != "files"}, indent=1))
    result.files = check_returned(out)
    return result


def _write_state(campaign_dir, runs, out, log):
    """state-N.tar (all of it, or an error) and as many finals-N.tar as the file limit leaves (gated and dense first)."""
    state, finals = cp.state_members(campaign_dir, runs)
    if sum(len(d) for _, d in state) > cp.STATE_LIMIT_BYTES:
        raise CosineGateError(f"state is {sum(len(d) for _, d in state) / 2**20:.1f} MiB, over the carry limit; lower --jobs.")
    state_files = cp.write_parts(state, out, "state")
    room = MAX_FILES - 5 - len(state_files)  # results.md, results.json, pareto.png, campaign.json, bench.txt
    kept = [m for m in finals if "-static" not in m[0]] + [m for m in finals if "-static" in m[0]]  # static: cheap to retrain
    finals_files = cp.write_parts(kept, out, "finals") if kept else []
    while len(finals_files) > max(0, room):
        finals_files.pop().unlink()
        log("finals dropped: more parts than the file limit allows")


def absorb(files_at, results, carry):
    """Take a GPU run's returned files: state-*.tar to `carry` (replacing the old state), finals-*.tar unpacked to
    carry's sibling finals/, the tables, plot and bench into `results`, campaign.json appended to
    results/campaign-log.jsonl. Returns an Absorbed."""
    from cosinegate.archives import check, extract
    from cosinegate.artifacts import publish_dir, read_json, staging_dir

    src, carry, results = Path(files_at), Path(carry), Path(results)
    if not (src / "campaign.json").is_file():
        raise CosineGateError(f"{src} holds no campaign.json; pass the folder the device tool returned (files_at).")
    record = read_json(src / "campaign.json", "the GPU run's campaign.json")
    fix = "pass the folder a GPU run returned, as it came back."
    finals = carry.parent / "finals"
    states = sorted(src.glob("state-*.tar"))
    staged = Path(tempfile.mkdtemp(prefix=".finals-", dir=carry.parent.resolve() if carry.parent.exists() else None))
    try:  # every tar checked (the finals unpacked aside) before the carried state is replaced
        for path in states:
            check(path, fix)
        for path in sorted(src.glob("finals-*.tar")):
            extract(path, staged, fix)
        shutil.copytree(staged, finals, dirs_exist_ok=True)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    new_carry = staging_dir(carry)  # the state of this run replaces the previous one's in one step
    for path in states:
        shutil.copy(path, new_carry / path.name)
    publish_dir(new_carry, carry)
    results.mkdir(parents=True, exist_ok=True)
    for name in ("results.md", "results.json", "pareto.png", "bench.txt"):
        if (src / name).is_file():
            shutil.copy(src / name, results / name)
    with open(results / "campaign-log.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")
    return Absorbed(str(src), str(carry), len(list(carry.glob("*.tar"))), str(finals), str(results))
