"""One working stretch of the CPU campaigns: train until the deadline (or check the leading run, or neither), then
regenerate every campaign's results from its state."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from cosinegate.errors import CosineGateError
from cosinegate.research.cpu_campaign.plan import PROTOCOL, RESNET56_PROTOCOL, load_protocol
from cosinegate.research.cpu_campaign.report import check_winner, write_report
from cosinegate.research.cpu_campaign.schedule import continue_campaign

# the campaigns one chunk continues, in priority order (the controls of each go last), and the protocol each starts
# with when its folder is new
CAMPAIGNS = {"train/results/cifar10-campaign-cpu": PROTOCOL, "train/results/cifar10-campaign-cpu-r56": RESNET56_PROTOCOL}


@dataclass
class Chunk:
    """What a chunk did: `trained` (schedule.Result; None when it only reported or checked), `checks` ({folder:
    winner-check record, None where no gated run has finished}; empty unless asked), `results` ({folder:
    results.json's content})."""

    trained: object = None
    checks: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)

    def summary(self):
        """The command's --json report: the chunk's runs and, per folder, progress and goals."""
        t = self.trained
        chunk = {"finished": t.finished, "stopped": t.stopped, "failed": t.failed, "seconds": t.seconds} if t else None
        return {"chunk": chunk, **{folder: {"progress": r["progress"], "goals": r["goals"]}
                                   for folder, r in self.results.items()}}


def open_campaigns(folders=None, start=True):
    """The campaign folders (default: CAMPAIGNS in order, relative to the current folder), each new one started with
    its protocol when `start` (else refused: a report or check needs a campaign's state); checked."""
    folders = [str(f) for f in folders] if folders else list(CAMPAIGNS)
    known = {Path(k).resolve(): v for k, v in CAMPAIGNS.items()}
    for folder in folders:
        new = not (Path(folder) / "campaign.json").is_file()
        if new and not start:
            raise CosineGateError(f"{folder} holds no campaign (no campaign.json); run this in the checkout's root, or "
                                  "name a campaign's folder with --folder.")
        load_protocol(folder, known.get(Path(folder).resolve(), PROTOCOL) if new else None)
    return folders


def run_chunk(folders=None, deadline=None, train=True, check=False, jobs=2, threads=1, device="cpu", log=print):
    """Continue the campaigns in `folders` until `deadline` (time.time() value; None: until done) when `train`, or
    check each one's leading gated run when `check`; then write every folder's results. Returns a Chunk."""
    folders = open_campaigns(folders, start=train and not check)  # before torch loads: a wrong folder is one line at once
    if train:  # the static choices this process evaluates use `threads` (the runs and the winner check: subprocesses)
        import torch

        torch.set_num_threads(threads)
    chunk = Chunk()
    if check:
        chunk.checks = {folder: check_winner(folder, log=log) for folder in folders}
    elif train:
        chunk.trained = continue_campaign(folders, float("inf") if deadline is None else deadline, jobs=jobs,
                                          threads=threads, device=device, log=log)
    for folder in folders:
        write_report(folder, jobs=jobs, folders=folders)
        chunk.results[folder] = json.loads((Path(folder) / "results.json").read_text())
    return chunk
