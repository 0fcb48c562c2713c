"""What the campaign has shown so far: results.md, results.json and pareto.png from its state, the goals of issue 21,
the hours left, and the deployment check of the leading gated run (winner-check.json)."""

from dataclasses import replace
from pathlib import Path

from cosinegate.artifacts import atomic_write_json, atomic_write_text, read_json
from cosinegate.research import winner_check
from cosinegate.research.cpu_campaign.plan import (TEACHER_PRESET, finetunes_done, in_order, load_protocol, plan, table,
                                                   winner_run)
from cosinegate.research.cpu_campaign.state import compact, last_failure, run_state
from cosinegate.research.experiments import pareto_plot, results_markdown
from cosinegate.training.metrics_log import read_summary, run_metrics

WINNER_CHECK = "winner-check.json"  # the deployment goal's record (winner_check.check) of the leading gated run


def kind(run):
    """What an epoch's time depends on: (backbone, dense or gated, distilled); a run not plannable yet has it from
    its outline (a static run before its teacher, a control before the fine-tunes)."""
    if run.config is None:
        return run.outline[1] if run.outline else None
    return (run.config["model"]["backbone"], "dense" if run.config["model"]["mode"] == "none" else "gated",
            bool(run.config.get("distill", {}).get("weight")))


def this_machine():
    """(precision, CPU name) the campaign trains with here (schedule.speed_flags: bf16 only where the CPU computes it)."""
    from cosinegate.cpuinfo import cpu_name, native_bf16

    return ("bf16" if native_bf16() else "none", cpu_name())


def _timed(pairs, metrics=None, here=None):
    """([((folder, run name), [(seconds, recorded here)])], {kind and (backbone, dense/gated): (this machine's epoch
    seconds, the others')}) over (folder, run) pairs (``metrics``: their run_metrics where already read; `here`: this
    machine's (precision, CPU), default this_machine())."""
    here = here or this_machine()
    runs, split = [], {}
    for folder, run in pairs:
        records = metrics[folder, run.name] if metrics else run_metrics(Path(folder) / "runs" / run.name)
        timed = [(m["seconds"], epoch_runtime(m) == here)
                 for m in records if m.get("seconds")]
        runs.append(((folder, run.name), timed))
        its = kind(run)
        for key in (its, its[:2]) if its else ():
            mine, others = split.setdefault(key, ([], []))
            for seconds, is_here in timed:
                (mine if is_here else others).append(seconds)
    return runs, split


def _slowdown(split):
    """The largest ratio of this machine's median epoch to the others' over the kinds timed both ways; 1 where none
    is."""
    return max((_median(mine) / _median(others) for mine, others in split.values() if mine and others), default=1.0)


def machine_scale(folders):
    """_epoch_seconds' scale measured over every run of every campaign in ``folders`` (they share this machine)."""
    return _slowdown(_timed([(Path(f), run) for f in folders for run in plan(f, load_protocol(f))])[1])


def _epoch_seconds(pairs, metrics=None, here=None, scale=None):
    """({(folder, run name): its epochs' seconds}, {kind and (backbone, dense/gated): every epoch's seconds of runs of
    that kind}) over (folder, run) pairs (``metrics``: their run_metrics where already read). Epochs recorded with
    this machine's precision and CPU (`here`, default this_machine()) count alone where a run or kind has any; the
    others (another machine's, or unrecorded) are scaled by the largest ratio of this machine's median epoch to the
    others' over the kinds measured both ways (1 where none is; `scale`: that ratio over more campaigns,
    machine_scale): a first epoch on a slower machine must not be judged by a faster one's."""
    runs, split = _timed(pairs, metrics, here)
    scale = _slowdown(split) if scale is None else scale

    def pick(timed):
        mine = [seconds for seconds, is_here in timed if is_here]
        return mine or [seconds * scale for seconds, _ in timed]

    own = {key: pick(timed) for key, timed in runs}
    by_kind = {key: mine or [seconds * scale for seconds in others] for key, (mine, others) in split.items()}
    return own, by_kind


def _median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _median_epoch(run, own, by_kind):
    """The median seconds of the run's own epochs, or before it has one, of its kind's (or its backbone and
    dense/gated alone); None where neither exists."""
    its = kind(run)
    measured = own or (its and (by_kind.get(its) or by_kind.get(its[:2]))) or []
    return _median(measured) if measured else None


