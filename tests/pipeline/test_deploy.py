"""The pipeline as a library: deploy, bench and parity called with settings objects of plain values (no argparse),
and the manifest records (schema version, one-line refusal of an unknown one)."""

import json
from pathlib import Path

import pytest

from cosinegate.errors import CosineGateError
from cosinegate.manifests import BundleManifest, EngineManifest, StageRecord
from cosinegate.trt import build as trt_build
from cosinegate.trt.targets import HostInfo


def test_deploy_writes_a_bundle_from_a_settings_object(tiny_checkpoint, tmp_path, monkeypatch):
    import shutil

    from cosinegate.pipeline.deploy import deploy
    from cosinegate.pipeline.plan import DeploySettings
    from cosinegate.trt.manifest import verify_bundle

    monkeypatch.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    monkeypatch.chdir(tmp_path)  # nothing may land in the current folder: the outputs go beside the run
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, run / "best.pt")
    lines = []
    result = deploy(DeploySettings("jetson-orin", checkpoint=str(run / "best.pt"), select="conditional", clean_work=True),
                    log=lines.append)
    assert result.passed and result.engine is None
    out = run / "engines" / "jetson-orin"  # RUN/engines/<target>, not engines/<target> in the current folder
    assert result.bundle.parent == out and result.bundle.name.endswith("-conditional-fp16-bundle")
    assert not (tmp_path / "engines").exists()
    assert result.archive.is_file() and isinstance(result.manifest, BundleManifest)
    assert verify_bundle(result.bundle) == result.manifest and result.manifest.precision == "fp16"
    assert any("wrote the device bundle" in line for line in lines)
    assert any(line.startswith(f"output: {out} (beside the checkpoint") for line in lines), lines
    assert not (out / ".work").exists()  # --clean-work: the work cache went after the bundle was written
    assert any("--clean-work" in line and "freed" in line for line in lines), lines
    # the board half: on a desktop without TensorRT, --bundle verifies; on an Orin whose Python cannot import
    # tensorrt (a venv without JetPack's bindings: a new user's finding) it is an error, not a silent exit 0
    assert deploy(DeploySettings("jetson-orin", bundle=str(result.bundle)), log=lines.append).engine is None
    monkeypatch.setattr(trt_build, "detect_host", lambda: HostInfo("aarch64", "8.7", None))
    with pytest.raises(CosineGateError, match="jetson-orin board \\(sm8.7\\), but this Python cannot import tensorrt"):
        deploy(DeploySettings("jetson-orin", bundle=str(result.bundle)), log=lines.append)


def test_output_folder_defaults(tmp_path):
    from cosinegate.pipeline.plan import DeploySettings, output_folder

    run = tmp_path / "run"
    assert output_folder(DeploySettings("t", checkpoint=str(run / "best.pt")), "t")[0] == run / "engines" / "t"
    assert output_folder(DeploySettings("t", checkpoint=str(run / "best.pt"), out="o"), "t") == (Path("o"), "--out")
    for settings, source in ((DeploySettings("t", onnx=str(run / "m.onnx")), "--onnx"), (DeploySettings("t"), "default model")):
        out, why = output_folder(settings, "t")
        assert out == Path("engines") / "t" and "current folder" in why and source in why


