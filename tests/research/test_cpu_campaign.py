"""Issue 21's CPU campaign at tiny size: the plan, the same recipe for every contender, the static choice,
compact finished runs, chunks that resume bit-exact, the report."""

import copy
import json
import time

import pytest
import torch

from cosinegate.research import cpu_campaign as cc
from cosinegate.errors import CosineGateError
from cosinegate.training.checkpoint import load_checkpoint

TINY = {**copy.deepcopy(cc.PROTOCOL), "seeds": 1, "teacher_epochs": 2, "static_removals": [1], "methods": ["rates"], "rates": [0.5],
        "data": {"source": "synthetic", "root": None, "subset": 200}}
TINY["finetune"]["epochs"] = 1


def _campaign(folder, **kwargs):
    cc.load_protocol(folder, TINY)
    return cc.continue_campaign(folder, time.time() + 3600, jobs=2, nice=0, poll=0.2, log=lambda text: None, start_margin=0, **kwargs)


def test_every_contender_gets_the_same_fine_tuning_recipe(tmp_path):
    protocol = cc.load_protocol(tmp_path, cc.PROTOCOL)
    (tmp_path / "static-choice-s0.json").write_text(json.dumps({"order": [8, 5, 2]}))
    runs = cc.plan(tmp_path, protocol)
    names = [r.name for r in runs]
    assert names[:2] == ["teacher-s0", "teacher-s1"] and len(names) == len(set(names))
    tuned = [r for r in runs if r.seed == 0 and r.group not in ("teacher", "control")]
    assert len(tuned) == 3 + 3 * 2
    recipes = {json.dumps([r.config["optim"], r.config["distill"], r.config["data"]], sort_keys=True) for r in tuned}
    assert len(recipes) == 1  # one recipe: epochs, lr, schedule, batch, distillation, data
    assert all(r.config["init_from"].endswith("runs/teacher-s0/last.pt") and r.needs == ["teacher-s0"] for r in tuned)
    assert [r.config["model"]["drop_blocks"] for r in tuned if r.group.startswith("static")] == [[8], [5, 8], [2, 5, 8]]
    assert {r.config["gate"]["block_rates"] for r in tuned if r.config["model"]["mode"] != "none"} == {0.55, 0.75}
    # the protocol's gate overrides reach every gated contender (and nothing else)
    gate = protocol["finetune"]["gate"]
    assert all({k: r.config["gate"][k] for k in gate} == gate for r in tuned if r.config["model"]["mode"] != "none")
    assert all(r.config["gate"]["noise_epochs"] == 0 for r in tuned if r.config["model"]["mode"] == "none")
    # seed 1 has no static choice yet: its static runs wait; the controls wait for every fine-tune
    assert [r.config for r in runs if r.group.startswith("static") and r.seed == 1] == [None] * 3
    assert [r.config for r in runs if r.group == "control"] == [None, None]


def test_a_running_campaign_keeps_its_protocol(tmp_path):
    cc.load_protocol(tmp_path, TINY)
    with pytest.raises(CosineGateError, match="another protocol"):
        cc.load_protocol(tmp_path, cc.PROTOCOL)


def test_no_run_starts_inside_the_margin(tmp_path):
    cc.load_protocol(tmp_path, TINY)
    result = cc.continue_campaign(tmp_path, time.time() + 100, nice=0, log=lambda text: None, start_margin=600)
    assert result.finished == result.stopped == result.failed == [] and not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """The tiny campaign in two chunks: every run stopped after its first epoch, then continued to the end."""
    folder = tmp_path_factory.mktemp("campaign")
    return folder, _campaign(folder, stop_after=1), _campaign(folder)


