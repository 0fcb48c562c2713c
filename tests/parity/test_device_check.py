"""The bundle's check_parity.py (parity/device_check.py) on files from others: the profile and inputs.npz it reads are
checked, a bad one is one line and exit status 2 (1 means parity FAILED), and nothing is allocated before the check."""

import base64
import io
import json
import zipfile

import numpy as np
import pytest
from polygraphy.comparator import RunResults
from polygraphy.comparator.struct import IterationResult

from cosinegate.parity import device_check
from cosinegate.pipeline.stages import parity_profile


def test_built_in_profiles_are_the_toolkits():
    assert device_check.PROFILES == {p: parity_profile(p) for p in ("fp32", "fp16", "int8")}


def save_outputs(path):
    """A Polygraphy RunResults JSON of 8 images at ``path``; compared with itself, every bound holds."""
    rng = np.random.default_rng(0)
    run = {"logits": rng.normal(size=(8, 10)).astype(np.float32), "gates": rng.integers(0, 2, (8, 9)).astype(np.float32)}
    RunResults([("runner", [IterationResult(run, runner_name="runner")])]).save(str(path))
    return path


@pytest.fixture()
def outputs(tmp_path):
    return save_outputs(tmp_path / "outputs.json")


def check_with(outputs, profile_text, capsys):
    """(exit status, stderr) of check_parity.py judging ``outputs`` against themselves under a profile file's text."""
    profile = outputs.with_name("parity_profile.json")
    profile.write_text(profile_text)
    try:
        code = device_check.main([str(outputs), "--reference", str(outputs), "--profile", str(profile)])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_the_bundles_profile_and_a_stricter_one_pass(outputs, capsys, precision):
    profile = parity_profile(precision)
    assert check_with(outputs, json.dumps(profile), capsys) == (0, "")
    stricter = dict(profile, logits_atol=1e-6, logits_rtol=None, min_top1_agreement=1, min_gate_agreement=1.0)
    assert check_with(outputs, json.dumps(stricter), capsys) == (0, "")


FP16 = {"profile": "fp16", "logits_atol": 0.05, "logits_rtol": 0.05, "min_top1_agreement": 0.99, "min_gate_agreement": 0.995}
BAD_PROFILES = {
    "not JSON": ("garbage{", "is not readable JSON"),
    "a list": ("[1, 2]", "is not a JSON object"),
    "nested deeply": ("[" * 50000, "is not readable JSON (RecursionError"),
    "too long": (" " * 70000 + "{}", "over 65536 bytes"),
    "no thresholds": ('{"profile": "fp16"}', "has min_top1_agreement None"),
    "an unknown profile": (json.dumps(dict(FP16, profile="fp8")), "has profile 'fp8', not one of fp32, fp16, int8"),
    "a listed profile": (json.dumps(dict(FP16, profile=["fp16"])), "has profile ['fp16'], not one of"),
    "a string atol": (json.dumps(dict(FP16, logits_atol="x")), "has logits_atol 'x'"),
    "minus infinity": (json.dumps(dict(FP16, logits_atol=None, min_top1_agreement=-1e999, min_gate_agreement=-1e999)),
                       "has min_top1_agreement -inf"),
    "a boolean": (json.dumps(dict(FP16, min_gate_agreement=True)), "has min_gate_agreement True"),
    "over 1": (json.dumps(dict(FP16, min_top1_agreement=1.5)), "has min_top1_agreement 1.5"),
    "an infinite atol": (json.dumps(dict(FP16, profile="int8", logits_atol=1e999)), "has logits_atol inf"),
    "a 400-digit atol": (json.dumps(dict(FP16, profile="int8", logits_atol=10**400)), "has logits_atol 1000"),
    "no logit bound": (json.dumps(dict(FP16, logits_atol=None)), "is looser than the fp16 profile in logits_atol, logits_rtol"),
    "a wider rtol": (json.dumps(dict(FP16, profile="fp32", logits_atol=1e-4, min_top1_agreement=1, min_gate_agreement=1)),
                     "is looser than the fp32 profile in logits_rtol (logits_rtol 0.001)"),
    "a lower top-1 minimum": (json.dumps(dict(FP16, profile="int8", min_top1_agreement=0.5)),
                              "is looser than the int8 profile in min_top1_agreement (min_top1_agreement 0.97)"),
}


