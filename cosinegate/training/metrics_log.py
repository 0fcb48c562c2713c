"""A run's metrics.jsonl read back (torch-free: the campaigns' own processes and reports read it)."""

import json
from pathlib import Path


def read_metrics(path):
    """The records of a metrics.jsonl, the last of each epoch (a run killed between logging an epoch and saving last.pt
    logs it again when resumed); a line a kill cut short (only the last can be) is skipped."""
    records = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records[record["epoch"]] = record
    return list(records.values())


def run_metrics(run_folder):
    """A run folder's per-epoch records (read_metrics: the last of each epoch); empty before its first epoch."""
    path = Path(run_folder) / "metrics.jsonl"
    return read_metrics(path) if path.is_file() else []
