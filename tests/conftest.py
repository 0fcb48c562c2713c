"""Shared fixtures for the CosineGate tests.

Tiny data (a fake cifar-10-batches-py folder, a Pillow image tree), a tiny trained
checkpoint (session scope, trained once in-process), the real CIFAR-10 folder
(skipped with a reason when absent) and `run_script`, which runs a command script
in a subprocess with this interpreter (the venv's python).
"""

import contextlib
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# tests mirror the package (tests/<subpackage>/test_<module>.py, basenames unique); a test module may share
# helpers and fixtures with another one (`from test_bundle import bundled`), so every test folder is importable
for _folder in sorted(Path(__file__).resolve().parent.iterdir()):
    if _folder.is_dir() and any(_folder.glob("test_*.py")) and str(_folder) not in sys.path:
        sys.path.append(str(_folder))

PYTHON = sys.executable
# The longest test files (pytest --durations: about 15 and 12 minutes of one loaded core), handed out first:
# scripts/test.sh gives each worker whole files (--dist loadfile), and a long file handed out late sets the wall time.
LONGEST_FIRST = ("tests/research/test_cpu_campaign.py", "tests/trt/test_bundle.py")


def pytest_configure(config):
    """Under pytest-xdist (scripts/test.sh) the workers share the cores: each one's torch gets its part of them, not
    all of them (cores x cores threads on a large machine). Subprocesses keep torch's own default. The files go out
    in the collection's order (LONGEST_FIRST first), not xdist's order by number of tests."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist >= 3.6
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


REAL_CIFAR = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg"
requires_real_cifar = pytest.mark.skipif(
    not (REAL_CIFAR / "train").is_dir() or not (REAL_CIFAR / "test").is_dir(),
    reason=f"real CIFAR-10 image folder not found at {REAL_CIFAR} (../shared/data/cifar10-jpeg is provided on CI machines only)",
)

# fake cifar10: 5 data batches of this many images + a test batch
FAKE_PER_BATCH = 60
FAKE_TEST = 100
FAKE_CLASSES = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"]


class Expired(BaseException):
    """within()'s alarm: a BaseException, so that code catching OSError (TimeoutError is one) cannot swallow it."""


@contextlib.contextmanager
def within(seconds, cpu=False):
    """Raise Expired in the body once it has run `seconds` (a blocked read, a runaway loop), so that a refusal that
    should come at once fails the test instead of hanging it (SIGALRM interrupts a blocking open or read). With `cpu`,
    `seconds` of this process's CPU time (SIGPROF): a runaway loop still fails, a machine busy with other work does not."""
    def expired(signum, frame):
        raise Expired(f"still running after {seconds} s" + (" of CPU time" if cpu else ""))

    timer, signum = (signal.ITIMER_PROF, signal.SIGPROF) if cpu else (signal.ITIMER_REAL, signal.SIGALRM)
    previous = signal.signal(signum, expired)
    signal.setitimer(timer, seconds)
    try:
        yield
    finally:
        signal.setitimer(timer, 0)
        signal.signal(signum, previous)


