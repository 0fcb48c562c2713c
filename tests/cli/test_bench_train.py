"""train/bench_train.py: the throughput table (dense and gated per setting) and the concurrency table run end to end."""

import json

from conftest import run_script


def test_the_table_has_dense_and_gated_per_setting_and_per_concurrency(tmp_path):
    report = tmp_path / "bench.json"
    result = run_script("train/bench_train.py", "--device", "cpu", "--settings", "bf16+channels_last+fused", "--steps", "1",
                        "--repeats", "1", "--warmup", "1", "--batch-size", "16", "--threads", "1", "--concurrency", "1x1",
                        "--seconds", "1", "--json", report)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bf16+channels_last+fused" in result.stdout and "runs x threads" in result.stdout
    data = json.loads(report.read_text())
    assert {r["mode"] for r in data["rows"]} == {"none", "predictive"} and all(r["images_per_s"] > 0 for r in data["rows"])
    assert data["concurrency"][0]["jobs"] == 1 and data["concurrency"][0]["none"] > 0 and data["concurrency"][0]["predictive"] > 0


def test_a_bad_concurrency_is_one_line():
    result = run_script("train/bench_train.py", "--device", "cpu", "--settings", "fp32", "--steps", "1", "--repeats", "1",
                        "--warmup", "1", "--batch-size", "8", "--concurrency", "2by1")
    assert result.returncode == 2 and "--concurrency '2by1'" in result.stderr and "Traceback" not in result.stderr
