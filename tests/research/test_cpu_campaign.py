"""Issue 21's CPU campaign (cosinegate/research/cpu_campaign/) at tiny size: the plan, the same recipe for every
contender, the static choice, compact finished runs, chunks that resume bit-exact, the report."""

import copy
import json
import sys
import time

import pytest
import torch

from cosinegate.research import cpu_campaign as cc, winner_check
from cosinegate.research.cpu_campaign import schedule
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
    assert names[0] == "teacher-s0" and names.index("teacher-s1") == 1 + 9 and len(names) == len(set(names))  # seed by seed
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


@pytest.mark.parametrize("change, message", [
    ({"methods": ["/tmp/x/evil.yaml"]}, "has methods \"['/tmp/x/evil.yaml']\", not a list of the gated presets' names"),
    ({"methods": ["dense"]}, "not a list of the gated presets' names"),
    ({"seeds": "2"}, "has seeds '2', not a whole number from 1 to 100"),
    ({"rates": [0.5, "../x"]}, "not a list of rates in (0, 1]"),
    ({"reference": {"backbone": "../../x"}}, "not {backbone: name}"),
    ({"finetune": {"epochs": 1}}, "not the fine-tuning recipe"),
    ({"static_removals": None}, "not a list of block counts"),
    ({"finetune": {**TINY["finetune"], "lr": 10**400}}, "not the fine-tuning recipe"),
])
def test_a_campaign_json_from_elsewhere_is_checked_before_any_run_is_named(tmp_path, capsys, change, message):
    """Run names become folders under runs/ (and configs there): a campaign.json naming a path or a value of another
    kind is one line (a method path had sent a run's config, logs and checkpoints outside the folder)."""
    (tmp_path / "campaign.json").write_text(json.dumps({**TINY, **change}))
    with pytest.raises(CosineGateError, match="restore the committed campaign.json") as refused:
        cc.load_protocol(tmp_path)
    assert message in str(refused.value)
    from cosinegate.cli import cpu_campaign as command, run_main

    with pytest.raises(SystemExit) as ended:
        run_main(lambda: command.main(["--folder", str(tmp_path), "--report"]), [])
    err = capsys.readouterr().err
    assert ended.value.code == 2
    assert err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["campaign.json"]


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

    from cosinegate.research.cpu_campaign.schedule import speed_flags

    folder = chunked[0]
    flags = speed_flags("none")  # what the campaign ran the teacher with on this CPU
    runtime = Runtime("bf16" if "--amp" in flags else "none", "--channels-last" in flags, False, "--fused" in flags)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cc.teacher_config(TINY, 0), tmp_path / "one-go", progress=False, runtime=runtime)
    finally:
        torch.set_num_threads(threads)
    ours, theirs = (load_checkpoint(f / "last.pt")["model"] for f in (tmp_path / "one-go", folder / "runs/teacher-s0"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    one_go, resumed = ([{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in (f / "metrics.jsonl").read_text().splitlines()]
                       for f in (tmp_path / "one-go", folder / "runs/teacher-s0"))
    assert len(one_go) == 2 and one_go == resumed


def test_the_report_says_what_finished(chunked):
    from cosinegate.cpuinfo import cpu_name
    from cosinegate.research.cpu_campaign.schedule import speed_flags

    folder = chunked[0]
    text = cc.write_report(folder)
    assert "| teacher-s0 |" in text and "rates-r0.5" in text and (folder / "pareto.png").stat().st_size > 10_000
    row = next(line for line in text.splitlines() if line.startswith("| teacher-s0 | done"))
    assert row.endswith(f"| {'bf16' if '--amp' in speed_flags('none') else 'fp32'}, {cpu_name()}: 2 |")  # both epochs
    report = json.loads((folder / "results.json").read_text())
    assert {r["preset"] for r in report["rows"]} >= {"teacher", "static-d1", "rates-r0.5"}
    assert all(p["state"] == "done" for p in report["progress"].values())



def test_the_command_reports_each_folders_progress_and_goals_as_json(chunked, tmp_path):
    from cosinegate.cli import cpu_campaign as command

    folder, threads = chunked[0], torch.get_num_threads()
    try:
        command.main(["--folder", str(folder), "--report", "--json", str(tmp_path / "report.json")])
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["chunk"] is None and set(report) == {"chunk", str(folder)}  # the --help text's shape
    assert report[str(folder)]["progress"]["teacher-s0"]["state"] == "done" and report[str(folder)]["goals"]


def test_progress_estimates_the_hours_left_from_epochs_of_the_same_kind(tmp_path):
    protocol = cc.load_protocol(tmp_path, {**TINY, "teacher_epochs": 5})
    runs = cc.plan(tmp_path, protocol)
    assert cc.hours_left_line(cc.progress(tmp_path, runs), runs).startswith("One-core hours left: not estimated yet")

    def epochs(run, *seconds):
        (tmp_path / "runs" / run).mkdir(parents=True, exist_ok=True)
        (tmp_path / "runs" / run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "seconds": s, "val_top1": 0.5}) + "\n"
                                                                      for e, s in enumerate(seconds, 1)))

    epochs("teacher-s0", 300.0, 360.0, 9000.0)
    state = cc.progress(tmp_path, runs)
    assert state["teacher-s0"]["epochs_done"] == 3 and state["teacher-s0"]["hours_left"] == round(2 * 360.0 / 3600, 2)
    assert state["rates-r0.5-s0"]["hours_left"] is None  # no gated epoch yet
    # not plannable before its teacher's static choice, but its outline is known: 1 epoch of a dense resnet20 (distilled:
    # none yet, so any dense resnet20 epoch)
    assert state["static-d1-s0"]["epochs"] == 1 and state["static-d1-s0"]["hours_left"] == round(360.0 / 3600, 2)
    line = cc.hours_left_line(state, runs, jobs=2)
    assert line.startswith("About 0.3 one-core hours left (at least") and "rates-r0.5-s0, control-s0 (no epoch" in line
    epochs("rates-r0.5-s0", 7200.0)  # TINY fine-tunes for 1 epoch: done with it, none left
    state = cc.progress(tmp_path, runs)
    assert state["rates-r0.5-s0"]["hours_left"] == 0.0
    assert state["control-s0"]["epochs"] == 5 + 1 and state["control-s0"]["hours_left"] == 6 * 2.0  # a gated resnet20's epochs
    # two slots in the campaign's order: the teacher (0.2 h), then static (0.1) beside rates (0.0), then the control
    # once both have ended (12 h): 12.3 h; with one slot the sum of them
    assert cc.wall_hours(runs, state, jobs=2) == pytest.approx(12.3) and cc.wall_hours(runs, state, jobs=1) == pytest.approx(12.3)
    assert "(about 12.3 hours until its last run ends, with 2 runs at once in the campaign's order)" in cc.hours_left_line(
        state, runs, jobs=2)
    finished = {name: {**p, "state": "done", "hours_left": 0.0} for name, p in state.items()}
    assert cc.hours_left_line(finished, runs) == f"Every run is done ({len(state)} runs)."  # not "About 0.0 hours left"
    # a second campaign sharing one slot: its runs queue behind the first's, every control behind every other run
    other = tmp_path / "other"
    cc.load_protocol(other, {**TINY, "teacher_epochs": 5})
    for run in ("teacher-s0", "rates-r0.5-s0"):
        (other / "runs" / run).mkdir(parents=True)
        (other / "runs" / run / "metrics.jsonl").write_text((tmp_path / "runs" / run / "metrics.jsonl").read_text())
    walls = cc.shared_wall_hours([tmp_path, other], jobs=1)
    assert walls[tmp_path] == pytest.approx(0.2 + 0.1 + 0.2 + 0.1 + 12) and walls[other] == pytest.approx(12.6 + 12)
    assert "about 24.6 hours until its last run ends, with 1 runs at once sharing them with the other campaigns" in (
        cc.write_report(other, jobs=1, folders=[tmp_path, other]))