@pytest.mark.parametrize("case", BAD_PROFILES)
def test_a_bad_or_looser_profile_is_one_line_and_exit_2(outputs, capsys, case):
    text, message = BAD_PROFILES[case]
    code, err = check_with(outputs, text, capsys)
    assert code == 2 and err.startswith("error: parity profile ") and message in err, err
    assert len(err.splitlines()) == 1 and len(err) < 400, err


def test_a_profile_that_is_a_fifo_is_refused_without_blocking(outputs, capsys):
    import os

    fifo = outputs.with_name("fifo.json")
    os.mkfifo(fifo)
    with pytest.raises(SystemExit) as exc:
        device_check.main([str(outputs), "--reference", str(outputs), "--profile", str(fifo)])
    assert exc.value.code == 2 and "not a regular file" in capsys.readouterr().err


# ---- inputs.npz ------------------------------------------------------------------------------------------------------


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy_header_only(shape, descr="|u1"):
    """A .npy header declaring ``shape`` and no data after it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def write_npz(path, images, compression=zipfile.ZIP_STORED, **replace):
    """An inputs.npz of these ``images`` member bytes (and mean, std, batch, each replaceable by its bytes)."""
    members = {"images.npy": images, "mean.npy": npy(np.float32([0.5] * 3)), "std.npy": npy(np.float32([0.25] * 3)),
               "batch.npy": npy(np.asarray(1, np.int64))}
    members.update({f"{k}.npy": v for k, v in replace.items()})
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_inputs_npz_of_the_toolkit_still_loads(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    device_check.save_inputs(tmp_path / "inputs.npz", images, [0.5] * 3, [0.25] * 3, 2)
    got, _, _, batch = device_check.read_inputs(tmp_path / "inputs.npz")
    assert np.array_equal(got, images) and batch == 2
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, images=images, mean=np.float32([0.5] * 3), std=np.float32([0.25] * 3), batch=np.int64(1))
    assert len(device_check.load_inputs(compressed)) == 4


BAD_INPUTS = {
    "a header of 28.6 TiB": (lambda p: write_npz(p, npy_header_only((10**7, 1024, 1024, 3))), "holds 0 bytes of data"),
    "a deflated bomb": (lambda p: write_npz(p, npy(np.zeros((2000, 32, 32, 3), np.uint8)), zipfile.ZIP_DEFLATED),
                        "over 100:1"),
    "over the image count": (lambda p: write_npz(p, npy(np.zeros((100001, 1, 1, 3), np.uint8))), "100001 images, over 100000"),
    "a huge mean": (lambda p: write_npz(p, npy(np.zeros((1, 8, 8, 3), np.uint8)), mean=npy_header_only((10**12,), "<f4")),
                    "mean.npy declares"),
    "float images": (lambda p: write_npz(p, npy(np.zeros((1, 8, 8, 3), np.float32))), "not uint8 N x H x W x 3"),
    "a pickle": (lambda p: write_npz(p, npy(np.zeros((1, 8, 8, 3), np.uint8)), batch=npy(np.array([None]))),
                 "holds Python objects"),
    "another member": (lambda p: write_npz(p, npy(np.zeros((1, 8, 8, 3), np.uint8)), extra=b""), "holds ['batch.npy'"),
    "not a zip": (lambda p: write_bytes(p, b"PK\x03\x04 cut off"), "not a readable .npz (BadZipFile)"),
}


def write_bytes(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_inputs_npz_is_checked_before_anything_is_allocated(tmp_path, case):
    make, message = BAD_INPUTS[case]
    path = make(tmp_path / "inputs.npz")
    with pytest.raises(ValueError, match="^[^\n]*$") as exc:
        device_check.read_inputs(path)
    assert message in str(exc.value)


def test_the_data_loader_refuses_a_bomb_in_one_line(tmp_path, monkeypatch, capsys):
    write_npz(tmp_path / "inputs.npz", npy_header_only((10**7, 1024, 1024, 3)))
    monkeypatch.setattr(device_check, "HERE", tmp_path)
    with pytest.raises(SystemExit) as exc:
        device_check.load_data()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith(f"error: {tmp_path / 'inputs.npz'} is not the bundle's reference inputs")
    assert len(err.splitlines()) == 1


def test_numpys_own_multi_line_refusal_stays_one_line(tmp_path, monkeypatch, capsys):
    # a legal .npy 1.0 header of ~20 KB: numpy (1.23 too) refuses it in a three-line ValueError
    buffer = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": (1, 8, 8, 3), "pad": " " * 20000}
    np.lib.format.write_array_header_1_0(buffer, header)
    write_npz(tmp_path / "inputs.npz", buffer.getvalue() + bytes(192))
    monkeypatch.setattr(device_check, "HERE", tmp_path)
    with pytest.raises(SystemExit) as exc:
        device_check.load_data()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "is not the bundle's reference inputs" in err


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_flipped_gate_decisions_alone_fail_every_profile_and_name_the_block(precision):
    """Logits untouched, 20 of block 2's 400 decisions flipped (99.44% of all 3,600 agree, under every profile's
    minimum): the board's verdict fails on the gates alone, under each profile the bundle can carry."""
    rng = np.random.default_rng(1)
    reference = {"logits": rng.normal(size=(400, 10)), "gates": rng.integers(0, 2, (400, 9)).astype(np.float32)}
    flipped = {"logits": reference["logits"].copy(), "gates": reference["gates"].copy()}
    flipped["gates"][:20, 2] = 1 - flipped["gates"][:20, 2]
    profile = device_check.PROFILES[precision]
    assert 1 - 20 / 3600 < profile["min_gate_agreement"]
    assert device_check.check(reference, reference, profile)["passed"]
    report = device_check.check(reference, flipped, profile)
    assert not report["passed"] and report["flipped_blocks"] == ["block2"]
    assert report["logits_within_tolerance"] and report["top1_agreement"] == 1.0


