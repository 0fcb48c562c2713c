"""The throughput library behind train/bench_train.py: which settings it times and what it refuses (the table and
the concurrency probes run end to end in tests/cli/test_bench_train.py)."""

import pytest

from cosinegate.errors import CosineGateError
from cosinegate.training import throughput


def test_the_settings_timed_by_default_and_on_request():
    assert throughput.setting_names() == [n for n in throughput.SETTINGS if "compile" not in n]
    assert throughput.setting_names("fp32", compile=True) == ["fp32", "bf16+channels_last+fused+compile"]
    with pytest.raises(CosineGateError, match=r"unknown --settings \['fp8'\]"):
        throughput.setting_names("fp32,fp8")


def test_a_dense_and_a_gated_row_per_setting_and_bad_counts_refused(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # every temporary folder of the run lands here
    rows = throughput.throughput_rows(["fp32"], "resnet20", "cpu", batch_size=8, steps=1, warmup=0, repeats=1)
    assert [(r["setting"], r["mode"]) for r in rows] == [("fp32", "none"), ("fp32", "predictive")]
    assert all(r["images_per_s"] > 0 and r["host_syncs"] == "n/a (cpu)" for r in rows)
    # each trainer's folder used to stay behind in /tmp (216 of them on this machine)
    assert not [p.name for p in tmp_path.iterdir() if "bench-train" in p.name]
    with pytest.raises(CosineGateError, match="at least 1"):
        throughput.throughput_rows(["fp32"], "resnet20", "cpu", batch_size=8, steps=0, warmup=0, repeats=1)