def test_a_chunk_stops_runs_resumably_and_the_next_one_finishes_the_campaign(chunked):
    folder, first, second = chunked
    assert first.stopped == ["teacher-s0"] and first.finished == first.failed == []  # the fine-tunes wait for it
    assert second.failed == [] and second.stopped == []
    assert sorted(second.finished) == sorted(["teacher-s0", "static-d1-s0", "rates-r0.5-s0", "control-rates-r0.5-s0"])
    assert "stopped after epoch 1 of 2" in (folder / "runs/teacher-s0/train.log").read_text()
    choice = json.loads((folder / "static-choice-s0.json").read_text())
    candidates = choice["steps"][1]["candidates"]
    assert len(candidates) == 6 and str(choice["order"][0]) == max(candidates, key=lambda b: (candidates[b], -int(b)))
    for name in second.finished:  # model-only last.pt, no best.pt, the summary kept
        run = folder / "runs" / name
        assert "optimizer" not in load_checkpoint(run / "last.pt") and not (run / "best.pt").exists()
        assert (run / "summary.json").is_file()
    control = json.loads((folder / "runs/control-rates-r0.5-s0/summary.json").read_text())["config"]
    assert control["init_from"] is None and control["distill"]["weight"] == 0.0 and control["optim"]["epochs"] == 2 + 1
    assert control["gate"]["block_rates"] == 0.5


def test_the_resumed_teacher_is_the_one_trained_in_one_go(chunked, tmp_path):
    """Bit for bit: the teacher stopped after epoch 1 and resumed in a new process equals one trained in one go
    (same runtime settings, one thread, as the campaign's subprocesses)."""
    from cosinegate.training.loop import train
    from cosinegate.training.runtime import Runtime

    folder = chunked[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cc.teacher_config(TINY, 0), tmp_path / "one-go", progress=False, runtime=Runtime("bf16", True, False, True))
    finally:
        torch.set_num_threads(threads)
    ours, theirs = (load_checkpoint(f / "last.pt")["model"] for f in (tmp_path / "one-go", folder / "runs/teacher-s0"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    one_go, resumed = ([{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in (f / "metrics.jsonl").read_text().splitlines()]
                       for f in (tmp_path / "one-go", folder / "runs/teacher-s0"))
    assert len(one_go) == 2 and one_go == resumed


def test_the_report_says_what_finished(chunked):
    folder = chunked[0]
    text = cc.write_report(folder)
    assert "| teacher-s0 |" in text and "rates-r0.5" in text and (folder / "pareto.png").stat().st_size > 10_000
    report = json.loads((folder / "results.json").read_text())
    assert {r["preset"] for r in report["rows"]} >= {"teacher", "static-d1", "rates-r0.5"}
    assert all(p["state"] == "done" for p in report["progress"].values())


def _row(preset, mode, top1, savings, seeds=2, gain=None, dynamic_share=1.0):
    row = {"preset": preset, "mode": mode, "top1_mean": top1, "real_savings": savings, "seeds": seeds, "dynamic_share": dynamic_share}
    if gain is not None:
        row.update(gain_vs_static=gain, beats_static=gain >= 0.003 and dynamic_share >= 0.5)
    return row


def test_goals_are_read_off_the_rows_with_both_seeds():
    teacher = 0.910
    rows = [_row("teacher", "none", teacher, 0.0), _row("rates-r0.55", "predictive", 0.908, 0.29, gain=0.004),
            _row("shaping-r0.55", "predictive", 0.912, 0.30, seeds=1, gain=0.02)]  # one seed only: not counted
    status = dict(cc.goals(rows, teacher))
    assert [s.split(":")[0] for s in status.values()][:2] == ["met", "met"]
    assert "rates-r0.55 +0.40 pp" in list(status.values())[0]
    rows[1].update(top1_mean=0.905)  # 0.5 pp below the teacher
    rows[1].update(gain_vs_static=0.002, beats_static=False)
    assert [s.split(":")[0] for s in dict(cc.goals(rows, teacher)).values()][:2] == ["not met", "not met"]
    assert list(dict(cc.goals(rows[:1], None)).values())[0].startswith("open")
    cheap = [rows[0], _row("rates-r0.75", "predictive", 0.912, 0.20, gain=0.0)]  # above the teacher, but saves 20%
    assert list(dict(cc.goals(cheap, teacher)).values())[1] == "not met: no contender saves 28.5%"
