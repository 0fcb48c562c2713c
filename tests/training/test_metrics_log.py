"""A run's metrics.jsonl and summary.json read back: what train writes passes, a field of the wrong kind (a run folder
from elsewhere, e.g. a campaign's state) is one line naming the file and the field, never a TypeError later."""

import json

import pytest

from cosinegate.errors import CosineGateError
from cosinegate.training.metrics_log import read_metrics, read_summary

EPOCH = {"epoch": 1, "train_loss": 2.0, "train_top1": 0.2, "seconds": 12.5, "val_top1": 0.3, "val_real_savings": 0.1,
         "val_skip_rates": [0.1, 0.0], "amp": "none", "hardware": "cpu (x)"}


def _metrics(path, *lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_the_last_record_of_each_epoch_is_kept_and_a_cut_line_skipped(tmp_path):
    again = json.dumps({**EPOCH, "seconds": 13.0})
    path = _metrics(tmp_path / "metrics.jsonl", json.dumps(EPOCH), again, json.dumps({**EPOCH, "epoch": 2})[:30])
    assert read_metrics(path) == [json.loads(again)]


@pytest.mark.parametrize("change, field", [({"seconds": "12"}, "seconds"), ({"val_top1": None}, "val_top1"),
                                           ({"val_real_savings": [1]}, "val_real_savings"), ({"amp": 3}, "amp")])
def test_a_record_with_a_field_of_the_wrong_kind_is_one_line(tmp_path, change, field):
    path = _metrics(tmp_path / "metrics.jsonl", json.dumps(EPOCH), json.dumps({**EPOCH, "epoch": 2, **change}))
    with pytest.raises(CosineGateError, match=f"line 2: {field} = ") as info:
        read_metrics(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_line_nested_too_deeply_is_one_line(tmp_path):
    path = _metrics(tmp_path / "metrics.jsonl", json.dumps(EPOCH), "[" * 100000)
    with pytest.raises(CosineGateError, match="line 2 is nested too deeply"):
        read_metrics(path)


FINAL = {"top1": 0.9, "mode": "predictive", "dense_macs": 40, "executed_macs": 30.0, "real_savings": 0.25,
         "static_savings": 0.1, "dynamic_savings": 0.15, "nominal_savings": 0.3, "skip_rates": [0.5, 0.0],
         "block_classes": ["dynamic", "always-run"], "mutual_information_bits": [0.2, 0.0], "drop_blocks": [2]}
SUMMARY = {"final": FINAL, "epochs": 3, "data": "synthetic", "hardware": "cpu (x)"}


def test_what_train_writes_is_read(tmp_path, tiny_run):
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY))
    assert read_summary(tmp_path) == SUMMARY
    assert read_summary(tiny_run)["final"]["top1"] == json.loads((tiny_run / "summary.json").read_text())["final"]["top1"]
    assert [m["epoch"] for m in read_metrics(tiny_run / "metrics.jsonl")] == [1, 2]


@pytest.mark.parametrize("change, says", [
    ({"final": "x"}, "final = 'x' is not an evaluation"),
    ({"final": {**FINAL, "top1": "0.9"}}, "final.top1 = '0.9' is not a number"),
    ({"final": {**FINAL, "executed_macs": float("nan")}}, "final.executed_macs = nan is not a number"),
    ({"final": {**FINAL, "skip_rates": ["a"]}}, "final.skip_rates = ['a'] is not a list"),
    ({"final": {**FINAL, "drop_blocks": None}}, "final.drop_blocks = None is not a list"),
    ({"final": {**FINAL, "mode": 1}}, "final.mode = 1 is not text"),
    ({"epochs": 2.5}, "epochs = 2.5 is not a whole number"),
    ({"hardware": ["cpu"]}, "hardware = ['cpu'] is not text"),
])
def test_a_summary_with_a_field_of_the_wrong_kind_is_one_line(tmp_path, change, says):
    (tmp_path / "summary.json").write_text(json.dumps({**SUMMARY, **change}))
    with pytest.raises(CosineGateError) as info:
        read_summary(tmp_path)
    assert says in str(info.value) and "\n" not in str(info.value)
