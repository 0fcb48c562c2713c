"""A failed INT8 preview (issue 25, item 4): a warning on stderr recorded in the manifest, measured advice (every
calibration method tried on the same images, the command of the best that passes), and with --require-int8-pass
exit 1 and no bundle."""

import json
import shutil
import subprocess

import pytest

import cosinegate.cli.build_engine as build_engine

from cosinegate.errors import CosineGateError
from cosinegate.pipeline.calibration import CalibrationSettings, calibrate_checkpoint
from cosinegate.pipeline.int8_check import advice_lines
from cosinegate.trt import build as trt_build
from cosinegate.trt.targets import HostInfo


@pytest.fixture(scope="module")
def run(dyn_checkpoint, tmp_path_factory):
    """RUN/best.pt with an entropy calibration in RUN/int8 (calibrate's default folder)."""
    run = tmp_path_factory.mktemp("int8check") / "run"
    run.mkdir()
    shutil.copy2(dyn_checkpoint, run / "best.pt")
    calibrate_checkpoint(CalibrationSettings(checkpoint=str(run / "best.pt"), calib_images=20, method="entropy"))
    return run


@pytest.fixture
def only_minmax_passes(monkeypatch):
    """The preview passes for the minmax trial's graph only (the bundle's own graph, entropy, fails)."""
    import cosinegate.pipeline.int8_check as int8_check

    seen = []

    def preview(graph, inputs, reference):
        seen.append(str(graph))
        ok = "minmax" in str(graph)
        return {"passed": ok, "top1_agreement": 0.99 if ok else 0.5, "gate_agreement": 1.0 if ok else 0.9, "num_samples": 4}

    monkeypatch.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    monkeypatch.setattr(int8_check, "qdq_preview", preview)
    return seen


def int8_args(run, out, *extra):
    return ["--target", "jetson-orin", "--checkpoint", str(run / "best.pt"), "--precision", "int8", "--out", str(out), *extra]


def test_require_int8_pass_exits_1_and_writes_no_bundle(run, tmp_path, only_minmax_passes, capsys):
    out = tmp_path / "engines"
    assert build_engine.main(int8_args(run, out, "--require-int8-pass")) == 1
    assert not list(tmp_path.rglob("*bundle*"))  # neither folder nor archive
    err = capsys.readouterr().err
    assert "warning: the bundle's INT8 check fails here already" in err
    assert "--require-int8-pass: the INT8 preview failed (top-1 agreement 0.5000" in err and "no bundle written" in err
    table = err[err.index("method "):]
    assert "entropy (this build)" in table and "minmax" in table and "<- best" in table and "percentile 99.99" in table
    assert f"cosinegate calibrate --checkpoint {run / 'best.pt'} --method minmax --calib-images 20 --seed 0 " \
           f"--forms flat,conditional --out {run / 'int8'}" in err
    assert len(only_minmax_passes) == 4  # the bundle's graph, then minmax, percentile 99.99 and 99.999 (not entropy again)


def test_a_failed_preview_is_a_warning_on_stderr_recorded_in_the_manifest(run, tmp_path, only_minmax_passes, capsys):
    report = tmp_path / "bundle.json"
    assert build_engine.main(int8_args(run, tmp_path / "engines", "--json", str(report))) == 0
    printed = capsys.readouterr()
    assert "INT8 check fails here already" in printed.err and "INT8 check fails" not in printed.out
    assert "INT8 advice: 1/3 minmax" in printed.out  # its step lines: the command's log (hidden by --quiet)
    preview = json.loads(report.read_text())["int8_preview_onnxrt"]
    assert preview["passed"] is False and preview["advice"]["best"] == "minmax"
    assert [r["passed"] for r in preview["advice"]["rows"]] == [False, True, False, False]
    assert (tmp_path / "engines" / "run-conditional-int8-bundle" / "manifest.json").is_file()
    # the board user sees it too: build-engine's last line, the README's banner, the script's first message
    failed = ("INT8 preview FAILED on ONNX Runtime (top-1 agreement 0.5000, gate agreement 0.9000 on 4 reference images, "
              f"{preview['graph']}): the engine will most likely fail its INT8 check; rebuild with the advice in "
              "manifest.json (int8_preview_onnxrt.advice: minmax passes there).")
    assert printed.out.rstrip("\n").splitlines()[-1] == failed
    folder = tmp_path / "engines" / "run-conditional-int8-bundle"
    readme = (folder / "README.md").read_text().splitlines()
    assert readme[0].startswith("# ") and readme[2] == f"> **Warning: {failed}**"
    script = (folder / "build_on_device.sh").read_text()
    assert script.index(f"say 'warning: {failed}' >&2") < script.index("sha256sum -c")
    assert subprocess.run(["sh", "-n", str(folder / "build_on_device.sh")]).returncode == 0