def test_an_epoch_logged_again_after_a_kill_counts_once(tmp_path):
    # a run killed between logging an epoch and saving last.pt logs that epoch again when resumed (training/loop.py)
    from cosinegate.research.cpu_campaign.report import _teacher_lines
    from cosinegate.research.cpu_campaign.state import epochs_done
    protocol = cc.load_protocol(tmp_path, {**TINY, "teacher_epochs": 5})
    runs = cc.plan(tmp_path, protocol)
    folder = tmp_path / "runs" / "teacher-s0"
    folder.mkdir(parents=True)
    records = [{"epoch": 1, "seconds": 60.0, "val_top1": 0.5}, {"epoch": 2, "seconds": 60.0, "val_top1": 0.6},
               {"epoch": 2, "seconds": 60.0, "val_top1": 0.6}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert epochs_done(folder) == 2 and cc.progress(tmp_path, runs)["teacher-s0"]["epochs_done"] == 2
    assert _teacher_lines(tmp_path, runs) == ["| teacher-s0 | (held-out 60.00 at epoch 2) | 2 of 5 | 2 | in progress |"]


def test_a_new_run_waits_for_a_deadline_its_first_epoch_fits_before(tmp_path):
    # train.py judges its next epoch by its own epochs: a new run has none, so the campaign judges by its kind's
    cc.load_protocol(tmp_path, TINY)
    (tmp_path / "runs" / "teacher-s0").mkdir(parents=True)
    (tmp_path / "runs" / "teacher-s0" / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "seconds": 3000.0}) + "\n")
    estimates = cc.first_epoch_seconds([(tmp_path, r) for r in cc.plan(tmp_path, TINY)])
    assert estimates[tmp_path, "teacher-s0"] == 3000.0 and estimates[tmp_path, "static-d1-s0"] == 3000.0  # dense resnet20s
    assert (tmp_path, "rates-r0.5-s0") not in estimates  # no gated epoch yet
    said = []
    result = cc.continue_campaign(tmp_path, time.time() + 3600, jobs=2, nice=0, poll=0.2, log=said.append, start_margin=0)
    assert result.finished == result.stopped == result.failed == [] and cc.run_state(tmp_path / "runs" / "teacher-s0") == "new"
    assert said == ["teacher-s0: not started: an epoch of its kind (~50 min, 1.5x for safety) would not end before the "
                    "deadline"]