def first_epoch_seconds(queue):
    """{(folder, run name): the estimated seconds of the first epoch of each new run in the (folder, run) queue}, from
    runs of its kind (runs without one are left out): a new run's cosinegate train has no epoch of its own to judge by."""
    own, by_kind = _epoch_seconds(queue)
    estimates = {}
    for folder, run in queue:
        if run_state(Path(folder) / "runs" / run.name) == "new":
            median = _median_epoch(run, [], by_kind)
            if median is not None:
                estimates[folder, run.name] = median
    return estimates


def runtime_mix(metrics):
    """A run's epochs by precision and CPU, in order ("unrecorded: 41; fp32, AMD EPYC: 7"): a resumed run may change
    both, and epochs logged before they were recorded say "unrecorded"."""
    parts = []
    for m in metrics:
        amp, cpu = epoch_runtime(m) or (None, None)
        key = "unrecorded" if amp is None else f"{'bf16' if amp == 'bf16' else 'fp32'}, {cpu}"
        if parts and parts[-1][0] == key:
            parts[-1][1] += 1
        else:
            parts.append([key, 1])
    return "; ".join(f"{key}: {count}" for key, count in parts)


def epoch_runtime(record):
    """(precision, CPU name) an epoch's metrics line records; None before they were recorded."""
    return (record["amp"], cpu_of(record.get("hardware"))) if "amp" in record else None


def cpu_of(hardware):
    """The CPU's name in a hardware label ("cpu (AMD EPYC, x86_64, 1 threads)" -> "AMD EPYC")."""
    text = str(hardware or "unknown")
    return text[len("cpu ("):].rsplit(",", 2)[0] if text.startswith("cpu (") else text  # a name may hold commas


def progress(folder, runs, scale=None):
    """{run: state, epochs_done, epochs (planned), hours_left, and failed: {exit, at} where cosinegate train failed in the
    last chunk the run was in}: hours_left estimates the one-core hours the run still
    needs, its epochs left times the median epoch seconds of its own epochs, or before it has one, of every epoch
    trained so far by runs of its kind (or, where none has, of its backbone and dense/gated alone; this machine,
    shared with other work while they ran); None where neither exists."""
    metrics = {(folder, run.name): run_metrics(Path(folder) / "runs" / run.name) for run in runs}
    own, by_kind = _epoch_seconds([(folder, run) for run in runs], metrics, scale=scale)
    report = {}
    for run in runs:
        planned = run.config["optim"]["epochs"] if run.config else run.outline and run.outline[0]
        done = len(metrics[folder, run.name])
        entry = report[run.name] = {"state": run_state(Path(folder) / "runs" / run.name), "epochs_done": done,
                                    "epochs": planned, "runtime": runtime_mix(metrics[folder, run.name])}
        failure = last_failure(Path(folder) / "runs" / run.name)
        if failure is not None:
            entry["failed"] = {"exit": failure.get("exit"), "at": failure.get("at")}
        median = _median_epoch(run, own[folder, run.name], by_kind)
        if entry["state"] == "done":
            entry["hours_left"] = 0.0
        elif planned is None or median is None:  # no epoch of its kind yet
            entry["hours_left"] = None
        else:
            entry["hours_left"] = round(max(0, planned - done) * median / 3600, 2)
    return report


def _ends(runs, state, jobs):
    """{run: hours until it ends} when the runs left start in the given order on `jobs` slots, each once the runs it
    needs have ended (the scheduler's rule); None when a run left has no estimate."""
    left = [r for r in runs if state[r.name]["state"] != "done"]
    if any(state[r.name]["hours_left"] is None for r in left):
        return None
    names = {r.name for r in runs}
    ends = {r.name: 0.0 for r in runs if r not in left}
    slots = [0.0] * jobs  # when each slot is free
    while left:
        now, slot = min((t, i) for i, t in enumerate(slots))
        ready = [r for r in left if all(ends.get(n, float("inf")) <= now for n in r.needs if n in names)]
        if not ready:  # wait for the next run to end
            slots[slot] = min((t for t in ends.values() if t > now), default=None)
            if slots[slot] is None:  # needs that can never be met
                return None
            continue
        run = ready[0]
        ends[run.name] = slots[slot] = now + state[run.name]["hours_left"]
        left.remove(run)
    return ends