def script_env(**extra):
    """Environment for a subprocess: quiet, 1 intra-op thread per process, the session cache."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_script(path, *args, timeout=300, env=None, **kwargs):
    """Run `python path args...` from the repository root; return the CompletedProcess (text output)."""
    return subprocess.run(
        [PYTHON, str(ROOT / path), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or script_env(),
        **kwargs,
    )


def write_fake_cifar10(root, per_batch=FAKE_PER_BATCH, test=FAKE_TEST, seed=5):
    """Write ROOT/cifar-10-batches-py in the real format (pickled dicts with bytes keys, CHW rows).

    The images are synthetic shapes (learnable); returns the arrays written as
    {"train": (images [N,32,32,3], labels), "test": (...)} for comparison.
    """
    from cosinegate.data.synthetic import generate

    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = generate(5 * per_batch + test, seed)
    written = {"train": (images[: 5 * per_batch], labels[: 5 * per_batch]), "test": (images[5 * per_batch :], labels[5 * per_batch :])}

    def dump(name, imgs, labs, batch_label):
        rows = imgs.transpose(0, 3, 1, 2).reshape(len(imgs), 3072)  # R plane, G plane, B plane
        entry = {
            b"batch_label": batch_label.encode(),
            b"labels": [int(v) for v in labs],
            b"data": np.ascontiguousarray(rows, dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(len(labs))],
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle, protocol=2)

    for i in range(5):
        sl = slice(i * per_batch, (i + 1) * per_batch)
        dump(f"data_batch_{i + 1}", images[sl], labels[sl], f"training batch {i + 1} of 5")
    dump("test_batch", *written["test"], "testing batch 1 of 1")
    meta = {b"label_names": [c.encode() for c in FAKE_CLASSES], b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return written


def write_image_tree(root, classes=("ant", "bee", "cat"), train_per_class=4, test_per_class=2, seed=0):
    """ROOT/{train,test}/<class>/NNN.png (lossless) plus one .jpg per class; returns {relpath: array}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for cls in classes:
            folder = Path(root) / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                if i:  # png: random pixels (lossless)
                    array, name = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), f"{i:03d}.png"
                else:  # jpg: a flat colour, which survives JPEG almost exactly
                    array, name = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (32, 32, 3)).copy(), f"{i:03d}.jpg"
                Image.fromarray(array).save(folder / name, quality=95)
                arrays[f"{split}/{cls}/{name}"] = array
    return arrays


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Point the image-folder cache at a temporary directory for the whole session.

    The user's own cache location is kept in USER_CACHE for the real-CIFAR smoke test.
    """
    global USER_CACHE
    from cosinegate.data.imagefolder import cache_dir

    USER_CACHE = cache_dir()
    old = os.environ.get("COSINEGATE_CACHE")
    path = tmp_path_factory.mktemp("cache")
    os.environ["COSINEGATE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("COSINEGATE_CACHE", None)
    else:
        os.environ["COSINEGATE_CACHE"] = old


USER_CACHE = None


@pytest.fixture(scope="session")
def fake_cifar(tmp_path_factory):
    """(root, written arrays) of a tiny fake cifar-10-batches-py folder (300 train, 100 test)."""
    root = tmp_path_factory.mktemp("cifar")
    return root, write_fake_cifar10(root)


@pytest.fixture(scope="session")
def fake_cifar_root(fake_cifar):
    return fake_cifar[0]


@pytest.fixture
def image_tree(tmp_path):
    root = tmp_path / "images"
    return root, write_image_tree(root)


def tiny_config(data_root, mode="predictive", epochs=1, **gate):
    """A quick config on the fake cifar10 folder."""
    from cosinegate.config import load_config, validate

    config = load_config("balanced")
    config["model"]["mode"] = mode
    config["data"].update(source="cifar10", root=str(data_root))
    config["optim"].update(epochs=epochs, batch_size=64)
    config["gate"].update(gate)
    return validate(config)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, fake_cifar_root):
    """A predictive ResNet-20 trained for 2 epochs on the fake cifar10 (in-process); returns its run folder."""
    import torch

    from cosinegate.training.loop import train

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    threads = torch.get_num_threads()
    try:
        train(tiny_config(fake_cifar_root, epochs=2), out, "cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_run):
    return tiny_run / "last.pt"



@pytest.fixture(scope="session")
def dense_checkpoint(tiny_checkpoint, tmp_path_factory):
    """A model without gates (mode none) and with block 5 removed, as a static baseline: the tiny run's config,
    fresh weights."""
    import torch

    from cosinegate.models import build_model
    from cosinegate.training.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(tiny_checkpoint)
    state["config"]["model"].update(mode="none", drop_blocks=[5])
    torch.manual_seed(0)
    state["model"] = build_model(state["config"]["model"], state["num_classes"]).eval().state_dict()
    state["skip_rates"] = None
    path = tmp_path_factory.mktemp("dense") / "dense.pt"
    save_checkpoint(path, **{k: v for k, v in state.items() if k != "format"})
    return path

# ---- checkpoints with known gate behaviour, shared by the ONNX, parity and bench tests ----


def median_split(logit):
    """Midway between the two logits around the median: about half the images run."""
    k = len(logit) // 2
    return float(logit[k - 1] + logit[k]) / 2


def widest_gap_split(logit):
    """Midway across the widest gap between neighbouring logits in the middle 30-70 %, so that
    quantization noise does not move a decision."""
    lo, hi = len(logit) * 3 // 10, len(logit) * 7 // 10
    k = lo + int(np.argmax(np.diff(logit[lo:hi + 1])))
    return float(logit[k] + logit[k + 1]) / 2


def make_dynamic_checkpoint(src, dst, images, mode="predictive", split=median_split):
    """Copy a checkpoint with gate biases set so block 0 always runs, block 1 never does and
    the others split `images` at `split(sorted logits)`; its skip rates are measured on `images`.

    Each dynamic threshold sits midway between two neighbouring logits, so no image is a tie.
    Paper mode: a freshly initialized paper-gate model with the same config.
    """
    from cosinegate.data.augment import to_tensor
    from cosinegate.data.normalization import of_checkpoint
    from cosinegate.evaluation import run_model
    from cosinegate.models import build_model
    from cosinegate.training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    state = load_checkpoint(src)
    if mode == "paper":
        state["config"]["model"]["mode"] = "paper"
        torch.manual_seed(0)
        model = build_model(state["config"]["model"], state["num_classes"]).eval()
        model.normalization = of_checkpoint(state)
    else:
        model, _ = model_from_checkpoint(src)
        with torch.no_grad():
            h = model.stem(to_tensor(images.images, "cpu", model.normalization))
            for index, block in enumerate(model.blocks):
                logit = np.sort(block.gate(h)[0].numpy().ravel())
                shift = {0: -50.0, 1: 50.0}.get(index, split(logit))
                block.gate.control_head.bias -= shift
                h, _ = block(h)
    state["model"] = model.state_dict()
    state["skip_rates"] = (1.0 - run_model(model, images).gates.mean(0)).tolist()
    save_checkpoint(dst, **{k: v for k, v in state.items() if k != "format"})
    return dst


@pytest.fixture(scope="session")
def test_images(fake_cifar_root):
    from cosinegate.data import load_dataset

    return load_dataset("cifar10", fake_cifar_root)[1]


@pytest.fixture(scope="session")
def dyn_checkpoint(tiny_checkpoint, test_images, tmp_path_factory):
    return make_dynamic_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("dyn") / "dyn.pt", test_images)


@pytest.fixture(scope="session")
def paper_checkpoint(tiny_checkpoint, test_images, tmp_path_factory):
    return make_dynamic_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("paper") / "paper.pt", test_images, "paper")
