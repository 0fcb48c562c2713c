"""The issue-16 campaign: same-recipe runs in stages, trained in GPU runs of at most 10 minutes each, with
compact state carried from one GPU run to the next.

Each GPU run unpacks the CIFAR-10 JPEG tar and the previous run's state, trains what fits (packed, resumable),
then packs: `state-N.tar` (what the next run needs: partial runs' last.pt and best.pt, finished runs'
summaries and metrics, the dense checkpoints that pending two-phase runs start from, the measured
concurrency) and `finals-1.tar` (the model-only checkpoints of the runs that finished in this GPU run,
for exports and parity on the CPU). The state is bounded (STATE_LIMIT_BYTES) so that the data tar and the
state together stay under the device tool's 64 MiB carry limit.
"""

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from cosinegate.archives import extract
from cosinegate.errors import CosineGateError
from cosinegate.models import CosineGateNet
from cosinegate.research.experiments import plan_runs, run_state
from cosinegate.training.checkpoint import load_checkpoint, save_checkpoint
from cosinegate.training.metrics_log import run_metrics

PART_BYTES = 15 * 2**20  # each returned file must stay under the tool's 16 MiB
STATE_LIMIT_BYTES = 2 * PART_BYTES  # + ~20 MB data tar + the working tree < 64 MiB carried


@dataclass(frozen=True)
class Stage:
    name: str
    backbones: tuple
    presets: tuple
    static_curve: int = 0
    block_rates: float = None  # per-block rate of the rates/shaping/two-phase presets on this backbone
    own_recipe: tuple = ()


# In priority order: the ResNet-20 goals first, then the real shallower networks, ResNet-56, the paper mode.
STAGES = (
    Stage("r20", ("resnet20",), ("dense", "rates", "shaping", "static", "two-phase", "balanced-quiet"), static_curve=3),
    Stage("depths", ("resnet32", "resnet44"), ("dense",)),
    # ResNet-56 gated down to ResNet-32's cost: 24 gated blocks at rate 0.5 -> about 69M executed MACs
    Stage("r56", ("resnet56",), ("dense", "rates", "static", "two-phase"), static_curve=3, block_rates=0.5),
    Stage("paper", ("paper8",), ("paper",), own_recipe=("paper",)),
)
TINY_STAGES = (
    Stage("r20", ("resnet20",), ("dense", "rates", "two-phase"), static_curve=1),
    Stage("depths", ("resnet32",), ("dense",)),
)


def plan(stages, epochs, seeds, data_root, subset=None, finetune_epochs=None):
    """The campaign's RunSpecs, stage by stage; a run planned by two stages appears once."""
    runs, seen = [], set()
    for stage in stages:
        for run in plan_runs(list(stage.backbones), list(stage.presets), seeds, epochs, "imagefolder", data_root, subset,
                             stage.static_curve, finetune_epochs, stage.block_rates, stage.own_recipe):
            if run.name not in seen:
                seen.add(run.name)
                runs.append(run)
    return runs


def state_bytes(backbone):
    """Bytes a partial run of this backbone leaves: last.pt (weights + momentum) and best.pt (weights only)."""
    params = sum(p.numel() for p in CosineGateNet(backbone, "predictive").parameters())
    return 3 * 4 * params + 256 * 1024


def _model_only(path):
    """The checkpoint at `path` without its optimizer state, as bytes (enough to evaluate, export or teach)."""
    state = load_checkpoint(path)
    state.pop("optimizer", None)
    buffer = path.with_suffix(".model-only.tmp")
    save_checkpoint(buffer, **{k: v for k, v in state.items() if k != "format"})
    data = buffer.read_bytes()
    buffer.unlink()
    return data


