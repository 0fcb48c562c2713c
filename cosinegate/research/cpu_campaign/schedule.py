"""Running the plan: cosinegate train subprocesses, `jobs` at once, until every run is done or the deadline; each run stops
after a whole epoch and resumes bit-exact (cosinegate train --resume); finished runs are compacted."""

import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cosinegate.artifacts import atomic_write_text, folder_lock
from cosinegate.cpuinfo import native_bf16
from cosinegate.research import TRAIN_COMMAND, at_niceness, child_env
from cosinegate.research.cpu_campaign.plan import in_order, load_protocol, plan, read_choice
from cosinegate.research.cpu_campaign.report import first_epoch_seconds
from cosinegate.research.cpu_campaign.state import clear_failure, compact, epochs_done, record_failure, run_state

START_MARGIN = 600  # seconds before the deadline after which no run is started (its first epoch would overrun)
CHOICE_MARGIN = 1800  # seconds before it after which no static choice starts (ResNet-56's took 8 minutes)
# how runs execute, not what they learn (1 thread, idle machine). With native bf16 (bench.txt, AMX): ResNet-20 dense
# 531 img/s with bf16 + channels_last + fused SGD (521 bf16 alone), gated 432 with bf16 alone (403 with channels_last +
# fused). Without it (a 2-core AMD EPYC, AVX2; cosinegate bench-train --backbone resnet56): bf16 is emulated (19x
# slower), ResNet-56 fp32 + channels_last 86 img/s dense, 74 gated (69 and 67 without channels_last).
SPEED_FLAGS = {"none": ["--amp", "bf16", "--channels-last", "--fused"], "gated": ["--amp", "bf16"]}
FP32_SPEED_FLAGS = {"none": ["--channels-last", "--fused"], "gated": ["--channels-last"]}


def speed_flags(mode, bf16=None):
    """cosinegate train's speed flags for a run of gate mode `mode` on this CPU (`bf16`: whether it computes bf16 itself)."""
    if bf16 is None:
        bf16 = native_bf16()
    flags = SPEED_FLAGS if bf16 else FP32_SPEED_FLAGS
    return flags["none" if mode == "none" else "gated"]


def write_config(run, folder):
    """The run's config as the YAML file cosinegate train is started with (unchanged if it already holds the same)."""
    import yaml

    path = Path(folder) / "runs" / run.name / "config.yaml"
    class NoAliases(yaml.SafeDumper):  # config readers refuse YAML aliases (a shared list would be written as one)
        def ignore_aliases(self, data):
            return True

    # the header keeps the module's old path: a running campaign compares this text with its config files
    text = "# written by the campaign (cosinegate/cpu_campaign.py); train/train.py --config this file\n" + yaml.dump(
        run.config, Dumper=NoAliases, sort_keys=True)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return path


def ready(run, folder):
    return run.config is not None and all(run_state(Path(folder) / "runs" / n) == "done" for n in run.needs)


@dataclass
class Result:
    finished: list
    stopped: list
    failed: list
    seconds: float


def _start(folder, run, left, threads, device, command, nice, stop_after):
    config_path = write_config(run, folder)
    run_dir = folder / "runs" / run.name
    args = [*command, "--config", str(config_path), "--device", device, "--out", str(run_dir), "--no-progress",
            *(["--time-limit", str(int(left))] if left != float("inf") else []),
            *speed_flags(run.config["model"]["mode"])]
    if run_state(run_dir) == "partial":
        args.append("--resume")
    if stop_after is not None:
        args += ["--stop-after", str(stop_after)]
    env = child_env(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(run_dir / "train.log", "a") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=at_niceness(nice) if nice else None), "--resume" in args


def _plans(folders, log, choose=True):
    """Each campaign's plan (after writing the static choices its finished teachers allow, when `choose`), as one
    priority list of (folder, run): every campaign's runs in folder order, the controls last."""
    plans = []
    for folder in folders:
        protocol = load_protocol(folder)
        runs = plan(folder, protocol)
        for run in runs:
            if (choose and run.group == "teacher" and protocol["static_removals"]
                    and run_state(folder / "runs" / run.name) == "done" and read_choice(folder, run.seed) is None):
                from cosinegate.research.cpu_campaign.static_choice import choose_static_blocks  # torch: only here

                choose_static_blocks(folder, protocol, run.seed, log=log)
                runs = plan(folder, protocol)
        plans.append((folder, runs))
    return in_order(plans)


