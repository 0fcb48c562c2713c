"""A run folder's state: new, partial (last.pt of a run in progress) or done (summary.json); its epochs so far; and
the compaction of a finished run to what the repository keeps."""

from pathlib import Path

from cosinegate.training.checkpoint import load_checkpoint, save_checkpoint
from cosinegate.training.loop import read_metrics


def run_state(folder):
    """"done" (summary.json written), "partial" (a last.pt to resume) or "new"."""
    folder = Path(folder)
    if (folder / "summary.json").is_file():
        return "done"
    return "partial" if (folder / "last.pt").is_file() else "new"


def run_metrics(run_folder):
    """The run's per-epoch records (read_metrics: the last of each epoch); empty before its first epoch."""
    path = Path(run_folder) / "metrics.jsonl"
    return read_metrics(path) if path.is_file() else []


def epochs_done(run_folder):
    """How many epochs the run has finished."""
    return len(run_metrics(run_folder))


def compact(run_folder):
    """A finished run keeps a model-only last.pt (no optimizer state) and no best.pt: enough to teach, evaluate and
    export; its summary already holds the best-by-held-out figures."""
    folder = Path(run_folder)
    last = folder / "last.pt"
    if run_state(folder) != "done" or not last.is_file():
        return False
    state = load_checkpoint(last)
    changed = False
    if "optimizer" in state:
        state.pop("optimizer")
        tmp = folder / "last.pt.tmp"
        save_checkpoint(tmp, **{k: v for k, v in state.items() if k != "format"})
        tmp.replace(last)
        changed = True
    if (folder / "best.pt").exists():
        (folder / "best.pt").unlink()
        changed = True
    return changed
