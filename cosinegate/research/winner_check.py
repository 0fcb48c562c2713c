"""Issue 21's deployment goal on one checkpoint: exported with ``--policy auto`` it passes parity (logits and gate
decisions on the whole test split), and its INT8 Q/DQ graph loses <= 0.5 pp top-1 with gate agreement >= 99.5% in
every block.

Each step is the toolkit's own command (export_onnx, parity, evaluate_int8) in a subprocess, as a user runs it, in a
scratch folder; the record keeps the numbers and the commands (scratch paths shown as ``WORK/``).
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from cosinegate.artifacts import read_json, sha256_file
from cosinegate.errors import CosineGateError
from cosinegate.research import at_niceness, child_env

MAX_DROP_PP = 0.5
MIN_GATE_AGREEMENT = 0.995  # per block: a block whose gate flips more often fails, however well the others agree
VERDICT_METHOD = "entropy"  # calibrate's default method decides; the others are reported beside it
METHODS = ("entropy", "minmax", "percentile")
ALL_TEST_IMAGES = 10**9  # parity compares min(N, the test split)
NICE = 10  # as the campaign's runs: the check may run beside them


def _command(module, *args):
    return [sys.executable, "-m", f"cosinegate.cli.{module}", *map(str, args)]


def _run(name, command, work, log, report=None):
    """Run one step; parity's exit 1 (a failed comparison) counts when it wrote its report."""
    log(f"winner check: {name} ...")
    proc = subprocess.run(command, env=child_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"), capture_output=True, text=True,
                          preexec_fn=at_niceness(NICE))
    if proc.returncode != 0 and not (proc.returncode == 1 and report is not None and report.is_file()):
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise CosineGateError(f"winner check: {name} failed (exit {proc.returncode}): {tail[0]}")
    return " ".join(["python -m", *command[2:]]).replace(str(work), "WORK")


def int8_row(method, report):
    return {"method": method, "top1_fp32": report["top1_fp32"], "top1_int8": report["top1_int8"],
            "top1_drop_pp": report["top1_drop_pp"], "gate_agreement_min": report["gate_agreement_min"],
            "gate_agreement": report["gate_agreement"]}


def dynamic_agreement(blocks, per_block):
    """(agreement over the dynamic blocks' decisions, the worst dynamic block): the other blocks are fixed by the
    policy in both graphs and always agree."""
    dynamic = [i for i, kind in enumerate(blocks) if kind == "dynamic"]
    if not dynamic:
        return 1.0, None
    return sum(per_block[i] for i in dynamic) / len(dynamic), min(dynamic, key=lambda i: per_block[i])


def verdict(parity, int8):
    """(met, why) from the parity report's fields and the verdict method's INT8 row."""
    fails = []
    if not parity["passed"]:
        fails.append("parity failed")
    if round(int8["top1_drop_pp"], 6) > MAX_DROP_PP:  # 50 of 10,000 images is 0.5 pp, not 0.50000000001
        fails.append(f"INT8 loses {int8['top1_drop_pp']:.2f} pp (> {MAX_DROP_PP})")
    if int8["gate_agreement_min"] < MIN_GATE_AGREEMENT:
        fails.append(f"INT8 gate agreement {int8['gate_agreement_min'] * 100:.2f}% in its worst block (< {MIN_GATE_AGREEMENT * 100:.1f}%)")
    return not fails, "; ".join(fails)


def check(checkpoint, test_images=None, calib_images=512, methods=METHODS, log=print):
    """Export, parity and the INT8 comparison of `checkpoint` (test_images: the first N only, for a quick look)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CosineGateError(f"{checkpoint} does not exist; finish the run first.")
    limit = [] if test_images is None else ["--test-images", test_images]
    with tempfile.TemporaryDirectory(prefix="winner-check-") as tmp:
        work = Path(tmp)
        commands = {
            "export": _run("export (--policy auto)", _command("export_onnx", "--checkpoint", checkpoint, "--out", work / "model.onnx",
                                                               "--policy", "auto", "--json", work / "export.json"), work, log),
            "parity": _run("parity on ONNX Runtime", _command("parity", "--checkpoint", checkpoint, "--onnx", work / "model.onnx",
                                                              "--test-images", test_images or ALL_TEST_IMAGES, "--json", work / "parity.json"),
                           work, log, report=work / "parity.json"),
            "int8": _run("INT8 Q/DQ on ONNX Runtime", _command("evaluate_int8", "--checkpoint", checkpoint, "--policy", "auto",
                                                               "--methods", ",".join(methods), "--calib-images", calib_images,
                                                               *limit, "--json", work / "int8.json"), work, log),
        }
        export, parity, int8 = (read_json(work / f"{n}.json", f"{n} report") for n in ("export", "parity", "int8"))
    rows = {m: int8_row(m, int8["methods"][m]) for m in methods}
    met, why = verdict(parity, rows[VERDICT_METHOD])
    return {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint), "met": met, "why": why,
            "export": {"policy": export["policy"], "num_if": export["num_if"],
                       "blocks": [b["kind"] for b in export["blocks"]]},
            "parity": {k: parity[k] for k in ("passed", "summary", "num_samples", "top1_agreement", "gate_agreement", "max_abs_err",
                                              "static_policy_disagreement")},
            "int8": {"verdict_method": VERDICT_METHOD, "test_images": int8["num_images"],
                     "calibration_images": int8["calibration_images"], "methods": rows},
            "goal": {"max_drop_pp": MAX_DROP_PP, "min_gate_agreement_per_block": MIN_GATE_AGREEMENT},
            "commands": commands}


def status(record, run_name, checkpoint):
    """The goal's line for the campaign report: the record's verdict when it is of `checkpoint`, else what to run."""
    if record is None:
        return f"open: run `cosinegate cpu-campaign --check-winner` (leader now: {run_name})"
    if not Path(checkpoint).is_file() or record["checkpoint_sha256"] != sha256_file(checkpoint):
        return f"open: the last check was of {record['checkpoint']}; the leader is now {run_name}: rerun --check-winner"
    row = record["int8"]["methods"][record["int8"]["verdict_method"]]
    parity = record["parity"]
    overall, worst = dynamic_agreement(record["export"]["blocks"], row["gate_agreement"])
    return (f"{'met' if record['met'] else 'not met'}: {run_name}, {record['export']['num_if']} If; parity "
            f"{'passed' if parity['passed'] else 'FAILED'} on {parity['num_samples']} images (gate agreement "
            f"{parity['gate_agreement'] * 100:.2f}%); INT8 ({row['method']}) on {record['int8']['test_images']} images loses "
            f"{row['top1_drop_pp']:.2f} pp, gate agreement {overall * 100:.2f}% over the dynamic blocks' decisions and "
            f"{row['gate_agreement_min'] * 100:.2f}% in the worst (block {worst}; the verdict asks "
            f"{MIN_GATE_AGREEMENT * 100:.1f}% in every block)")