def _compact_finished(queue, log):
    for folder, run in queue:
        if run_state(folder / "runs" / run.name) == "done" and compact(folder / "runs" / run.name):
            log(f"{run.name}: finished; kept a model-only last.pt")


def _stop_children(running):
    """Stop the runs still going (on the way out after an error): each keeps its last whole epoch."""
    for proc in running.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in running.values():
        proc.wait()


def continue_campaign(folders, deadline, jobs=2, threads=1, device="cpu", command=TRAIN_COMMAND, nice=10, poll=5.0, log=print,
                      stop_after=None, start_margin=START_MARGIN):
    """Train the runs of one campaign folder (or of several, sharing the `jobs` slots: the first folder's runs first,
    every folder's controls last), `jobs` at once (`threads` each), until every run is done or the next epoch would
    end after `deadline` (a time.time() value): each run then stops after its last whole epoch (cosinegate train
    --time-limit); no run starts in the last `start_margin` seconds, and no new run unless 1.5x an epoch of its kind
    (report.first_epoch_seconds) fits. stop_after=N stops every run after epoch N of
    its schedule (a chunk measured in epochs). Returns what finished, stopped and failed (run names; a folder's
    name/ in front when there are several folders)."""
    folders = [Path(f) for f in ([folders] if isinstance(folders, (str, Path)) else folders)]
    label = (lambda folder, name: name) if len(folders) == 1 else (lambda folder, name: f"{folder.name}/{name}")
    started, running, finished, stopped, failed = time.time(), {}, [], [], []  # running: (folder, name) -> process
    with contextlib.ExitStack() as stack:
        for folder in folders:  # one campaign process per folder (report and check may run beside it)
            stack.enter_context(folder_lock(folder, "cpu-campaign"))
        stack.callback(_stop_children, running)  # an error, Ctrl-C or SIGTERM (cli) never leaves a run going unwatched
        queue, changed, held = None, True, set()
        while True:
            if changed:  # planned again only when a run has ended (a plan reads every run's state)
                queue = _plans(folders, log, choose=deadline - time.time() >= CHOICE_MARGIN)
                _compact_finished(queue, log)
                estimates = first_epoch_seconds(queue)
            left = deadline - time.time()  # after the plan: a static choice takes minutes
            for folder, run in queue:
                key = (folder, run.name)
                if len(running) >= jobs or left < start_margin:
                    break
                if (run_state(folder / "runs" / run.name) == "done" or key in running or key in failed or key in stopped
                        or not ready(run, folder)):
                    continue
                if left < 1.5 * estimates.get(key, 0.0):  # a new run's first epoch is the child's blind spot
                    if key not in held:
                        held.add(key)
                        log(f"{label(*key)}: not started: an epoch of its kind (~{estimates[key] / 60:.0f} min, 1.5x "
                            f"for safety) would not end before the deadline")
                    continue
                running[key], resumed = _start(folder, run, left, threads, device, command, nice, stop_after)
                clear_failure(folder / "runs" / run.name)
                log(f"{label(*key)}: {'resumed' if resumed else 'started'} ({epochs_done(folder / 'runs' / run.name)} "
                    f"of {run.config['optim']['epochs']} epochs done)")
            if not running:
                break
            time.sleep(poll)
            changed = False
            for (folder, name), proc in list(running.items()):
                if proc.poll() is None:
                    continue
                key, changed = (folder, name), True
                del running[key]
                if proc.returncode != 0:
                    failed.append(key)
                    record_failure(folder / "runs" / name, proc.returncode)
                    log(f"{label(*key)}: FAILED (exit {proc.returncode}); see {folder / 'runs' / name / 'train.log'}")
                elif run_state(folder / "runs" / name) == "done":
                    finished.append(key)
                    log(f"{label(*key)}: done")
                else:
                    stopped.append(key)
                    log(f"{label(*key)}: stopped at the deadline ({epochs_done(folder / 'runs' / name)} epochs done)")
        _compact_finished(_plans(folders, log, choose=False), log)
    finished, stopped, failed = ([label(*k) for k in keys] for keys in (finished, stopped, failed))
    return Result(finished, stopped, failed, time.time() - started)