def test_quiet_keeps_the_advice_and_drops_its_step_lines(run, tmp_path, only_minmax_passes, capsys):
    assert build_engine.main(int8_args(run, tmp_path / "engines", "--quiet")) == 0
    printed = capsys.readouterr()
    assert "INT8 check fails here already" in printed.err and "<- best" in printed.err  # the warning and its table
    assert "INT8 advice:" not in printed.err + printed.out  # "trying 3 calibration method(s)", "1/3 minmax", ...

def test_a_passed_or_unrun_preview_says_nothing():
    from cosinegate.trt.bundle_readme import preview_failure

    assert preview_failure(None) is None and preview_failure({"passed": None, "error": "RuntimeError"}) is None
    assert preview_failure({"passed": True, "top1_agreement": 1.0, "gate_agreement": 1.0, "num_samples": 4}) is None
    line = preview_failure({"passed": False, "top1_agreement": 0.5, "gate_agreement": 0.9, "num_samples": 4, "graph": "g.onnx",
                            "advice": {"best": None}})
    assert line.startswith("INT8 preview FAILED") and line.endswith("or build fp16 (--precision fp16).")


def test_the_methods_are_measured_for_real(run, dyn_checkpoint):
    """No fake: each method's Q/DQ graph through the real ONNX Runtime preview on the saved reference."""
    from cosinegate.data.choice import DataOrigin, choose_data
    from cosinegate.onnx import DEFAULT_OPSET
    from cosinegate.pipeline.int8_check import measure_methods
    from cosinegate.pipeline.stages import Stages
    from cosinegate.training.checkpoint import load_checkpoint

    data = choose_data(DataOrigin.of_checkpoint(load_checkpoint(run / "best.pt")))
    stages = Stages(run / "work")
    graph = stages.export(run / "best.pt", "conditional", 1, DEFAULT_OPSET)
    reference, inputs, _ = stages.reference(run / "best.pt", graph, data, samples=40)
    advice = measure_methods(run / "best.pt", run / "int8", data, "conditional", inputs, reference, log=lambda line: None)
    assert [r["label"] for r in advice["rows"]] == ["minmax", "percentile 99.99", "percentile 99.999"]
    assert advice["images"] == "the calibration's 20 images"
    for r in advice["rows"]:
        assert 0.0 <= r["top1_agreement"] <= 1.0 and 0.0 <= r["gate_agreement"] <= 1.0
        assert r["passed"] == (r["top1_agreement"] >= 0.97 and r["gate_agreement"] >= 0.995), r
    print(advice_lines(advice))


def test_when_no_method_passes_it_says_so_and_suggests_fp16():
    rows = [{"label": m, "method": m, "percentile": None, "passed": False, "top1_agreement": 0.8, "gate_agreement": 0.9}
            for m in ("entropy (this build)", "minmax")]
    lines = advice_lines({"images": "the calibration's 20 images", "rows": rows, "best": None, "commands": []})
    assert lines[-1].startswith("no calibration method passes on the calibration's 20 images: build fp16 (--precision fp16)")
    # the flag belongs to cosinegate calibrate, not to build-engine, whose output this line is part of
    assert lines[-1].endswith("(cosinegate calibrate --calib-images N, then cosinegate build-engine --calibration DIR)")
    assert not any("<- best" in line for line in lines)


