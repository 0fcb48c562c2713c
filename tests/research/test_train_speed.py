"""The training-throughput report's tables: a row per setting (a failed one said so), the 160-epoch estimate at the
fastest dense setting that ran, the concurrency table; measuring itself runs end to end in tests/cli/test_bench_train.py."""

from cosinegate.research.train_speed import EPOCH_IMAGES, TrainingSpeed


def _row(setting, mode, images_per_s=None, error=None):
    return {"setting": setting, "mode": mode, **({"error": error} if error else {"images_per_s": images_per_s, "host_syncs": 0})}


def test_the_tables_name_failures_and_estimate_from_the_fastest_dense_setting():
    rows = [_row("fp32", "none", 300.0), _row("fp32", "predictive", 250.0),
            _row("bf16", "none", 600.0), _row("bf16", "predictive", 400.0),
            _row("compile", "none", error="no compiler"), _row("compile", "predictive", 900.0)]
    speed = TrainingSpeed("resnet20", 128, 5, 1, "cpu (x)", "2.13.0", ["fp32", "bf16", "compile"], rows,
                          [{"jobs": 2, "threads": 1, "none": 700.0, "predictive": 500.0}], seconds=8.0)
    lines = speed.throughput_lines() + speed.concurrency_lines()
    assert lines[2].split() == ["fp32", "300", "250", "1.20x", "0", "/", "0"]
    assert lines[3].split()[:4] == ["bf16", "600", "400", "1.50x"]
    assert lines[4].split() == ["compile", "failed:", "no", "compiler"]
    assert f"(bf16): a 160-epoch run over {EPOCH_IMAGES} images would take {160 * EPOCH_IMAGES / 600 / 60:.1f} min" in lines[5]
    assert lines[-1].split() == ["2x1", "700", "500"] and "8 s window each" in lines[-3]
    assert speed.record()["concurrency"][0]["jobs"] == 2 and len(speed.record()["rows"]) == 6


def test_each_table_is_logged_as_soon_as_it_is_measured(monkeypatch):
    """The throughput table comes before the concurrency probes run (a failed probe leaves it printed)."""
    import pytest
    import torch

    from cosinegate.errors import CosineGateError
    from cosinegate.research import packing, train_speed
    from cosinegate.training import throughput

    said = []
    monkeypatch.setattr(throughput, "throughput_rows", lambda *a: [_row("fp32", "none", 300.0), _row("fp32", "predictive", 250.0)])

    def probes_fail(*args):
        said.append("probing")
        raise CosineGateError("probe failed")

    monkeypatch.setattr(packing, "concurrency_rows", probes_fail)
    with pytest.raises(CosineGateError):
        train_speed.measure(torch.device("cpu"), "fp32", concurrency=[(1, 1)], log=said.append)
    assert said[-1] == "probing" and said[2].split()[:3] == ["fp32", "300", "250"] and "160-epoch" in said[3]
