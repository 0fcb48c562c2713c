"""Which blocks the static baselines remove: a greedy order from the finished teacher (static-choice-sN.json)."""

from pathlib import Path

from cosinegate.artifacts import atomic_write_json
from cosinegate.data import balanced_subset, load_dataset, split_holdout
from cosinegate.evaluation import evaluate
from cosinegate.models import build_model
from cosinegate.research.experiments import removal_order
from cosinegate.training.checkpoint import load_checkpoint

def choose_static_blocks(folder, protocol, seed, device="cpu", log=print):
    """Greedy removal order from the finished teacher: each step removes the block whose removal (on top of the
    earlier ones, no fine-tuning) costs the least held-out top-1. Written to static-choice-sN.json."""
    teacher_path = Path(folder) / "runs" / f"teacher-s{seed}" / "last.pt"
    state = load_checkpoint(teacher_path)
    config = state["config"]
    data = config["data"]
    train, _ = load_dataset(data["source"], data["root"], allow_download=False, image_size=data["image_size"], training=True)
    _, held_out = split_holdout(train, data["val_fraction"], seed=config["seed"])  # the teacher's own held-out split
    held_out = held_out.cropped(data["image_size"])
    if protocol.get("static_choice_images"):  # a deep backbone's many removals: a class-balanced part of the split
        held_out = balanced_subset(held_out, protocol["static_choice_images"])

    def top1(drops):
        model = build_model(dict(config["model"], drop_blocks=drops), num_classes=state["num_classes"], image_size=data["image_size"])
        model.load_state_dict({k: v for k, v in state["model"].items() if k in model.state_dict()})
        model.normalization = state["normalization"]
        return evaluate(model.to(device).eval(), held_out, device=device)["top1"]

    order, steps = [], [{"removed": [], "held_out_top1": top1([])}]
    candidates = removal_order(protocol["backbone"])
    for _ in range(max(protocol["static_removals"])):
        scores = {b: top1(sorted(order + [b])) for b in candidates if b not in order}
        best = max(scores, key=lambda b: (scores[b], -b))
        order.append(best)
        steps.append({"removed": sorted(order), "held_out_top1": scores[best], "candidates": {str(k): v for k, v in scores.items()}})
        log(f"teacher-s{seed}: removing block {best} next costs the least held-out top-1 ({scores[best] * 100:.2f}%)")
    choice = {"rule": "greedy: remove the block whose removal costs the least held-out top-1 of the teacher (no fine-tuning)",
              "held_out_images": len(held_out),
              "teacher": str(teacher_path), "order": order, "steps": steps}
    atomic_write_json(Path(folder) / f"static-choice-s{seed}.json", choice)
    return choice
