"""What a deploy is asked (DeploySettings), what this host and target allow (Target), what its stages made
(Artifacts), and ``resolve``, which checks the first against the second before any work."""

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from cosinegate.bench.candidates import CANDIDATES
from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import GRAPH_FORMS

FORMS = tuple(form for form in GRAPH_FORMS if form != "flat")  # an engine is built from a graph with gates
SELECTIONS = ("fastest", *CANDIDATES)


@dataclass(frozen=True)
class DeploySettings:
    """A deploy for ``target`` from one of checkpoint, onnx or bundle (none: the default model)."""

    target: str
    checkpoint: Optional[str] = None
    onnx: Optional[str] = None
    bundle: Optional[str] = None  # a bundle folder this pipeline made (on the device)
    precision: Optional[str] = None  # int8 | fp16 | fp32; None: fp16, or int8 when int8_path is given
    int8_path: Optional[str] = None  # qdq | cache; None: the target's
    calib_cache: Optional[str] = None
    calibration: Optional[str] = None  # a calibration output folder
    form: str = "conditional"
    batch: int = 1
    opset: Optional[int] = None  # None: the toolkit's
    dla_core: Optional[int] = None
    workspace: Optional[int] = None  # MiB; None: the target's
    timing_cache: Optional[str] = None
    out: Optional[str] = None  # None: RUN/engines/<target> beside --checkpoint RUN/x.pt, else engines/<target> here
    clean_work: bool = False  # remove the work cache <out>/.work/<model> after a successful run
    require_engine: bool = False
    require_int8_pass: bool = False  # a failed INT8 preview (Q/DQ graph on ONNX Runtime) fails the deploy, no bundle
    select: Optional[str] = None  # one of SELECTIONS; None: fastest where the candidates can be made
    select_images: int = 300
    if_cost_table: Optional[str] = None
    force: bool = False  # replace a bundle of the same name made from another model
    data: Optional[str] = None
    data_root: Optional[str] = None
    image_size: Optional[int] = None


@dataclass(frozen=True)
class Target:
    """The target profile, this host, whether it builds the engine (and why not), the output folder, and with
    --bundle the bundle's manifest, verified (every file's hash checked) before anything of it was read."""

    profile: object
    host: object
    can_build: bool
    why: str
    out: Path
    bundle: object = None


@dataclass
class Artifacts:
    """What the stages made (or a bundle holds) for one engine build."""

    name: str  # the model's plain name, for output files
    onnx: Path  # the graph the engine is built from
    forms: dict = field(default_factory=dict)  # {form: exported graph}
    reference: Optional[Path] = None  # Polygraphy RunResults of PyTorch
    inputs: Optional[Path] = None  # the inputs of the reference
    cache: Optional[Path] = None  # INT8 calibration cache
    calibration: Optional[str] = None  # calibration output folder
    qdq: Optional[Path] = None  # the Q/DQ graph built (--int8 qdq)
    qdq_twin: Optional[Path] = None  # a Q/DQ graph ONNX Runtime runs as a forecast of the INT8 engine
    data: Optional[dict] = None  # record of the data the reference was made on
    data_choice: object = None  # that data (cosinegate.data.choice.DataChoice)
    reference_decisions: Optional[dict] = None
    candidates: dict = field(default_factory=dict)  # {candidate: {"onnx", "reference", "inputs"}}