def test_epochs_on_another_machine_are_scaled_to_this_ones(tmp_path):
    """Review finding: on a slower machine a new run's first epoch was judged by a faster machine's epochs. Epochs
    recorded here count alone; the rest are scaled by this machine's measured slowdown on a kind timed both ways."""
    from cosinegate.research.cpu_campaign.report import this_machine

    amp, cpu = this_machine()
    here = {"amp": amp, "hardware": f"cpu ({cpu}, x86_64, 1 threads)"}
    cc.load_protocol(tmp_path, {**TINY, "teacher_epochs": 5})
    runs = cc.plan(tmp_path, cc.load_protocol(tmp_path))
    (tmp_path / "runs" / "teacher-s0").mkdir(parents=True)
    records = [{"epoch": e, "seconds": 100.0} for e in (1, 2, 3)] + [{"epoch": 4, "seconds": 600.0, **here}]
    (tmp_path / "runs" / "teacher-s0" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "runs" / "rates-r0.5-s0").mkdir(parents=True)
    (tmp_path / "runs" / "rates-r0.5-s0" / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "seconds": 50.0}) + "\n")
    state = cc.progress(tmp_path, runs)
    assert state["teacher-s0"]["hours_left"] == round(1 * 600.0 / 3600, 2)  # its own epochs here, not the 100 s ones
    assert state["control-s0"]["hours_left"] == round(6 * 50.0 * 6 / 3600, 2)  # gated, timed elsewhere: 6x slower here
    estimates = cc.first_epoch_seconds([(tmp_path, r) for r in runs])
    assert estimates[tmp_path, "static-d1-s0"] == 600.0


def test_a_failed_run_is_recorded_with_the_state_and_cleared_when_it_runs_again(tmp_path, capsys):
    fail = [sys.executable, "-c", "import sys; print('out of memory'); sys.exit(3)"]
    cc.load_protocol(tmp_path, TINY)
    result = cc.continue_campaign(tmp_path, time.time() + 3600, jobs=2, nice=0, poll=0.2, log=lambda text: None,
                                  start_margin=0, command=fail)
    assert result.failed == ["teacher-s0"]
    record = json.loads((tmp_path / "runs" / "teacher-s0" / "failure.json").read_text())
    assert record["exit"] == 3 and record["log_tail"] == ["out of memory"]
    text = cc.write_report(tmp_path)
    assert "**Failed in the last chunk they ran in**" in text and "teacher-s0 (exit 3, " in text
    assert "| teacher-s0 | new (failed) | 0 of 2 |" in text
    cc.continue_campaign(tmp_path, time.time() + 3600, jobs=2, nice=0, poll=0.2, log=lambda text: None, start_margin=0,
                         command=[sys.executable, "-c", "pass"])
    assert not (tmp_path / "runs" / "teacher-s0" / "failure.json").exists()