def wall_hours(runs, state, jobs=2):
    """Hours until the last run ends when the runs left start in the campaign's order on `jobs` slots (_ends); None
    when a run left has no estimate."""
    ends = _ends(runs, state, jobs)
    return None if ends is None else max(ends.values(), default=0.0)


def shared_wall_hours(folders, jobs=2):
    """{folder: hours until its last run ends} when the runs left of every campaign in ``folders`` share the `jobs`
    slots in the scheduler's order (plan.in_order); None for every folder when a run left has no estimate."""
    plans = [(Path(f), plan(f, load_protocol(f))) for f in folders]
    scale = machine_scale(folders)
    runs, state = [], {}
    for rank, (folder, folder_runs) in enumerate(plans):
        for name, entry in progress(folder, folder_runs, scale).items():
            state[f"{rank}/{name}"] = entry
    ranks = {folder: rank for rank, (folder, _) in enumerate(plans)}
    for folder, run in in_order(plans):
        rank = ranks[folder]
        runs.append(replace(run, name=f"{rank}/{run.name}", needs=[f"{rank}/{n}" for n in run.needs]))
    ends = _ends(runs, state, jobs)
    return {folder: None if ends is None else max((t for n, t in ends.items() if n.startswith(f"{rank}/")), default=0.0)
            for folder, rank in ranks.items()}


def hours_left_line(state, runs, jobs=2, shared=False, wall=None):
    """One line: the estimated one-core hours the campaign still needs, and the hours until its last run ends with
    `jobs` runs at once in the campaign's order (wall_hours; with ``shared``, ``wall`` from shared_wall_hours: the
    slots shared with the other campaigns), or the least they can take where some run has no estimate yet."""
    if state and all(p["state"] == "done" for p in state.values()):
        return f"Every run is done ({len(state)} runs)."
    known = [p["hours_left"] for p in state.values() if p["hours_left"] is not None]
    unknown = [n for n, p in state.items() if p["hours_left"] is None]
    if not known or (unknown and not sum(known)):
        return f"One-core hours left: not estimated yet (no epoch of the kind of {', '.join(unknown)})."
    total = sum(known)
    wall = wall if shared else wall_hours(runs, state, jobs)
    order = ("sharing them with the other campaigns in the scheduler's order (every control last)" if shared
             else "in the campaign's order")
    text = (f"About {total:.1f} one-core hours left ("
            + (f"about {wall:.1f} hours until its last run ends, with {jobs} runs at once {order}" if wall is not None
               else f"at least {total / jobs:.1f} hours with {jobs} runs at once"
               + ("; no estimate of the slots shared with the other campaigns until each of their runs left has an "
                  "epoch of its kind" if shared and not unknown else "")) + "), from "
            "the median epoch time of each run, or of runs of its kind, measured so far on this machine, shared with "
            "other work (another machine's epochs scaled by the largest slowdown measured here: on the safe side)")
    return text + (f"; not estimated yet: {', '.join(unknown)} (no epoch of their kind)." if unknown else ".")


def _teacher_lines(folder, runs):
    lines = []
    for run in (r for r in runs if r.group == "teacher" or r.group.startswith("reference-")):
        path = Path(folder) / "runs" / run.name
        metrics = run_metrics(path)
        minutes = sum(m.get("seconds", 0.0) for m in metrics) / 60
        if (path / "summary.json").is_file():
            summary = read_summary(path)
            lines.append(f"| {run.name} | {summary['final']['top1'] * 100:.2f} | {len(metrics)} | {minutes:.0f} | {summary['hardware']} |")
        elif metrics:
            lines.append(f"| {run.name} | (held-out {metrics[-1]['val_top1'] * 100:.2f} at epoch {metrics[-1]['epoch']}) | "
                         f"{len(metrics)} of {run.config['optim']['epochs']} | {minutes:.0f} | in progress |")
    return lines