def state_members(work, runs):
    """(state members, finals members): lists of (archive name, bytes) for pack()."""
    work = Path(work)
    needed_teachers = {r.init_from_run for r in runs if r.init_from_run and run_state(work / "runs" / r.name) != "done"}
    state, finals = [], []
    for name in ("concurrency.json", "bench.json"):
        if (work / name).is_file():
            state.append((name, (work / name).read_bytes()))
    for run in runs:
        folder, prefix = work / "runs" / run.name, f"runs/{run.name}/"
        kind = run_state(folder)
        if kind == "new":
            continue
        for name in ("summary.json", "config.json", "metrics.jsonl"):
            if (folder / name).is_file():
                state.append((prefix + name, (folder / name).read_bytes()))
        if (folder / "train.log").is_file():  # its end: enough to see why a run failed without another GPU run
            state.append((prefix + "train.log", (folder / "train.log").read_bytes()[-20_000:]))
        if kind == "partial":
            state.append((prefix + "last.pt", (folder / "last.pt").read_bytes()))
            if (folder / "best.pt").is_file():
                state.append((prefix + "best.pt", _model_only(folder / "best.pt")))
        elif (folder / "last.pt").is_file():
            model = _model_only(folder / "last.pt")
            if run.name in needed_teachers:
                state.append((prefix + "last.pt", model))
            if not (folder / ".returned").exists():
                finals.append((prefix + "last.pt", model))
    return state, finals


def write_parts(members, out, stem, part_bytes=PART_BYTES):
    """Tar `members` into OUT/stem-1.tar, stem-2.tar, ..., each at most part_bytes; return the paths."""
    parts, current, size = [], [], 0
    for name, data in members:
        if len(data) + 1024 > part_bytes:
            raise CosineGateError(f"{name} is {len(data) / 2**20:.1f} MiB, over one part's {part_bytes / 2**20:.0f} MiB.")
        if current and size + len(data) + 1024 > part_bytes:
            parts.append(current)
            current, size = [], 0
        current.append((name, data))
        size += len(data) + 1024
    if current:
        parts.append(current)
    paths = []
    for i, part in enumerate(parts, 1):
        path = Path(out) / f"{stem}-{i}.tar"
        with tarfile.open(path, "w") as tar:
            for name, data in part:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


def unpack_state(state_dir, work):
    """Extract every state-*.tar of a previous GPU run into `work` (regular files inside it only)."""
    paths = sorted(Path(state_dir).glob("state-*.tar")) if state_dir else []
    for path in paths:
        extract(path, work, "pass the state folder a GPU run returned (its state-N.tar files), as it came back.")
    for summary in Path(work).glob("runs/*/summary.json"):  # finished before: their finals were returned already
        (summary.parent / ".returned").touch()
    return paths


def unpack_data(tar_path, dest):
    """Extract the CIFAR-10 JPEG tar; return the folder that holds train/ and test/."""
    dest = Path(dest)
    if not Path(tar_path).is_file():
        raise CosineGateError(f"data tar {tar_path} not found; build it with `cosinegate campaign --make-tar "
                              "../shared/data/cifar10-jpeg .campaign/cifar10-jpeg.tar.gz`.")
    extract(tar_path, dest, "build it with `cosinegate campaign --make-tar ../shared/data/cifar10-jpeg "
                           ".campaign/cifar10-jpeg.tar.gz`.")
    roots = [p.parent for p in dest.rglob("train") if p.is_dir() and (p.parent / "test").is_dir()]
    if not roots:
        raise CosineGateError(f"{tar_path} holds no folder with train/ and test/; build it with --make-tar.")
    return min(roots, key=lambda p: len(p.parts))


def make_data_tar(source, dest, per_class=None):
    """Tar(gz) the JPEG folder `source` (ROOT/{train,test}/<class>/*.jpg) as cifar10-jpeg/...; with per_class,
    only the first N images of each class and split (a tiny copy for dry runs). Returns (images, bytes)."""
    source, dest = Path(source), Path(dest)
    if not (source / "train").is_dir() or not (source / "test").is_dir():
        raise CosineGateError(f"{source} has no train/ and test/ folders; pass the CIFAR-10 JPEG folder.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for split in ("train", "test"):
            for folder in sorted(p for p in (source / split).iterdir() if p.is_dir()):
                files = sorted(folder.iterdir())
                for f in files[:per_class] if per_class else files:
                    tar.add(f, arcname=f"cifar10-jpeg/{split}/{folder.name}/{f.name}")
                    count += 1
    tmp.rename(dest)
    return count, dest.stat().st_size


def progress_report(work, runs):
    """{run name: state, epochs done, epochs planned} for campaign.json."""
    report = {}
    for run in runs:
        folder = Path(work) / "runs" / run.name
        epochs = run.args[run.args.index("--epochs") + 1]
        done = len(run_metrics(folder))
        report[run.name] = {"state": run_state(folder), "epochs_done": done, "epochs": int(epochs)}
    return report