def test_wall_hours_start_each_run_once_the_runs_it_needs_have_ended():
    runs = [cc.Run("t0", "teacher", 0), cc.Run("t1", "teacher", 1), cc.Run("a0", "x", 0, needs=["t0"]),
            cc.Run("a1", "x", 1, needs=["t1"]), cc.Run("c", "control", 0, needs=["a0", "a1"])]
    hours = {"t0": 2.0, "t1": 3.0, "a0": 1.0, "a1": 1.0, "c": 4.0}
    state = {n: {"state": "new", "hours_left": h} for n, h in hours.items()}
    # t0 | t1 from 0; a0 at 2 (ends 3); a1 at 3 (ends 4); c at 4 -> 8
    assert cc.wall_hours(runs, state, jobs=2) == 8.0 and cc.wall_hours(runs, state, jobs=1) == sum(hours.values())
    assert cc.wall_hours(runs, dict(state, t0={"state": "done", "hours_left": 0.0}), jobs=2) == 3.0 + 1.0 + 4.0
    assert cc.wall_hours(runs, dict(state, c={"state": "new", "hours_left": None}), jobs=2) is None


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
    # the control (trained from scratch) is no contender of the fine-tuning goals, however well it does
    control = _row("control-rates-r0.55", "predictive", 0.915, 0.30, gain=0.03)
    assert "control" not in " ".join(dict(cc.goals(rows + [control], teacher)).values())
    cheap = [rows[0], _row("rates-r0.75", "predictive", 0.912, 0.20, gain=0.0)]  # above the teacher, but saves 20%
    assert list(dict(cc.goals(cheap, teacher)).values())[1] == "not met: no contender saves 28.5%"


def test_the_winner_check_exports_checks_parity_and_int8_and_the_report_reads_it(chunked):
    folder = chunked[0]
    record = cc.check_winner(folder, test_images=64, log=lambda text: None)
    assert record["run"] == "rates-r0.5-s0" and record["all_finetunes_done"]
    assert record["parity"]["passed"] and record["parity"]["num_samples"] == 64 and record["parity"]["gate_agreement"] == 1.0
    assert set(record["int8"]["methods"]) == set(winner_check.METHODS) and record["int8"]["test_images"] == 64
    assert record["met"] == winner_check.verdict(record["parity"], record["int8"]["methods"]["entropy"])[0]
    assert "--policy auto" in record["commands"]["export"] and "WORK/model.onnx" in record["commands"]["parity"]
    line = dict(cc.goals([], None, cc.deploy_status(folder, cc.plan(folder, TINY), None)))
    deploy = list(line.values())[2]
    assert deploy.startswith("met: rates-r0.5-s0" if record["met"] else "not met: rates-r0.5-s0") and "64 images" in deploy
    # a changed checkpoint makes the record stale
    record["checkpoint_sha256"] = "0" * 64
    (folder / cc.WINNER_CHECK).write_text(json.dumps(record))
    assert "rerun --check-winner" in cc.deploy_status(folder, cc.plan(folder, TINY), None)
    (folder / cc.WINNER_CHECK).unlink()


def test_the_deployment_verdict_needs_parity_the_drop_and_every_blocks_gate_agreement():
    parity, row = {"passed": True}, {"top1_drop_pp": 0.5, "gate_agreement_min": 0.995}
    assert winner_check.verdict(parity, row) == (True, "")
    assert winner_check.verdict({"passed": False}, row) == (False, "parity failed")
    assert "loses 0.51 pp" in winner_check.verdict(parity, dict(row, top1_drop_pp=0.51))[1]
    assert winner_check.verdict(parity, dict(row, top1_drop_pp=(0.9 - 0.895) * 100))[0]  # 50 of 10,000 images: 0.5 pp
    # the report's overall figure counts only the dynamic blocks (policy-fixed blocks agree by construction)
    assert winner_check.dynamic_agreement(["dense", "dynamic", "always_run", "dynamic"], [1.0, 0.99, 1.0, 0.98]) == (0.985, 3)
    assert winner_check.dynamic_agreement(["dense", "always_run"], [1.0, 1.0]) == (1.0, None)
    assert "99.40% in its worst block" in winner_check.verdict(parity, dict(row, gate_agreement_min=0.994))[1]