def test_deploy_settings_are_checked_before_any_work(tmp_path):
    from cosinegate.pipeline.deploy import deploy
    from cosinegate.pipeline.plan import DeploySettings

    with pytest.raises(CosineGateError, match="takes --batch 1"):
        deploy(DeploySettings("jetson-orin", checkpoint="absent.pt", batch=4, out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_a_failed_deploy_leaves_no_folder_it_made(tmp_path, monkeypatch):
    from cosinegate.pipeline.deploy import deploy
    from cosinegate.pipeline.plan import DeploySettings

    monkeypatch.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    with pytest.raises(CosineGateError):
        deploy(DeploySettings("jetson-orin", checkpoint=str(notes), out=str(tmp_path / "a" / "b" / "engines")),
               log=lambda line: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # neither engines/ nor the parents a/ and a/b/


def test_compact_is_refused_for_a_target_whose_tensorrt_cannot_parse_it(tmp_path):
    from cosinegate.pipeline.deploy import deploy
    from cosinegate.pipeline.plan import DeploySettings
    from cosinegate.trt.targets import DEFAULT_TARGETS_DIR

    text = (DEFAULT_TARGETS_DIR / "jetson-xavier-nx.toml").read_text()
    (tmp_path / "old-board.toml").write_text(text.replace('name = "jetson-xavier-nx"', 'name = "old-board"')
                                             .replace('version = "8.5.2"', 'version = "8.4.1"'))
    settings = DeploySettings(str(tmp_path / "old-board"), checkpoint="absent.pt", form="compact", batch=8,
                              out=str(tmp_path / "o"))
    with pytest.raises(CosineGateError, match="old-board: TensorRT 8.4.1's ONNX parser has no importer for NonZero") as info:
        deploy(settings)
    assert "\n" not in str(info.value) and "--form masked" in str(info.value)
    assert not (tmp_path / "o").exists()


def test_bench_and_parity_from_settings_objects(tiny_checkpoint, fake_cifar_root, tmp_path):
    from cosinegate.onnx import export_checkpoint
    from cosinegate.pipeline.bench import BenchSettings, bench
    from cosinegate.pipeline.parity_check import ParitySettings, check_parity

    graph = tmp_path / "c.onnx"
    export_checkpoint(tiny_checkpoint, graph, "conditional")
    result = bench(BenchSettings(onnx=str(graph), data_root=str(fake_cifar_root), warmup=1, iterations=3, test_images=8,
                                 json=str(tmp_path / "r.json")))
    assert not result.if_cost and result.report["latency_ms"]["count"] == 3 and "skip_rate" in result.report
    assert json.loads((tmp_path / "r.json").read_text())["backend"] == "onnxrt"
    report = check_parity(ParitySettings(str(tiny_checkpoint), str(graph), test_images=16), log=lambda line: None)
    assert report["passed"] and report["num_samples"] == 16


RECORDS = [(StageRecord, {"inputs": {"stage": "export"}, "sha256": "ab"}),
           (BundleManifest, {"model": "tiny", "files": {"a.onnx": "cd"}}),
           (EngineManifest, {"trt_version": "10.3.0", "compute_capability": "8.7"})]


@pytest.mark.parametrize("record, values", RECORDS)
def test_records_round_trip_and_refuse_an_unknown_schema_version(record, values):
    data = record(**values).to_json()
    assert data["format"] == record.FORMAT and data["schema_version"] == 1
    assert record.from_json(json.loads(json.dumps(data)), "r.json") == record(**values)
    old = {k: v for k, v in data.items() if k != "schema_version"}  # written before the field: version 1
    assert record.from_json(old, "r.json") == record(**values)
    with pytest.raises(CosineGateError) as info:
        record.from_json({**data, "schema_version": 2}, "r.json")
    assert "r.json has schema version 2, this toolkit reads version 1" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CosineGateError, match=f"r.json is not a CosineGate {record.WHAT}"):
        record.from_json({**data, "format": "something-else"}, "r.json")


def test_readers_refuse_files_of_an_unknown_schema_version(tmp_path):
    from cosinegate.pipeline.stages import record_stage, reusable
    from cosinegate.trt.manifest import check_engine_manifest, verify_bundle, write_engine_manifest

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    write_engine_manifest(engine, EngineManifest(trt_version="10.3.0", compute_capability="8.7"))
    assert check_engine_manifest(engine, "10.3.0", "8.7").engine_sha256
    path = tmp_path / "m.engine.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 7}))
    with pytest.raises(CosineGateError, match="schema version 7, this toolkit reads version 1; rebuild the engine"):
        check_engine_manifest(engine, "10.3.0", "8.7")
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({**BundleManifest().to_json(), "schema_version": 3}))
    with pytest.raises(CosineGateError, match="schema version 3, this toolkit reads version 1; re-create the bundle"):
        verify_bundle(bundle)
    artifact = tmp_path / "a.onnx"
    artifact.write_bytes(b"graph")
    record_stage(artifact, {"stage": "export"})
    assert reusable(artifact, {"stage": "export"})
    record = tmp_path / "a.onnx.stage.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "schema_version": 2}))
    assert not reusable(artifact, {"stage": "export"})  # a record of another schema: the stage is made again


def test_a_profile_that_uses_dla_names_core_0_for_every_stage(tmp_path, tiny_checkpoint, monkeypatch):
    """use_dla = true: the settings carry core 0 from the start (the bundle's engine manifest and trtexec's timing line
    named no core while its build line used core 0), and fp32 is refused as with --dla-core."""
    from cosinegate.pipeline.plan import DeploySettings, resolve
    from cosinegate.trt.targets import DEFAULT_TARGETS_DIR as PROFILE_DIR

    monkeypatch.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    text = (PROFILE_DIR / "jetson-orin.toml").read_text()
    assert "use_dla = false" in text and 'name = "jetson-orin"' in text
    profile = tmp_path / "dla-orin.toml"
    profile.write_text(text.replace("use_dla = false", "use_dla = true").replace('name = "jetson-orin"', 'name = "dla-orin"'))
    settings, _ = resolve(DeploySettings(str(profile), checkpoint=str(tiny_checkpoint), precision="fp16",
                                         out=str(tmp_path / "o")), log=lambda line: None)
    assert settings.dla_core == 0
    with pytest.raises(CosineGateError, match="DLA runs fp16 or int8 only"):
        resolve(DeploySettings(str(profile), checkpoint=str(tiny_checkpoint), precision="fp32", out=str(tmp_path / "o")),
                log=lambda line: None)
