"""One GPU run of the issue-16 campaign (at most --budget seconds), continuing from the previous run's state.

    # here, once (run-prep): the CIFAR-10 JPEG folder as a tar under the ignored .campaign/ folder
    python train/campaign.py --make-tar ROOT .campaign/cifar10-jpeg.tar.gz
    # on the GPU machine (device tool, carry [".campaign"]), once per GPU run:
    python3 train/campaign.py --device cuda --data-tar .campaign/cifar10-jpeg.tar.gz --state .campaign/state --out $OUT
    # here, after each GPU run: the returned state for the next run, the results into train/results/
    python train/campaign.py --absorb FILES_AT --results train/results/cifar10-campaign-h200

It unpacks the data and the state, measures training throughput (bench.txt, first run only) and the best
number of concurrent runs (first run only), trains the planned runs in priority order with a deadline
(each run stops cleanly after its last whole epoch), and writes to --out at most 8 files: results.md,
results.json, pareto.png, campaign.json, bench.txt, state-N.tar (to carry to the next run) and
finals-1.tar (model-only checkpoints of the runs that finished). --tiny is the CPU dry-run size.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

WORK = Path("/tmp/cosinegate-campaign")  # fixed: run configs record the data root and teacher paths under it
PACK_SECONDS = 40  # kept free at the end of the budget for collecting and packing
MAX_FILES, MAX_FILE_BYTES = 8, 16 * 2**20


def parse_args(argv):
    from cosinegate.cli.args import HelpFormatter, add_device_flags, add_output_flag, add_report_flags, add_version_flag

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--make-tar", nargs=2, metavar=("JPEG_FOLDER", "TAR"), help="run-prep: tar the CIFAR-10 JPEG folder")
    parser.add_argument("--per-class", type=int, help="with --make-tar: only N images per class and split (dry runs)")
    parser.add_argument("--absorb", metavar="FILES_AT", help="here, after a GPU run: take its returned files")
    parser.add_argument("--results", default="train/results/cifar10-campaign-h200", help="with --absorb: where the tables go")
    parser.add_argument("--carry", default=".campaign/state", help="with --absorb: where the state for the next run goes")
    add_device_flags(parser, device="cuda")
    parser.add_argument("--data-tar", default=".campaign/cifar10-jpeg.tar.gz", help="the CIFAR-10 JPEG tar (--make-tar)")
    parser.add_argument("--state", help="folder with the previous run's state-*.tar (absent: a fresh campaign)")
    add_output_flag(parser, "where the returned files go (default $OUT)", default=os.environ.get("OUT"))
    parser.add_argument("--budget", type=float, default=540, help="seconds for the whole GPU run (unpacking to packing)")
    parser.add_argument("--epochs", type=int, default=160, help="training epochs of every run")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per configuration")
    parser.add_argument("--subset", type=int, help="class-balanced training subset (dry runs)")
    parser.add_argument("--jobs", default="auto", help="concurrent runs, or auto (measured once, kept in the state)")
    parser.add_argument("--jobs-levels", default="1,4,8,12", help="concurrency levels --jobs auto measures (first run only)")
    parser.add_argument("--bench-steps", type=int, default=30, help="timed steps of the throughput probe (bench_train)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile every run (if bench.txt shows it pays)")
    parser.add_argument("--tiny", action="store_true", help="CPU dry-run size: 2 epochs, 1 seed, 600 images, 2 stages")
    add_report_flags(parser, "this job's report (the campaign run: campaign.json's content; --make-tar: the tar's image "
                             "count and size; --absorb: where the files went)")
    parser.add_argument("--work", default=str(WORK), help=argparse.SUPPRESS)
    add_version_flag(parser)
    return parser.parse_args(argv)


def run_bench(args, work, out, log):
    """bench_train.py dense vs gated per setting, time-boxed; its table goes to OUT/bench.txt (first GPU run)."""
    from cosinegate.research import BENCH_TRAIN_COMMAND, child_env

    cmd = [*BENCH_TRAIN_COMMAND, "--device", args.device, "--steps", str(args.bench_steps),
           "--repeats", "2", "--json", str(work / "bench.json")]
    if args.tiny:
        cmd += ["--settings", "fp32", "--repeats", "1", "--warmup", "1", "--steps", "2"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=child_env())
        text = result.stdout + (result.stderr[-1500:] if result.returncode else "")
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "") + "\n(timed out after 150 s)"
    (out / "bench.txt").write_text(text)
    log(text)


def absorb(args):
    """Copy a GPU run's returned files: state-*.tar to --carry (replacing the old state), finals to
    .campaign/finals/ (unpacked), tables, plot, log and bench into --results."""
    import tarfile

    src, carry, results = Path(args.absorb), Path(args.carry), Path(args.results)
    if not (src / "campaign.json").is_file():
        from cosinegate.errors import CosineGateError

        raise CosineGateError(f"{src} holds no campaign.json; pass the folder the device tool returned (files_at).")
    shutil.rmtree(carry, ignore_errors=True)
    carry.mkdir(parents=True)
    for path in sorted(src.glob("state-*.tar")):
        shutil.copy(path, carry / path.name)
    finals = carry.parent / "finals"
    for path in sorted(src.glob("finals-*.tar")):
        with tarfile.open(path) as tar:
            tar.extractall(finals, filter="data")
    results.mkdir(parents=True, exist_ok=True)
    log = json.loads((src / "campaign.json").read_text())
    for name in ("results.md", "results.json", "pareto.png", "bench.txt"):
        if (src / name).is_file():
            shutil.copy(src / name, results / name)
    runs_log = results / "campaign-log.jsonl"
    with open(runs_log, "a") as handle:
        handle.write(json.dumps(log) + "\n")
    print(f"state for the next GPU run: {carry} ({len(list(carry.glob('*.tar')))} tars); finals: {finals}; results: {results}")
    return {"absorbed": str(src), "carry": str(carry), "states": len(list(carry.glob("*.tar"))), "finals": str(finals),
            "results": str(results)}


def main(argv=None):
    args = parse_args(argv)
    from cosinegate.research.campaign import make_data_tar

    if args.make_tar:
        count, size = make_data_tar(*args.make_tar, per_class=args.per_class)
        print(f"wrote {args.make_tar[1]}: {count} images, {size / 2**20:.1f} MiB")
        report = {"tar": args.make_tar[1], "source": args.make_tar[0], "images": count, "bytes": size}
    elif args.absorb:
        report = absorb(args)
    else:
        report = campaign(args)
    if args.json:
        from cosinegate.artifacts import atomic_write_json

        atomic_write_json(args.json, report)
    return 0


def campaign(args):
    began = time.time()
    deadline = began + args.budget - PACK_SECONDS
    from cosinegate.research import campaign as cp
    from cosinegate.cli import pick_device
    from cosinegate.errors import CosineGateError

    if not args.out:
        raise CosineGateError("--out is needed (on the device machine it defaults to $OUT).")
    device = pick_device(args.device)
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(f"[{time.time() - began:6.1f}s] {text}")

    shutil.rmtree(work / "data", ignore_errors=True)
    data_root = cp.unpack_data(args.data_tar, work / "data")
    campaign_dir = work / "campaign"
    if args.state is not None:  # a previous GPU run's state replaces whatever a local earlier try left here
        shutil.rmtree(campaign_dir, ignore_errors=True)
    campaign_dir.mkdir(parents=True, exist_ok=True)
    restored = cp.unpack_state(args.state, campaign_dir)
    log(f"data {data_root}; state: {len(restored)} tars restored")
    os.environ["COSINEGATE_CACHE"] = str(work / "cache")  # inherited by every run: decode once, here
    from cosinegate.data import load_dataset

    train, test = load_dataset("imagefolder", data_root)
    log(f"decoded {len(train)} train / {len(test)} test images")

    if not (campaign_dir / "bench.json").is_file():
        run_bench(args, campaign_dir, out, log)
    stages = cp.TINY_STAGES if args.tiny else cp.STAGES
    epochs, seeds, subset = (2, 1, args.subset or 600) if args.tiny else (args.epochs, args.seeds, args.subset)
    subset = subset if subset and subset < len(train) else None
    runs = cp.plan(stages, epochs, seeds, str(data_root), subset, finetune_epochs=1 if args.tiny else None)
    from cosinegate.research.experiments import collect, run_state, write_results
    from cosinegate.research.packing import resolve_jobs, run_all

    pending = [r for r in runs if run_state(campaign_dir / "runs" / r.name) != "done"]
    log(f"{len(runs)} runs planned, {len(runs) - len(pending)} finished before, {len(pending)} to train")
    cuda = str(device).startswith("cuda")
    setting = "bf16+channels_last+fused" if cuda else "fp32"
    jobs = resolve_jobs(args.jobs, "1,2" if args.tiny else args.jobs_levels, device, campaign_dir, max(1, len(pending)),
                        setting, seconds=6.0 if args.tiny else 8.0, log=log) if pending else 0
    sizes = {b: cp.state_bytes(b) for b in {r.backbone for r in runs}}

    def admit(run, active):  # bound what the deadline leaves behind, so the next run can carry it
        partial = [r for r in runs if r.name in active or run_state(campaign_dir / "runs" / r.name) == "partial"]
        return sum(sizes[r.backbone] for r in partial if r.name != run.name) + sizes[run.backbone] <= cp.STATE_LIMIT_BYTES - 2**20

    extra = speed_flags(campaign_dir / "bench.json", cuda, args.compile, log)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `timeout` also stops the runs in flight
    failed = run_all(pending, campaign_dir, device, jobs, extra, deadline, admit) if pending else []
    log(f"training stopped at {time.time() - began:.0f}s; {jobs} concurrent; failed: {failed or 'none'}")
    rows = collect(campaign_dir, runs)
    if rows:
        note = (f"Campaign (issue 16): {epochs} epochs, cosine LR 0.1, batch 128, SGD momentum 0.9, wd 5e-4 (paper: its own "
                f"recipe; two-phase: {max(1, epochs // 4) if not args.tiny else 1} fine-tuning epochs from the dense run); "
                f"data: {data_root.name}{' subset ' + str(subset) if subset else ''}; seeds {seeds}; "
                f"hardware: {', '.join(sorted({r['hardware'] for r in rows}))}.")
        write_results(out, rows, note, failed, f"CIFAR-10, {epochs} epochs (campaign)")
    state, finals = cp.state_members(campaign_dir, runs)
    if sum(len(d) for _, d in state) > cp.STATE_LIMIT_BYTES:
        raise CosineGateError(f"state is {sum(len(d) for _, d in state) / 2**20:.1f} MiB, over the carry limit; lower --jobs.")
    state_files = cp.write_parts(state, out, "state")
    budget_left = MAX_FILES - 5 - len(state_files)  # results.md, results.json, pareto.png, campaign.json, bench.txt
    kept, dropped = [], []
    for name, data in finals:  # finals of gated and dense runs first; static-curve checkpoints are cheap to retrain
        (dropped if "-static" in name else kept).append((name, data))
    finals_files = cp.write_parts(kept + dropped, out, "finals") if finals else []
    while len(finals_files) > max(0, budget_left):
        finals_files.pop().unlink()
        log("finals dropped: more parts than the file limit allows")
    report = cp.progress_report(campaign_dir, runs)
    log(f"done at {time.time() - began:.0f}s: " + ", ".join(f"{k} {v}" for k, v in
                                                           _count_states(report).items()))
    summary = {"seconds": time.time() - began, "budget": args.budget, "jobs": jobs, "device": str(device), "tiny": args.tiny,
               "failed": failed, "runs": report, "log": lines}
    (out / "campaign.json").write_text(json.dumps(summary, indent=1))
    files = sorted(p for p in out.iterdir() if p.is_file())
    too_big = [p.name for p in files if p.stat().st_size > MAX_FILE_BYTES]
    if len(files) > MAX_FILES or too_big:
        raise CosineGateError(f"{len(files)} files in {out} (limit {MAX_FILES}), over 16 MiB: {too_big}.")
    print(f"wrote {', '.join(p.name for p in files)} to {out}")
    return summary


def speed_flags(bench_json, cuda, compile_, log):
    """--fast on CUDA unless the bench could not run that setting (then the plain fp32 path), --compile if asked."""
    flags = ["--fast"] if cuda else []
    if cuda and bench_json.is_file():
        rows = json.loads(bench_json.read_text())["rows"]
        if any("error" in r for r in rows if r["setting"] == "bf16+channels_last+fused"):
            log("bench: the fast setting failed on this machine; training with the fp32 path")
            flags = []
    return flags + (["--compile"] if compile_ else [])


def _count_states(report):
    counts = {}
    for entry in report.values():
        counts[entry["state"]] = counts.get(entry["state"], 0) + 1
    return counts


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