def test_the_resnet56_fallback_aims_below_resnet32_and_trains_the_reference_with_the_teachers_recipe(tmp_path):
    from cosinegate.macs import mac_table, model_mac_table
    from cosinegate.models import build_model

    protocol = cc.load_protocol(tmp_path, cc.RESNET56_PROTOCOL)
    runs = cc.plan(tmp_path, protocol)
    reference = next(r for r in runs if r.group == "reference-resnet32" and r.seed == 0)
    teacher = runs[0].config
    assert reference.config["model"]["backbone"] == "resnet32" and reference.config["init_from"] is None
    assert reference.config["optim"] == dict(teacher["optim"], epochs=50 + 15) and reference.config["distill"] == teacher["distill"]
    assert not any(r.group.startswith("control") for r in runs)
    # every gated contender's gated blocks at the target rate execute fewer MACs than the dense ResNet-32
    resnet32 = mac_table("resnet32").dense
    for run in (r for r in runs if r.config and r.config["model"]["mode"] != "none"):
        model = build_model(run.config["model"], num_classes=10, image_size=32)
        table, rate, ungated = model_mac_table(model), run.config["gate"]["block_rates"], set(model.ungated_blocks)
        expected = table.stem + table.classifier + sum(b.shortcut + b.gate + b.residual * (1 if i in ungated else rate)
                                                       for i, b in enumerate(table.blocks))
        assert expected < 0.95 * resnet32, (run.name, expected, resnet32)


def test_the_reference_goal_compares_gated_runs_at_most_the_references_macs():
    reference = _row("reference-resnet32", "none", 0.920, 0.0)
    reference["executed_macs"] = 69e6
    cheap, costly = _row("two-phase-r0.45", "predictive", 0.924, 0.5), _row("shaping-r0.45", "predictive", 0.95, 0.4)
    cheap["executed_macs"], costly["executed_macs"] = 64e6, 75e6
    goal, status = cc.reference_goal([reference, cheap, costly], "resnet32")
    assert status.startswith("met: two-phase-r0.45 92.40%") and "+0.40 pp" in status  # the costlier, better run does not count
    cheap["top1_mean"] = 0.922
    assert cc.reference_goal([reference, cheap, costly], "resnet32")[1].startswith("not met: two-phase-r0.45")
    assert cc.reference_goal([reference, costly], "resnet32")[1].startswith("not met: every gated run executes more")
    assert cc.reference_goal([dict(reference, seeds=1), cheap], "resnet32")[1].startswith("open")