def test_require_int8_pass_is_for_int8_builds(dyn_checkpoint, tmp_path):
    with pytest.raises(CosineGateError, match="--require-int8-pass checks an INT8 build, not fp16"):
        build_engine.main(["--target", "jetson-orin", "--checkpoint", str(dyn_checkpoint), "--require-int8-pass",
                           "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag", ["--calibration", "--calib-cache"])
def test_calibration_flags_are_for_int8_builds(dyn_checkpoint, tmp_path, flag):
    """New-user audit: build-engine --calibration DIR without --precision int8 built fp16 for a minute, the flag
    ignored without a word."""
    given = tmp_path  # --calibration takes a calibration folder, --calib-cache a cache file
    if flag == "--calib-cache":
        given = tmp_path / "calibration.cache"
        given.write_text("TRT-8600-EntropyCalibration2\n")
    with pytest.raises(CosineGateError, match=f"{flag} .* is INT8 calibration, but this build is fp16; add --precision int8"):
        build_engine.main(["--target", "jetson-orin", "--checkpoint", str(dyn_checkpoint), flag, str(given),
                           "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_a_failed_require_names_an_earlier_bundle_left_in_the_folder(run, tmp_path, only_minmax_passes, capsys):
    out = tmp_path / "engines"
    assert build_engine.main(int8_args(run, out)) == 0  # a warning only: the bundle is written
    capsys.readouterr()
    assert build_engine.main(int8_args(run, out, "--require-int8-pass")) == 1
    err = capsys.readouterr().err
    assert "no bundle written" in err and f"The bundle at {out / 'run-conditional-int8-bundle'} is from an earlier build" in err


@pytest.mark.parametrize("form, dla, cached", [("conditional", False, []), ("conditional", True, []),
                                              ("masked", True, ["8.5.2", "8.6.2"])])
def test_the_bundle_carries_the_calibration_files_its_builds_read(run, tmp_path, monkeypatch, form, dla, cached):
    """A stray file in the calibration folder (a note, or a link to anything readable) is not shipped to the board.
    Board walkthrough: a Q/DQ bundle for the GPU also carried the float graph and a calibration cache per release,
    which no build reads: only DLA on TensorRT 8.x (no Q/DQ there) builds the float graph from a cache, and only for
    a form that can use one (the conditional graph's 8.x DLA branches are refused; 10.x builds Q/DQ on DLA)."""
    import cosinegate.pipeline.int8_check as int8_check
    from trtexec_rules import script_builds

    monkeypatch.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    monkeypatch.setattr(int8_check, "qdq_preview", lambda graph, inputs, reference: {"passed": True, "top1_agreement": 1.0,
                                                                                "gate_agreement": 1.0, "num_samples": 4})
    mine = tmp_path / "run"
    shutil.copytree(run, mine)
    (mine / "int8" / "notes.txt").write_text("TOP SECRET")
    assert build_engine.main(int8_args(mine, tmp_path / "engines", "--form", form,
                                       *(["--calibration", str(mine / "int8")] if form == "conditional" else []),
                                       *(["--dla-core", "0"] if dla else []))) == 0
    bundle = tmp_path / "engines" / f"run-{form}-int8{'-dla0' if dla else ''}-bundle"
    shipped = sorted(p.name for p in (bundle / "calibration").iterdir())
    assert shipped == ["calibration.cache", "manifest.json", f"model.qdq.{form}.onnx"][0 if cached else 1:]
    assert sorted(p.name for p in bundle.glob("calibration-trt*.cache")) == [f"calibration-trt{v}.cache" for v in cached]
    assert (bundle / f"model.{form}.onnx").is_file() is bool(cached)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["build_onnx"] == f"calibration/model.qdq.{form}.onnx"
    assert manifest["float_onnx"] == (f"model.{form}.onnx" if cached else None)
    assert sorted(manifest["calibration_caches"] or {}) == cached and bool(manifest["calibrator"]) is bool(cached)
    builds = script_builds((bundle / "build_on_device.sh").read_text())
    assert sorted(builds) == (["10.3.0"] if dla and not cached else ["10.3.0", "8.5.2", "8.6.2"])
    for release, args in builds.items():  # every file a build names is in the bundle
        named = [a.split("=", 1)[1] for a in args if a.startswith(("--onnx=", "--calib="))]
        assert named and all((bundle / rel).is_file() for rel in named), (release, args)
        assert any(a.startswith("--calib=") for a in args) is (release in cached), (release, args)