def reference_goal(rows, reference):
    """The deeper-backbone goal (issue 21's fallback): a gated run at <= the dense reference's MACs >= 0.3 pp above it."""
    goal = f"a gated network at <= the dense {reference} MACs >= 0.3 pp above it (both with 2 seeds)"
    ref = next((r for r in rows if r["preset"] == f"reference-{reference}" and r["seeds"] >= 2), None)
    if ref is None:
        return goal, f"open: the dense {reference} has not finished with 2 seeds"
    gated = [r for r in rows if r["mode"] != "none" and r["seeds"] >= 2 and not r["preset"].startswith("control")]
    if not gated:
        return goal, "open: no gated contender finished with 2 seeds yet"
    cheap = [r for r in gated if r["executed_macs"] <= ref["executed_macs"]]
    if not cheap:
        return goal, (f"not met: every gated run executes more than {ref['executed_macs'] / 1e6:.1f}M MACs (least: "
                      f"{min(r['executed_macs'] for r in gated) / 1e6:.1f}M)")
    best = max(cheap, key=lambda r: r["top1_mean"])
    gain = best["top1_mean"] - ref["top1_mean"]
    return goal, (f"{'met' if gain >= 0.003 else 'not met'}: {best['preset']} {best['top1_mean'] * 100:.2f}% at "
                  f"{best['executed_macs'] / 1e6:.1f}M MACs vs {reference} {ref['top1_mean'] * 100:.2f}% at "
                  f"{ref['executed_macs'] / 1e6:.1f}M ({gain * 100:+.2f} pp)")


def goals(rows, teacher_top1, deploy_status=None, reference=None):
    """Issue 21's goals on the finished rows: (goal, status text); deploy_status: the deployment goal's line;
    reference: the protocol's dense reference backbone, whose goal is added."""
    gated = [r for r in rows if r["mode"] != "none" and not r["preset"].startswith("control")]  # the control is not fine-tuned
    both = [r for r in gated if r["seeds"] >= 2]
    out = []
    inside = [r for r in both if r.get("gain_vs_static") is not None]
    if inside:
        best = max(inside, key=lambda r: r["gain_vs_static"])
        met = best["beats_static"]
        out.append(("best gated >= 0.3 pp above the static curve at its executed MACs, >= half of its savings dynamic",
                    f"{'met' if met else 'not met'}: {best['preset']} {best['gain_vs_static'] * 100:+.2f} pp, "
                    f"{best['dynamic_share'] * 100:.0f}% dynamic ({best['seeds']} seeds)"))
    elif both:
        out.append(("best gated >= 0.3 pp above the static curve", "not measured: every gated contender with 2 seeds lies "
                    "outside the static curve's MAC range"))
    else:
        out.append(("best gated >= 0.3 pp above the static curve", "open: no gated contender finished with 2 seeds yet"))
    if both and teacher_top1 is not None:
        close = [r for r in both if r["real_savings"] >= 0.285]
        best = max(close, key=lambda r: r["top1_mean"]) if close else None
        if best is None:
            out.append((">= 28.5% real savings within 0.3 pp of the teacher", "not met: no contender saves 28.5%"))
        else:
            gap = best["top1_mean"] - teacher_top1
            out.append((">= 28.5% real savings within 0.3 pp of the teacher",
                        f"{'met' if gap >= -0.003 else 'not met'}: {best['preset']} {best['real_savings'] * 100:.1f}% at "
                        f"{gap * 100:+.2f} pp"))
    else:
        out.append((">= 28.5% real savings within 0.3 pp of the teacher", "open: needs the teachers and 2 seeds of a gated contender"))
    out.append(("the winner exported with --policy auto passes parity; INT8 Q/DQ <= 0.5 pp, gate agreement >= 99.5%",
                deploy_status or "open: no gated contender has finished"))
    if reference:
        out.append(reference_goal(rows, reference))
    return out


def deploy_status(folder, runs, rows):
    """The deployment goal's line for the leading gated run (winner_run's rule over the runs finished so far)."""
    run = winner_run(folder, runs, rows)
    if run is None:
        return None
    path = Path(folder) / WINNER_CHECK
    record = read_json(path, "winner check") if path.is_file() else None
    line = winner_check.status(record, run.name, Path(folder) / "runs" / run.name / "last.pt")
    return line if finetunes_done(folder, runs) else line + " (provisional: fine-tunes still running)"


def check_winner(folder, test_images=None, log=print):
    """winner_check.check on the leading gated run's last.pt, recorded in WINNER_CHECK (None: no gated run finished)."""
    folder = Path(folder)
    runs = plan(folder, load_protocol(folder))
    run = winner_run(folder, runs)
    if run is None:
        return None
    compact(folder / "runs" / run.name)  # the check names last.pt by hash: hash the file the campaign keeps
    record = winner_check.check(folder / "runs" / run.name / "last.pt", test_images=test_images, log=log)
    record.update(run=run.name, all_finetunes_done=finetunes_done(folder, runs))
    atomic_write_json(folder / WINNER_CHECK, record)
    return record