def test_campaigns_share_the_slots_in_folder_order_with_every_control_last(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    cc.load_protocol(first, TINY)
    cc.load_protocol(second, {**TINY, "controls": False})
    queue = [f"{f.name}/{r.name}" for f, r in schedule._plans([first, second], log=lambda text: None)]
    assert queue == ["a/teacher-s0", "a/static-d1-s0", "a/rates-r0.5-s0", "b/teacher-s0", "b/static-d1-s0", "b/rates-r0.5-s0",
                     "a/control-s0"]


def test_a_reference_campaign_runs_beside_another_and_reports_its_goal(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    cc.load_protocol(first, {**TINY, "controls": False, "static_removals": [], "methods": []})
    cc.load_protocol(second, {**TINY, "teacher_epochs": 1, "controls": False, "reference": {"backbone": "resnet32"},
                              "static_choice_images": 40})
    started = []
    result = cc.continue_campaign([first, second], time.time() + 3600, jobs=2, nice=0, poll=0.2, start_margin=0,
                                  log=lambda text: started.append(text.split(":")[0]) if "started" in text else None)
    assert result.failed == [] and sorted(result.finished) == ["a/teacher-s0", "b/rates-r0.5-s0", "b/reference-resnet32-s0",
                                                               "b/static-d1-s0", "b/teacher-s0"]
    assert started[:2] == ["a/teacher-s0", "b/teacher-s0"]
    summary = json.loads((second / "runs/reference-resnet32-s0/summary.json").read_text())
    assert summary["config"]["model"]["backbone"] == "resnet32" and summary["epochs"] == 1 + 1
    assert json.loads((second / "static-choice-s0.json").read_text())["held_out_images"] == 40
    text = cc.write_report(second)
    assert "| reference-resnet32-s0 |" in text and "open: the dense resnet32 has not finished with 2 seeds" in text


def test_campaign_folders_with_the_same_name_keep_their_runs_apart(tmp_path):
    folders = [tmp_path / "x" / "c", tmp_path / "y" / "c"]
    for folder in folders:
        cc.load_protocol(folder, {**TINY, "teacher_epochs": 1, "controls": False, "static_removals": [], "methods": []})
    result = cc.continue_campaign(folders, float("inf"), jobs=2, nice=0, poll=0.2, start_margin=0, log=lambda text: None)
    assert result.failed == [] and result.finished == ["c/teacher-s0", "c/teacher-s0"]
    assert all(cc.run_state(f / "runs/teacher-s0") == "done" for f in folders)


def test_a_killed_campaign_stops_its_runs_and_leaves_them_resumable(tmp_path):
    # a background campaign is stopped with kill (SIGTERM): its runs must not go on training unwatched
    import signal
    import subprocess

    from conftest import ROOT, script_env

    cc.load_protocol(tmp_path, {**TINY, "teacher_epochs": 200})
    campaign = subprocess.Popen([sys.executable, str(ROOT / "train/cpu_campaign.py"), "--folder", str(tmp_path)], cwd=ROOT,
                                env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics, last = (tmp_path / "runs" / "teacher-s0" / name for name in ("metrics.jsonl", "last.pt"))
    deadline = time.time() + 600  # generous: on a loaded machine the first epoch (data, model, one pass) can take minutes
    while time.time() < deadline and not last.is_file():  # an epoch is logged, then saved: killed between, it is "new"
        time.sleep(0.2)
    assert last.is_file(), "no epoch saved in 600 s"
    campaign.send_signal(signal.SIGTERM)
    assert campaign.wait(60) == 143
    epochs = metrics.read_text().count("\n")
    time.sleep(3)  # a run left going would log more epochs (a tiny epoch takes well under a second)
    assert metrics.read_text().count("\n") == epochs and cc.run_state(tmp_path / "runs" / "teacher-s0") == "partial"


def test_the_campaign_trains_in_bf16_only_where_the_cpu_computes_it():
    from cosinegate.research.cpu_campaign.schedule import speed_flags

    for mode in ("none", "predictive"):
        assert speed_flags(mode, bf16=True)[:2] == ["--amp", "bf16"]
        assert "--amp" not in speed_flags(mode, bf16=False) and "--channels-last" in speed_flags(mode, bf16=False)
    assert "--fused" in speed_flags("none", bf16=False) and "--fused" not in speed_flags("predictive", bf16=False)


def test_a_runs_epochs_are_told_by_precision_and_cpu_in_order():
    from cosinegate.research.cpu_campaign.report import runtime_mix

    epyc, xeon = "cpu (AMD EPYC, x86_64, 1 threads)", "cpu (Intel(R) Xeon(R) Platinum 8481C, x86_64, 1 threads)"
    metrics = [{}] * 3 + [{"amp": "none", "hardware": epyc}] * 2 + [{"amp": "bf16", "hardware": xeon}]
    assert runtime_mix(metrics) == "unrecorded: 3; fp32, AMD EPYC: 2; bf16, Intel(R) Xeon(R) Platinum 8481C: 1"
    assert runtime_mix([]) == ""
    windows = "cpu (Intel64 Family 6 Model 158 Stepping 10, GenuineIntel, AMD64, 1 threads)"  # platform.processor()
    assert runtime_mix([{"amp": "none", "hardware": windows}]) == "fp32, Intel64 Family 6 Model 158 Stepping 10, GenuineIntel: 1"


def test_a_static_choice_without_a_block_order_is_one_line(tmp_path):
    protocol = cc.load_protocol(tmp_path, TINY)
    (tmp_path / "static-choice-s0.json").write_text(json.dumps({"order": ["../x"]}))
    with pytest.raises(CosineGateError, match="holds no block order .* delete it"):
        cc.plan(tmp_path, protocol)


def test_a_chunk_starts_each_known_campaign_with_its_own_protocol_and_only_reports_when_asked(tmp_path, monkeypatch):
    """open_campaigns with no folders opens CAMPAIGNS in order (relative to the working folder): a new ResNet-56 folder
    gets RESNET56_PROTOCOL, the other PROTOCOL; a report (train=False) starts none (new-user audit: `cpu-campaign
    --report` outside the checkout wrote two empty campaigns), and then trains nothing and writes every folder's results."""
    from cosinegate.research.cpu_campaign import CAMPAIGNS, PROTOCOL, RESNET56_PROTOCOL, run_chunk
    from cosinegate.research.cpu_campaign.chunk import open_campaigns

    monkeypatch.chdir(tmp_path)
    for check in (False, True):
        with pytest.raises(CosineGateError, match=r"^train/results/cifar10-campaign-cpu holds no campaign .* --folder\.$"):
            run_chunk(train=False, check=check, log=lambda text: None)
    assert not list(tmp_path.iterdir())
    assert open_campaigns() == list(CAMPAIGNS)
    protocols = [json.loads((tmp_path / folder / "campaign.json").read_text()) for folder in CAMPAIGNS]
    assert protocols == [PROTOCOL, RESNET56_PROTOCOL]
    chunk = run_chunk(train=False, log=lambda text: None)
    assert list(chunk.results) == list(CAMPAIGNS) and chunk.trained is None and chunk.checks == {}
    summary = chunk.summary()
    assert summary["chunk"] is None and all(summary[f]["progress"] == chunk.results[f]["progress"] for f in CAMPAIGNS)
    assert all(state["state"] == "new" for state in summary[list(CAMPAIGNS)[1]]["progress"].values())


def test_a_folder_without_a_campaign_is_refused_before_torch_loads(tmp_path):
    """`cpu-campaign --report` or `--check-winner` outside the checkout: the one line came after torch's import
    (seconds; the command imported it first, and the training schedule's static choice at module level)."""
    import subprocess
    import sys

    code = ("import sys\nsys.modules['torch'] = None\nfrom cosinegate.cli import console_main\n"
            "sys.exit(console_main(sys.argv[1:]))")
    for flag in ("--report", "--check-winner"):
        done = subprocess.run([sys.executable, "-c", code, "cpu-campaign", flag], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
        assert done.stderr.startswith("error: train/results/cifar10-campaign-cpu holds no campaign"), done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
    assert not list(tmp_path.iterdir())


def test_a_training_chunk_runs_its_evaluations_on_the_threads_it_is_given(tmp_path, monkeypatch):
    """The static choices the campaign's own process evaluates run on --threads (the command set it before torch was
    imported lazily; now run_chunk does, once the folders are checked)."""
    import torch

    from cosinegate.research.cpu_campaign import chunk

    seen = []
    monkeypatch.setattr(chunk, "continue_campaign", lambda folders, deadline, **kw: seen.append(torch.get_num_threads()))
    threads = torch.get_num_threads()
    try:
        chunk.run_chunk([tmp_path / "c"], train=True, threads=threads + 2, log=lambda text: None)
        assert seen == [threads + 2]
    finally:
        torch.set_num_threads(threads)


def test_the_commands_help_names_the_default_campaigns_in_order(capsys):
    """--folder's help spells the campaign table out (the command's --help imports no torch); it follows CAMPAIGNS."""
    from cosinegate.cli import cpu_campaign as command
    from cosinegate.research.cpu_campaign import CAMPAIGNS

    with pytest.raises(SystemExit):
        command.parse_args(["--help"])
    text = "".join(capsys.readouterr().out.split())  # however argparse wrapped it (at spaces or hyphens)
    assert "then".join(CAMPAIGNS) in text


@pytest.mark.parametrize("parent", [0, 10, 15])
def test_training_runs_at_the_campaign_niceness_whatever_the_parent_had(parent):
    """`nice python train/cpu_campaign.py` starts the campaign at 10; its runs must run at 10 too, not 10 + 10. (The
    parent here starts at this test's own niceness or above: lowering it needs privileges.)"""
    import subprocess
    code = ("import os; from cosinegate.research import at_niceness; "
            f"os.nice(max(0, {parent} - os.nice(0))); start = os.nice(0); at_niceness(10)(); print(start, os.nice(0))")
    start, child = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert child == max(10, start)
