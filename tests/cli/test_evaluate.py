"""cosinegate evaluate."""

import json


def test_threads_are_set(tiny_checkpoint, tmp_path, capsys):
    """--threads N sets torch's intra-op threads (evaluate had none: beside a training run its threads fought)."""
    import torch

    from cosinegate.cli import evaluate

    threads = torch.get_num_threads()
    try:
        evaluate.main(["--checkpoint", str(tiny_checkpoint), "--threads", "3", "--subset", "20", "--quiet",
                       "--json", str(tmp_path / "eval.json")])
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    assert json.loads((tmp_path / "eval.json").read_text())["num_images"] == 20
