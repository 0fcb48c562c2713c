"""Which data a stage runs on: by default the data its checkpoint was trained on.

Every command that needs images (calibrate, parity, bench, build_engine, evaluate,
evaluate_int8) asks `choose_data` with the model's origin (source, root and class
names from the checkpoint, or from an exported graph's metadata) and the user's
--data/--data-root. A root that is not there is refused with the flag that
overrides it; a root is only ever read: nothing a checkpoint or graph records
causes a download (CIFAR-10 is downloaded by cosinegate train alone, into the --data-root
its user names); a data source whose class count differs from the model's is an
error; the choice is printed (`describe`) and recorded (`record`).
"""

from dataclasses import dataclass, field
from pathlib import Path

from cosinegate.data import load_dataset
from cosinegate.data.resize import image_size_of, resize_note
from cosinegate.errors import CosineGateError

OVERRIDE = "pass --data-root DIR where that data is, or --data SOURCE [--data-root DIR] for other data"


@dataclass(frozen=True)
class DataOrigin:
    """The data a model was trained on."""

    source: str
    root: object  # str or None
    classes: tuple
    image_size: int = 32

    @classmethod
    def of_checkpoint(cls, state):
        data = (state.get("config") or {}).get("data") or {}
        classes = state.get("classes") or [str(i) for i in range(state.get("num_classes") or 0)]
        return cls(data.get("source"), data.get("root"), tuple(classes), image_size_of(state))

    @classmethod
    def of_metadata(cls, meta):
        """From an exported graph's toolkit metadata (None when the graph does not say)."""
        data = meta.get("data")
        if not isinstance(data, dict) or "source" not in data:
            return None
        size = (meta.get("input_size") or [3, 32, 32])[-1]
        return cls(data["source"], data.get("root"), tuple(meta.get("classes") or ()), int(size))


@dataclass
class DataChoice:
    source: str
    root: object
    from_model: bool  # True: the model's own data (the default), False: the user's flags
    train: object
    test: object
    classes_differ: list = field(default_factory=list)  # "model's name->data's name" where they differ

    def record(self):
        return {"source": self.source, "root": None if self.root is None else str(self.root),
                "default": "model's training data" if self.from_model else "given by --data/--data-root",
                "classes": list(self.test.classes), "classes_differ_from_model": list(self.classes_differ)}

    def describe(self):
        where = f" at {self.root}" if self.root is not None else ""
        why = "the checkpoint's training data" if self.from_model else "as given"
        return f"data: {self.source}{where} ({why}; {len(self.test.classes)} classes)"


def choose_data(origin, source=None, root=None, log=print, override=OVERRIDE):
    """Load the data for a model of `origin` (a DataOrigin or None), honouring --data/--data-root
    (`override`: how the caller's user names those, for the refusals)."""
    if origin is not None and origin.source is None:  # a checkpoint that records no training data
        if source is None:
            raise CosineGateError(f"the model records no training data (config.data.source); {override}.")
        origin = None
    from_model = origin is not None and (source is None or source == origin.source) and root is None
    if source is None:
        source = origin.source if origin is not None else "synthetic"
    if root is None and origin is not None and source == origin.source:
        root = origin.root
    if from_model and source != "synthetic":
        if root is None or not Path(root).exists():
            raise CosineGateError(
                f"the checkpoint was trained on {source} data at {root}, which is not here; {override}."
            )
    train, test = load_dataset(source, root, allow_download=False, image_size=origin.image_size if origin is not None else 32)
    if origin is not None and origin.classes and len(test.classes) != len(origin.classes):
        raise CosineGateError(
            f"the data ({source}{'' if root is None else ' at ' + str(root)}) has {len(test.classes)} classes but the model "
            f"was trained on {len(origin.classes)} ({origin.source}); {override} with {len(origin.classes)} classes."
        )
    choice = DataChoice(source, root, from_model, train, test)
    if origin is not None and origin.classes and tuple(test.classes) != tuple(origin.classes):
        choice.classes_differ = [f"{mine}->{theirs}" for mine, theirs in zip(origin.classes, test.classes) if mine != theirs]
    if log:
        log(choice.describe())
        found = test.found_sizes or train.found_sizes
        if found:
            size = origin.image_size if origin is not None else 32
            log(resize_note(found, size, "the checkpoint was trained at" if origin is not None else "the model takes"))
        if choice.classes_differ:
            log(f"note: the data's class names differ from the model's ({', '.join(choice.classes_differ[:4])}"
                f"{', ...' if len(choice.classes_differ) > 4 else ''}): label index i is the model's class i; accuracy "
                "against these labels means nothing unless they are the same classes")
    return choice
