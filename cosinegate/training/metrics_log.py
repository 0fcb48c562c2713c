"""A run's records read back, checked (torch-free: the campaigns' own processes and reports read them): its
metrics.jsonl (one line per epoch) and its summary.json (the final evaluation)."""

import json
from pathlib import Path

from cosinegate.errors import CosineGateError
from cosinegate.schema import number, shown, whole

NUMBERS = ("seconds", "val_top1", "val_real_savings")  # of an epoch's record, where present (what the readers use)
TEXTS = ("amp", "hardware")
FINAL_NUMBERS = ("top1", "dense_macs", "executed_macs", "real_savings", "static_savings", "dynamic_savings",
                 "nominal_savings")
FINAL_LISTS = {"skip_rates": number, "mutual_information_bits": number, "block_classes": lambda v: isinstance(v, str),
               "drop_blocks": whole}  # each entry's check


def record_problem(record):
    """What is wrong with one metrics record (a dict with an int epoch), or None."""
    for key in NUMBERS:
        if key in record and not number(record[key]):
            return f"{key} = {shown(record[key])} is not a number"
    for key in TEXTS:
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"{key} = {shown(record[key])} is not text"
    return None


def read_metrics(path):
    """The records of a metrics.jsonl, the last of each epoch (a run killed between logging an epoch and saving last.pt
    logs it again when resumed); a line a kill cut short (only the last can be) is skipped, a record with a field
    of the wrong kind is a CosineGateError."""
    records = {}
    for line_no, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        except RecursionError:
            raise CosineGateError(f"{path} line {line_no} is nested too deeply to be a metrics record; the run folder "
                                  "was not written by train: remove the line or start the run again.") from None
        if isinstance(record, dict) and whole(record.get("epoch")):
            problem = record_problem(record)
            if problem:
                raise CosineGateError(f"{path} line {line_no}: {problem}; the run folder was not written by train: "
                                      "remove the line or start the run again.")
            records[record["epoch"]] = record
    return list(records.values())


def run_metrics(run_folder):
    """A run folder's per-epoch records (read_metrics: the last of each epoch); empty before its first epoch."""
    path = Path(run_folder) / "metrics.jsonl"
    return read_metrics(path) if path.is_file() else []


def read_summary(run_folder):
    """A finished run's summary.json, its final evaluation checked (the numbers and lists the reports read)."""
    from cosinegate.artifacts import read_json

    path = Path(run_folder) / "summary.json"
    summary = read_json(path, "run summary")
    final = summary.get("final")
    problem = None if isinstance(final, dict) else f"final = {shown(final)} is not an evaluation"
    problem = problem or next((f"final.{k} = {shown(final.get(k))} is not a number" for k in FINAL_NUMBERS
                               if not number(final.get(k))), None)
    problem = problem or next((f"final.{k} = {shown(final.get(k))} is not a list of the kind train writes"
                               for k, ok in FINAL_LISTS.items()
                               if not (isinstance(final.get(k), list) and all(map(ok, final[k])))), None)
    problem = problem or next((f"{k} = {shown(summary.get(k))} is not text" for k in ("data", "hardware")
                               if not isinstance(summary.get(k), str)), None)
    if not problem and not isinstance(final.get("mode"), str):
        problem = f"final.mode = {shown(final.get('mode'))} is not text"
    if not problem and not whole(summary.get("epochs")):
        problem = f"epochs = {shown(summary.get('epochs'))} is not a whole number"
    if problem:
        raise CosineGateError(f"run summary {path}: {problem}; the run folder was not written by train: train the run "
                              "again (delete its folder).")
    return summary
