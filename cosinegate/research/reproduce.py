"""The paper reproduction's flow (cosinegate reproduce): plan same-recipe runs, train the pending ones (resumably, several
at once, up to a deadline), tabulate the finished ones and write results.md, results.json and pareto.png."""

import time
from dataclasses import dataclass, field
from pathlib import Path

from cosinegate.errors import CosineGateError
from cosinegate.research.experiments import collect, plan_runs, run_state, write_results
from cosinegate.training.throughput import FAST


@dataclass
class Reproduction:
    runs: list  # every planned RunSpec
    trained: int = 0  # runs that were pending at the start
    failed: list = field(default_factory=list)
    left: list = field(default_factory=list)  # runs not finished when the deadline came
    results: dict = None  # results.json's content (None: no run finished yet)


def reproduce(out, backbones, presets, seeds, epochs, data, data_root=None, subset=None, static_curve=0,
              finetune_epochs=None, device="cpu", jobs="1", jobs_levels="1,2,4,8,12", fast=False, compile=False,
              time_limit=None, collect_only=False, log=print):
    """Train what is not done yet of the planned runs in ``out``/runs and tabulate what is. A run that failed is named
    in the result, and the results are still written; no finished run at all is an error unless the deadline came
    first."""
    from cosinegate.research.packing import resolve_jobs, run_all  # torch

    began, out = time.time(), Path(out)
    runs = plan_runs(backbones, presets, seeds, epochs, data, data_root, subset, static_curve, finetune_epochs)
    pending = [r for r in runs if run_state(out / "runs" / r.name) != "done"]
    log(f"{len(runs)} runs planned, {len(runs) - len(pending)} already finished, {len(pending)} to train on {device}")
    deadline = None if time_limit is None else began + time_limit
    result = Reproduction(runs, len(pending))
    if not collect_only and pending:
        setting = FAST if fast and str(device).startswith("cuda") else "fp32"
        count = resolve_jobs(jobs, jobs_levels, device, out, len(pending), setting, log=log)
        extra = (["--fast"] if fast else []) + (["--compile"] if compile else [])
        result.failed = run_all(pending, out, device, count, extra, deadline)
    rows = collect(out, runs)
    result.left = [r.name for r in runs if run_state(out / "runs" / r.name) != "done"]
    if result.left and deadline is not None:
        log(f"time limit: {len(result.left)} runs not finished ({', '.join(result.left)}); rerun the same command to "
            "continue them")
    if not rows:
        if deadline is not None and not result.failed:
            return result
        raise CosineGateError(f"no run finished; see the train.log files under {out / 'runs'}.")
    note = (f"Schedule: {epochs} epochs, cosine LR 0.1, batch 128, SGD momentum 0.9, wd 5e-4; "
            f"data: {data}{' subset ' + str(subset) if subset else ''}; "
            f"hardware: {', '.join(sorted({r['hardware'] for r in rows}))}; seeds: {seeds}.")
    title = f"{'CIFAR-10 (' + data + ')' if data != 'synthetic' else 'synthetic data'}, {epochs} epochs"
    result.results = write_results(out, rows, note, result.failed, title, paper_points=data != "synthetic")
    return result
