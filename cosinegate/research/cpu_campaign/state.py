"""A run folder's state: new, partial (last.pt of a run in progress) or done (summary.json); its epochs so far; the
record of its last failure; and the compaction of a finished run to what the repository keeps."""

import os
import time
from pathlib import Path

from cosinegate.artifacts import atomic_write_json, read_json
from cosinegate.research.experiments import run_state  # one rule for both research runners (re-exported)
from cosinegate.training.metrics_log import run_metrics


def epochs_done(run_folder):
    """How many epochs the run has finished."""
    return len(run_metrics(run_folder))


FAILURE = "failure.json"  # a run whose cosinegate train failed in the last chunk it ran in (removed when it starts again)


def record_failure(run_folder, exit_code, lines=5):
    """Record in the run folder (committed with the state) that its cosinegate train exited with ``exit_code``: when, and
    the last ``lines`` of its train.log."""
    log = Path(run_folder) / "train.log"
    tail = log.read_text(errors="replace").splitlines()[-lines:] if log.is_file() else []
    atomic_write_json(Path(run_folder) / FAILURE, {"exit": exit_code, "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                   "log_tail": tail})


def clear_failure(run_folder):
    if (Path(run_folder) / FAILURE).is_file():
        (Path(run_folder) / FAILURE).unlink()


def last_failure(run_folder):
    """The run's failure record, or None."""
    path = Path(run_folder) / FAILURE
    return read_json(path, "failure record") if path.is_file() else None


def compact(run_folder):
    """A finished run keeps a model-only last.pt (no optimizer state) and no best.pt: enough to teach, evaluate and
    export; its summary already holds the best-by-held-out figures."""
    folder = Path(run_folder)
    last = folder / "last.pt"
    if run_state(folder) != "done" or not last.is_file():
        return False
    from cosinegate.training.checkpoint import load_checkpoint, save_checkpoint  # torch: only here

    state = load_checkpoint(last)
    changed = False
    if "optimizer" in state:
        state.pop("optimizer")
        tmp = folder / f"last.{os.getpid()}.pt.tmp"  # the winner check may compact the same run beside the campaign
        save_checkpoint(tmp, **{k: v for k, v in state.items() if k != "format"})
        tmp.replace(last)
        changed = True
    if (folder / "best.pt").exists():
        (folder / "best.pt").unlink()
        changed = True
    return changed
