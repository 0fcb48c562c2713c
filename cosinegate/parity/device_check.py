"""Parity of a device run against the bundle's PyTorch reference, without PyTorch (the bundle's check_parity.py).

    polygraphy run MODEL --trt [--fp16|--int8] --load-inputs inputs.json --save-outputs outputs.json
    python3 check_parity.py outputs.json

reference.json and parity_profile.json are read from beside this file (or --reference/--profile).
The profile is the precision's: logits within atol/rtol per element (no bound where null), top-1
agreement and gate-decision agreement at least their minimums (1.0 = exact). Prints top-1
agreement, gate agreement, the blocks whose decisions differ and the largest logit error; exit
status 0 when parity holds, 1 when it fails. Needs numpy and Polygraphy only (Python 3.8+).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def load_outputs(path):
    """{"logits", "gates"} stacked over the iterations of the first runner in a Polygraphy RunResults JSON;
    a file that is missing or holds no such outputs ends the check with one line and exit status 2."""
    from polygraphy.comparator import RunResults

    try:
        text = Path(path).read_text()
        if json.loads(text).get("polygraphy_class") != "RunResults":  # before Polygraphy logs its own lines
            raise ValueError("not a RunResults file")
        results = RunResults.from_json(text)
        _, iterations = results[0]
        return {name: np.concatenate([np.asarray(it[name]) for it in iterations]) for name in ("logits", "gates")}
    except Exception as exc:  # a file format boundary: whatever Polygraphy or the layout raise, say which file
        print(f"error: {path} holds no Polygraphy outputs with 'logits' and 'gates' ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); save them with polygraphy run ... --save-outputs "
              "on the bundle's inputs.json.", file=sys.stderr)
        sys.exit(2)


def check(reference, outputs, profile):
    """The parity verdict of stacked outputs against the reference under a profile dict."""
    ref_logits, logits = np.asarray(reference["logits"], np.float64), np.asarray(outputs["logits"], np.float64)
    ref_gates, gates = np.asarray(reference["gates"]) > 0.5, np.asarray(outputs["gates"]) > 0.5
    if ref_logits.shape != logits.shape or ref_gates.shape != gates.shape:
        raise SystemExit(f"error: outputs {logits.shape}/{gates.shape} do not match the reference "
                         f"{ref_logits.shape}/{ref_gates.shape}; run the bundle's graph on its inputs.json.")
    error = np.abs(logits - ref_logits)
    atol, rtol = profile.get("logits_atol"), profile.get("logits_rtol")
    within = True
    if atol is not None:
        within = bool(np.all(error <= atol + (rtol or 0.0) * np.abs(ref_logits)))
    top1 = float((logits.argmax(1) == ref_logits.argmax(1)).mean())
    per_block = (gates == ref_gates).mean(0)
    gate = float((gates == ref_gates).mean())
    passed = within and top1 >= profile["min_top1_agreement"] and gate >= profile["min_gate_agreement"]
    return {"passed": bool(passed), "profile": profile["profile"], "num_samples": int(len(ref_logits)),
            "logits_within_tolerance": within, "max_abs_logit_error": float(error.max()), "top1_agreement": top1,
            "gate_agreement": gate, "flipped_blocks": [f"block{i}" for i, a in enumerate(per_block) if a < 1.0]}


def summary(r, profile):
    verdict = "PASSED" if r["passed"] else "FAILED"
    bound = "none" if profile.get("logits_atol") is None else f"atol {profile['logits_atol']:g} rtol {profile['logits_rtol']:g}"
    flipped = f"; gate decisions differ in {', '.join(r['flipped_blocks'])}" if r["flipped_blocks"] else ""
    return (f"parity {verdict} ({r['profile']}, {r['num_samples']} images): top-1 agreement {r['top1_agreement']:.4f} "
            f"(min {profile['min_top1_agreement']}), gate agreement {r['gate_agreement']:.4f} (min {profile['min_gate_agreement']}), "
            f"max |logits error| {r['max_abs_logit_error']:.3g} (bound: {bound}{', exceeded' if not r['logits_within_tolerance'] else ''})"
            f"{flipped}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", help="Polygraphy RunResults JSON of the device run (polygraphy run --save-outputs)")
    parser.add_argument("--reference", default=str(HERE / "reference.json"))
    parser.add_argument("--profile", default=str(HERE / "parity_profile.json"))
    parser.add_argument("--json", metavar="REPORT", help="write the verdict as JSON here")
    args = parser.parse_args(argv)
    profile = json.loads(Path(args.profile).read_text())
    report = check(load_outputs(args.reference), load_outputs(args.outputs), profile)
    print(summary(report, profile))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