def resolve(settings, log=print):
    """(settings with every default filled in, Target); raises CosineGateError before any work."""
    from cosinegate.trt.build import check_int8_form, detect_host, dla_releases_that_build
    from cosinegate.trt.precision import check_request
    from cosinegate.trt.targets import check_workspace, compute_capability_text, host_matches

    from cosinegate.trt.manifest import verify_bundle

    s = settings
    bundle = verify_bundle(s.bundle) if s.bundle else None  # before any file of it is read
    profile = target_profile(s.target, s.bundle, bundle, log)
    check_workspace(s.workspace)
    out, where = output_folder(s, profile.name)
    if not (s.checkpoint or s.onnx or s.bundle):
        from cosinegate.defaults import default_checkpoint

        s = replace(s, checkpoint=str(default_checkpoint(log)))
    s = replace(s, precision=resolve_precision(s.precision, s.int8_path))
    # the profile's defaults (DLA core 0 where it uses DLA, its INT8 path), named once for every stage and record
    dla_core, _ = check_request(profile, s.precision, s.int8_path, s.dla_core)
    s = replace(s, dla_core=dla_core, int8_path=s.int8_path or profile.default_int8_path)
    if s.form == "conditional" and s.batch != 1:
        raise CosineGateError("--form conditional takes --batch 1 (an If condition is one scalar); use --form compact for batches.")
    if s.form == "compact":
        from cosinegate.layernames import check_compact_releases

        check_compact_releases([r.version for r in profile.tensorrt], f"target {profile.name}")
    if not s.bundle:
        check_int8_form(s.form, s.precision, s.int8_path)
        dla_releases_that_build(profile, s.form, s.precision, s.int8_path, s.dla_core)
    if not s.bundle and s.precision == "int8" and s.int8_path == "qdq" and s.batch != 1:
        raise CosineGateError(f"--int8 qdq builds the calibrated Q/DQ graph, which has batch 1, not --batch {s.batch}; "
                              "for INT8 at a batch use --form masked --int8 cache, or --batch 1.")
    if s.require_int8_pass and s.precision != "int8":
        raise CosineGateError(f"--require-int8-pass checks an INT8 build, not {s.precision}; drop it or add --precision int8.")
    for flag, value in (("--calibration", s.calibration), ("--calib-cache", s.calib_cache)):
        if value and s.precision != "int8" and not s.bundle:  # it was ignored: an fp16 engine, as if never given
            raise CosineGateError(f"{flag} {value} is INT8 calibration, but this build is {s.precision}; add --precision "
                                  f"int8, or drop {flag}.")
    if s.precision == "int8" and not (s.checkpoint or s.bundle or s.calib_cache or s.calibration):
        raise CosineGateError("INT8 needs calibration data or a cache: pass --checkpoint (calibrates), --calibration DIR or --calib-cache FILE.")
    if s.calib_cache:
        from cosinegate.quant.cache import parse_cache

        parse_cache(Path(s.calib_cache))  # a missing file, then the checks calibrate --cache-in makes: header, scales
    if s.calibration and s.precision == "int8":
        from cosinegate.pipeline.stages import calibration_files

        calibration_files(s.calibration, s.form, s.checkpoint)  # its files and manifest, before any work
    host = detect_host()
    can_build, why = (False, "TensorRT is not installed here") if host.trt_version is None else host_matches(profile, host)
    if s.bundle and host.trt_version is None and profile.arch == "aarch64" and host_matches(profile, host)[0]:
        raise CosineGateError(f"this is a {profile.name} board (sm{compute_capability_text(host.compute_capability)}), "
                              "but this Python cannot import tensorrt, so --bundle cannot build here: use JetPack's "
                              "python3 (sudo apt install python3-libnvinfer), or a venv made with --system-site-packages; "
                              "or run the bundle's sh build_on_device.sh, which needs trtexec only.")
    if s.require_engine and not can_build:
        fix = "run it on the device"
        if host.trt_version is None:  # where TensorRT's Python bindings come from on the target
            fix += (", in JetPack's python3 with TensorRT's bindings (sudo apt install python3-libnvinfer)" if profile.is_jetson
                    else ", with TensorRT's Python bindings installed")
        raise CosineGateError(f"--require-engine: cannot build a {profile.name} engine on this host ({why}); {fix}.")
    if s.onnx and not can_build:  # the bundle written instead needs the PyTorch reference of a checkpoint
        raise CosineGateError(f"--onnx builds an engine only where TensorRT builds for {profile.name} (here: {why}); to make "
                              "the board's bundle pass --checkpoint, whose PyTorch outputs are the bundle's reference.")
    s = replace(s, select=resolve_select(s, log))
    if s.checkpoint:  # said before the output line (the work starts after it)
        from cosinegate.artifacts import check_checkpoint_file

        check_checkpoint_file(s.checkpoint)
    log(f"output: {out} ({where})")
    return s, Target(profile, host, can_build, why, out, bundle)


def target_profile(target, bundle=None, manifest=None, log=print):
    """--target's profile (a name or a file). With --bundle (its verified ``manifest``) and --target naming the bundle's
    own target: the profile the bundle carries, the one it was made for (a local profile by its name included, of which
    the board has no other copy), said where the one --target names differs."""
    from cosinegate.trt.targets import list_targets, load_target

    carried = manifest is not None and f"{manifest.target}.toml" in manifest.files
    if carried and target == manifest.target and target not in list_targets():
        return load_target(target, targets_dir=bundle, allow_path=False)
    profile = load_target(target)
    if not carried or profile.name != manifest.target:  # another target: from_bundle refuses it in one line
        return profile
    made_for = load_target(profile.name, targets_dir=bundle, allow_path=False)
    if replace(made_for, source=profile.source) != profile:
        log(f"bundle {bundle} carries its own {profile.name} profile, which differs from {profile.source}: building "
            "with the bundle's (the one it was made for)")
    return made_for


def output_folder(s, target):
    """(output folder, why there): --out; else beside the checkpoint's run folder (RUN/engines/<target> for
    --checkpoint RUN/best.pt); else, from --onnx, --bundle or the embedded default model, engines/<target> here."""
    if s.out:
        return Path(s.out), "--out"
    if s.checkpoint:
        run = Path(s.checkpoint).parent
        return run / "engines" / target, f"beside the checkpoint, in its run folder {run}; --out DIR to change"
    source = "--onnx" if s.onnx else "--bundle" if s.bundle else "the embedded default model"
    return Path("engines") / target, f"in the current folder, from {source}; --out DIR to change"


def resolve_select(s, log=print):
    """The selection in force: fastest by default where the candidates can be made, else the conditional graph."""
    if s.bundle:  # the bundle's manifest names its candidates; pruned|dense builds one of them
        return s.select if s.select in ("pruned", "dense") else "conditional"
    possible = bool(s.checkpoint) and s.form == "conditional" and s.precision != "int8"
    why = ("it needs --checkpoint" if not s.checkpoint else "it takes --form conditional" if s.form != "conditional"
           else "INT8 candidates would each need their own Q/DQ graph and calibration")
    if s.select is None:
        if not possible and s.checkpoint:
            log(f"selection: building the {s.form} graph only ({why}); --select conditional silences this.")
        return "fastest" if possible else "conditional"
    if s.select != "conditional" and not possible:
        raise CosineGateError(f"--select {s.select} is not available here: {why}; use --select conditional.")
    if s.select_images < 1:
        raise CosineGateError("--select-images must be at least 1.")
    return s.select


def resolve_precision(precision, int8_path):
    """An INT8 path means an INT8 build: it implies precision int8 and contradicts fp16/fp32."""
    if int8_path is not None and precision not in (None, "int8"):
        raise CosineGateError(f"--int8 {int8_path} is an INT8 path but --precision {precision} was asked for; "
                              "drop --int8 or use --precision int8.")
    if precision is None:
        return "int8" if int8_path is not None else "fp16"
    return precision