def write_report(folder, protocol=None, jobs=2, folders=None):
    """results.md, results.json and pareto.png of the campaign folder, from its state as it is now (`jobs`: runs at
    once, for the hours-left line; ``folders``: every campaign sharing them, this one included)."""
    folder = Path(folder)
    shared = folders is not None and len(folders) > 1
    wall = shared_wall_hours(folders, jobs)[folder] if shared else None
    protocol = protocol or load_protocol(folder)
    runs = plan(folder, protocol)
    rows = table(folder, runs)
    state = progress(folder, runs, machine_scale(folders) if shared else None)
    teacher = [r for r in rows if r["preset"] == "teacher"]
    teacher_top1 = teacher[0]["top1_mean"] if teacher and teacher[0]["seeds"] == protocol["seeds"] else None
    ft = protocol["finetune"]
    note = (f"Protocol (campaign.json): {protocol['backbone']} on {protocol['data']['root']} (45,000 train / 5,000 held out / "
            f"10,000 test), {protocol['seeds']} seeds; dense teacher recipe train/configs/{TEACHER_PRESET}.yaml; every "
            f"contender fine-tuned from its seed's teacher for {ft['epochs']} epochs (lr {ft['lr']} {ft['schedule']}, "
            f"nesterov, gates at {ft['gate_lr_scale']}x the lr, distillation weight {ft['distill']['weight']} at "
            f"T={ft['distill']['temperature']})"
            + (f"; a dense {protocol['reference']['backbone']} trained from scratch with the teacher's recipe for "
               f"{protocol['teacher_epochs'] + ft['epochs']} epochs" if protocol.get("reference") else "")
            + ("" if protocol.get("controls", True) else "; no control run")
            + "; CPU, one thread per run, bf16 autocast where the CPU computes bf16 (AMX, AVX-512 bf16), else fp32: each "
              "run's epochs by precision and CPU are in the Progress table"
            + (" (unrecorded: epochs trained before they were recorded; the campaign's README says how they ran)"
               if any("unrecorded" in p["runtime"] for p in state.values()) else "")
            + ". Rows show finished runs only.")
    lines = [f"# The CPU campaign (issue 21), {protocol['backbone']}: dense teacher, then every contender fine-tuned from it",
             "", note, "",
             "## Teachers" + (" and the dense reference" if protocol.get("reference") else ""), "", "| run | test top-1 % (final epoch) | epochs | minutes training | hardware |", "|---|---|---|---|---|",
             *_teacher_lines(folder, runs), "", "## Goals", ""]
    status = deploy_status(folder, runs, rows)
    reference = (protocol.get("reference") or {}).get("backbone")
    lines += [f"- {goal}: **{text}**" for goal, text in goals(rows, teacher_top1, status, reference)]
    failed = ", ".join(f"{n} (exit {p['failed']['exit']}, {p['failed']['at']})" for n, p in state.items() if "failed" in p)
    lines += ["", "## Progress", "", hours_left_line(state, runs, jobs, shared, wall), "",
              *([f"**Failed in the last chunk they ran in** (see their train.log and failure.json): {failed}.", ""]
                if failed else []),
              "| run | state | epochs | one-core hours left (est.) | epochs by precision, CPU |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {p['state']}{' (failed)' if 'failed' in p else ''} | {p['epochs_done']} of {p['epochs'] or '?'} | "
              f"{'?' if p['hours_left'] is None else format(p['hours_left'], '.1f')} | {p['runtime'] or '-'} |"
              for n, p in state.items()]
    text = "\n".join(lines) + "\n\n" + (results_markdown(rows, "") if rows else "No run has finished yet.\n")
    atomic_write_text(folder / "results.md", text)
    atomic_write_json(folder / "results.json", {"protocol": protocol, "rows": rows, "progress": state,
                                                "goals": dict(goals(rows, teacher_top1, status, reference))})
    if rows:
        scratch = "; control: from scratch" if any(row["preset"].startswith("control") for row in rows) else ""
        pareto_plot(rows, folder / "pareto.png", f"CPU campaign: top-1 vs executed MACs (fine-tuned from the teacher{scratch})",
                    paper_points=False)
    return text