@pytest.mark.parametrize("shape, message", [((0, 10), "the reference holds no samples (logits [0, 10], gates [0, 9])"),
                                            ((4, 10), "outputs [4, 10]/[4, 9] do not match the reference [8, 10]/[8, 9]")])
def test_outputs_of_other_shapes_are_one_line_and_exit_2(tmp_path, capsys, shape, message):
    """Outputs of other images (or none) are a bad file, not a parity failure: one line, exit status 2."""
    reference = save_outputs(tmp_path / "reference.json")
    run = {"logits": np.zeros(shape, np.float32), "gates": np.zeros((shape[0], 9), np.float32)}
    other = tmp_path / "outputs.json"
    RunResults([("runner", [IterationResult(run, runner_name="runner")])]).save(str(other))
    profile = tmp_path / "parity_profile.json"
    profile.write_text(json.dumps(parity_profile("int8")))
    first, second = (other, reference) if shape[0] == 0 else (reference, other)  # the reference is the empty one
    code = device_check.main([str(second), "--reference", str(first), "--profile", str(profile)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def _npz_payload(inflated):
    """A base64 .npz holding one deflated float32 .npy of ``inflated`` bytes of zeros (Polygraphy's older form)."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (inflated // 40, 10)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("logits.npy", head.getvalue() + bytes(inflated // 40 * 40))
    return base64.b64encode(buf.getvalue()).decode()


def _short_npy_payload():
    """A base64 .npy whose header declares 2**40 floats but holds none."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (1 << 36, 16)})
    return base64.b64encode(head.getvalue()).decode()


@pytest.mark.parametrize("payload, message", [
    (_npz_payload(1 << 20), "an array is not a .npy (its first bytes are b'PK"),  # an .npz is a zip
    (_short_npy_payload(), "declares float32 [68719476736, 16] but holds 0 bytes"),
    ("bm90IGFuIGFycmF5", "an array is not a .npy (its first bytes are b'not an a"),
    (7, "without a base64 'array' payload"),
])
def test_outputs_arrays_are_checked_before_polygraphy_decodes_them(tmp_path, capsys, payload, message):
    """Attacker review: Polygraphy still decodes .npz payloads, so 1.5 MB of reference.json inflated to over 10 GiB;
    a .npy header may declare far more than it holds. Each is one line and exit status 2, before any decoding."""
    outputs = save_outputs(tmp_path / "outputs.json")
    document = json.loads(outputs.read_text())
    document["lst"][0][1][0]["outputs"]["logits"]["values"]["array"] = payload
    outputs.write_text(json.dumps(document))
    code, err = check_with(outputs, json.dumps(parity_profile("fp32")), capsys)
    assert code == 2 and err.count("\n") == 1 and "holds no Polygraphy outputs" in err and message in err, err


def _good_npy_payload():
    buf = io.BytesIO()
    np.save(buf, np.zeros((8, 10), np.float32))
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("values, message", [
    ({"__polygraphy_encoded_ndarray": "polygraphy_serialized_json_type", "array": _npz_payload(1 << 20)},
     "Polygraphy's older encoding"),
    ({"polygraphy_class": "ndarray", "array": _good_npy_payload(),
      "inner": {"polygraphy_class": "ndarray", "array": _npz_payload(1 << 20)}}, "an array is not a .npy"),
    ({"polygraphy_class": "Tensor", "tensor": "AAAA"}, "an object of class Tensor"),
])
def test_polygraphys_other_encodings_are_refused_too(tmp_path, capsys, values, message):
    """Diff review: the older marker form and an array nested inside a checked one still reached np.load's .npz
    path; a Tensor goes to torch.load where torch is installed."""
    outputs = save_outputs(tmp_path / "outputs.json")
    document = json.loads(outputs.read_text())
    document["lst"][0][1][0]["outputs"]["logits"]["values"] = values
    outputs.write_text(json.dumps(document))
    code, err = check_with(outputs, json.dumps(parity_profile("fp32")), capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_an_outputs_file_over_the_cap_is_refused_unread(outputs, capsys, monkeypatch):
    monkeypatch.setattr(device_check, "MAX_OUTPUTS_BYTES", outputs.stat().st_size - 1)
    code, err = check_with(outputs, json.dumps(parity_profile("fp32")), capsys)
    assert code == 2 and err.count("\n") == 1 and "bytes, over the" in err, err


def test_json_report_is_not_written_through_a_planted_link(outputs, capsys, tmp_path):
    """Attacker review: --json wrote through a symlink to a file outside; now it is refused, and a plain file is
    replaced by rename."""
    precious = tmp_path / "precious.txt"
    precious.write_text("keep\n")
    link = tmp_path / "report.json"
    link.symlink_to(precious)
    profile = outputs.with_name("parity_profile.json")
    profile.write_text(json.dumps(parity_profile("fp32")))
    args = [str(outputs), "--reference", str(outputs), "--profile", str(profile), "--json"]
    assert device_check.main(args + [str(link)]) == 2
    assert precious.read_text() == "keep\n" and "is a link or not a regular file" in capsys.readouterr().err
    plain = tmp_path / "plain.json"
    plain.write_text("old")
    assert device_check.main(args + [str(plain)]) == 0 and json.loads(plain.read_text())["passed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs.json", "parity_profile.json", "plain.json",
                                                          "precious.txt", "report.json"]


@pytest.mark.parametrize("missing", ["reference", "outputs"])
def test_a_missing_reference_or_outputs_file_says_which_and_how_to_pass_it(outputs, capsys, tmp_path, missing):
    """Board walkthrough: `python3 check_parity.py outputs.json` outside the bundle folder (no reference.json beside
    the script) was told to pass the outputs polygraphy wrote, which it had."""
    absent = tmp_path / "absent.json"
    args = [str(absent if missing == "outputs" else outputs), "--reference", str(absent if missing == "reference" else outputs)]
    with pytest.raises(SystemExit) as exit_:
        device_check.main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    expected = (f"error: reference {absent} not found; pass --reference REF.json" if missing == "reference"
                else f"error: {absent} not found; pass the outputs polygraphy run ... --save-outputs wrote")
    assert err.startswith(expected), err


def test_a_check_that_breaks_is_exit_2_not_the_verdict_failed(outputs, capsys, monkeypatch):
    """Diff review: an exception other than ValueError inside the check exited 1, which build_on_device.sh reads as
    "outputs outside the profile"."""
    def broken(reference, outputs, profile):
        raise KeyError("gates")

    monkeypatch.setattr(device_check, "check", broken)
    code, err = check_with(outputs, json.dumps(parity_profile("fp32")), capsys)
    assert code == 2 and err.startswith("error: the outputs could not be judged (KeyError: ") and err.count("\n") == 1, err
