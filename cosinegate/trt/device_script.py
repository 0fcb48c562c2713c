"""build_on_device.sh: the bundle's POSIX-sh script that builds, checks and times the engine on the board.

What it does, in order (everything it writes goes to ``results/`` beside it):

1. ``sha256sum -c SHA256SUMS`` (refuses a damaged bundle).
2. Finds trtexec: ``$TRTEXEC``, then PATH, then ``/usr/src/tensorrt/bin/trtexec`` (where JetPack puts it).
3. Reads the TensorRT version (trtexec's ``[TensorRT v8502]`` banner, else ``import tensorrt``, else dpkg) and
   picks the branch of that release; each branch is a ``trtexec_command`` line for it (per-release INT8
   decisions and calibration cache, see trtversion.py).
4. Builds with ``--verbose`` into ``results/build.log``, to a temporary name renamed on success.
5. Writes ``<engine>.json``, the engine manifest ``bench.py --engine`` reads.
6. Checks the engine with ``polygraphy run ENGINE --trt --model-type engine --data-loader-script check_parity.py
   --save-outputs`` (the float feeds made with numpy from the uint8 images in inputs.npz) and ``check_parity.py``
   (the precision's profile against reference.json), where Polygraphy is installed.
7. Times it with ``trtexec --loadEngine --loadInputs --useSpinWait --exportTimes/--exportProfile/--exportLayerInfo``.
8. With the selection's other candidates in the bundle (``build_engine.py --select fastest``): builds each
   (pruned, dense), checks it against its own reference, times it the same way, prints one table of median
   latencies (trtexec's ``Latency``) and names the winner by the desktop's rule (cosinegate.bench.candidates.choose:
   among the candidates within its accuracy tolerance whose check did not fail, the simpler graph is kept unless a
   more complex one's median is lower by more than the larger spread of the two; the spread here is the
   interquartile range of trtexec's timed queries, ``--exportTimes``) (``results/candidates.txt``, ``results/winner.txt``).
9. Records ``nvpmodel -q`` and whether ``jetson_clocks`` is on, and prints the one command that copies
   ``results/`` back to the desktop.

Every value written into the script goes through ``sh_word`` (``shlex.quote``; the script's own
variables such as ``$ENGINE`` stay expandable). The embedded manifest writer is a stdlib-only Python 3.8
program fed by a quoted here-document.
"""

import json
import shlex
from dataclasses import dataclass, field

from cosinegate.errors import CosineGateError
from cosinegate.trt.trtexec import trtexec_command, trtexec_timing_command
from cosinegate.trtversion import parse_version

# The script's own variables that may appear inside generated arguments; they are left expandable.
SCRIPT_VARIABLES = ("$ENGINE_TMP", "$ENGINE", "$CAND_TMP", "$CAND_ENGINE", "$CAND_TIMES", "$RESULTS", "$PATTERN_FILE",
                    "$PATTERN_TIMES")


@dataclass
class ScriptPlan:
    """Everything the script needs, decided on the desktop (paths relative to the bundle)."""

    profile: object
    name: str
    form: str
    precision: str
    int8_path: str  # None unless int8
    build_onnx: str  # the graph of the requested path (Q/DQ graph for --int8 qdq)
    float_onnx: str  # the float graph (cache builds)
    caches: dict  # {release version string: cache file} for releases whose branch reads a cache
    calibrator: str  # "entropy2" | "minmax" | None
    fp32_layers: tuple
    workspace_mib: int = None
    dla_core: int = None
    input_bin: str = "input.bin"
    input_name: str = "input"
    reference: str = "reference.json"  # Polygraphy RunResults of the PyTorch side, for the engine check
    reference_inputs: str = "inputs.npz"  # the uint8 reference images; check_parity.py (the data loader) reads it
    manifest_fields: dict = field(default_factory=dict)  # the engine manifest's static part (EngineManifest JSON)
    # the selection's other candidates: {name: {"onnx", "reference", "inputs": bundle paths, "eligible": bool}}
    candidates: dict = field(default_factory=dict)
    timing_patterns: str = None  # conditional form: bundle.PATTERNS (one input per gate pattern of the timing images)
    int8_warning: str = None  # bundle_readme.preview_failure: the INT8 preview failed on the desktop; said first
    graph: str = None  # what the engine is named for: a candidate selected on the desktop (pruned, dense), else the form


def sh_word(text):
    """One shell word for ``text``: shlex-quoted, except the script's own ``$VARIABLES``, kept expandable."""
    text = str(text)
    for variable in SCRIPT_VARIABLES:
        if variable in text:
            before, _, after = text.partition(variable)
            return (sh_word(before) if before else "") + f'"{variable}"' + (sh_word(after) if after else "")
    return shlex.quote(text)


def sh_words(args):
    return " ".join(sh_word(arg) for arg in args)


def release_pattern(version):
    """case pattern of a profile release: "8.5.2" matches 8.5.2 and 8.5.2.x, "10" every 10.x (not 100)."""
    return f"{version}|{version}.*"


def branch(plan, release):
    """(comment, shell lines) of the case branch building for ``release``."""
    version = parse_version(release.version)
    jetpack = f" (JetPack {', '.join(release.jetpack)})" if release.jetpack else ""
    int8_path, onnx_rel, note = plan.int8_path, plan.build_onnx, None
    if plan.precision == "int8" and int8_path == "qdq" and plan.dla_core is not None and version.dla_int8_path == "cache":
        int8_path, onnx_rel = "cache", plan.float_onnx
        note = f"INT8 on DLA with TensorRT {version} comes from the calibration cache (DLA takes no Q/DQ on 8.x)"
    cache = plan.caches.get(str(version)) if plan.precision == "int8" and int8_path == "cache" else None
    try:
        if plan.precision == "int8" and int8_path == "cache":
            from cosinegate.trt.build import check_int8_form

            check_int8_form(plan.form, plan.precision, int8_path)
            if cache is None:
                raise CosineGateError(f"this bundle has no calibration cache written for TensorRT {version} (a cache is "
                                      "tied to the exact release in its header); make the bundle for an exact release")
        args = trtexec_command(plan.profile, onnx_rel, "$ENGINE_TMP", plan.precision, int8_path, cache, plan.dla_core,
                               plan.workspace_mib, "$RESULTS/timing.cache", version, plan.fp32_layers,
                               verbose=True, detailed_profile=True, calibrator=plan.calibrator)
    except CosineGateError as exc:
        message = f"error: not possible with TensorRT {version}: {exc}"
        return f"TensorRT {version}{jetpack}", [f"say {sh_word(message)} >&2", "exit 2"]
    lines = [f"RELEASE={sh_word(version)}", f"BUILD_ONNX={sh_word(onnx_rel)}", f"INT8_PATH={sh_word(int8_path or '')}",
             f"CALIB={sh_word(cache or '')}"]
    if note:
        lines.append(f"say {sh_word('note: ' + note)}")
    lines.append("set -- " + sh_words(args[1:]))
    for name, cand in plan.candidates.items():  # plain float graphs: no gate layers to pin
        cand_args = trtexec_command(plan.profile, cand["onnx"], "$CAND_TMP", plan.precision, None, None, plan.dla_core,
                                    plan.workspace_mib, "$RESULTS/timing.cache", version, verbose=True)
        lines.append(f'build_{name}() {{ "$TRTEXEC" {sh_words(cand_args[1:])}; }}')
    return f"TensorRT {version}{jetpack}", lines


EXTERNAL_DATA_CHECK = r'''
import posixpath, sys
graph = sys.argv[1]
try:
    import onnx
except ImportError:
    sys.exit(f"error: {graph} may read external data and onnx is not installed to check it; pip3 install onnx.")
listed = {line.split("  ", 1)[1].rstrip("\n") for line in open("SHA256SUMS") if "  " in line}
model = onnx.load(graph, load_external_data=False)
stack = [model.graph] + list(getattr(model, "functions", []))  # a model-local function's tensors are read too (onnx 1.10+)
while stack:
    g = stack.pop()
    sparse = list(getattr(g, "sparse_initializer", []))
    tensors = list(getattr(g, "initializer", []))
    for node in g.node:
        for a in node.attribute:
            tensors += ([a.t] if a.HasField("t") else []) + list(a.tensors)
            sparse += ([a.sparse_tensor] if a.HasField("sparse_tensor") else []) + list(a.sparse_tensors)
            stack += ([a.g] if a.HasField("g") else []) + list(a.graphs)
    tensors += [t for s in sparse for t in (s.values, s.indices)]
    for t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            where = dict((e.key, e.value) for e in t.external_data).get("location", "")
            member = posixpath.normpath(posixpath.join(posixpath.dirname(graph), where))
            if not where or where.startswith("/") or ".." in where.split("/") or member not in listed:
                sys.exit(f"error: {graph} reads external data {where!r}, not one of the bundle's files; copy the bundle again.")
'''


MANIFEST_WRITER = r'''
import hashlib, json, os, sys
engine, trt, cc, seconds, release, build_onnx, int8_path, calib = sys.argv[1:9]
command = sys.argv[9:]
fields = json.loads(STATIC)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


fields.update(engine_sha256=sha256(engine), trt_version=trt, compute_capability=cc,
              build_seconds=float(seconds), calibration_sha256=sha256(calib) if calib else None,
              inputs={"onnx": build_onnx, "onnx_sha256": sha256(build_onnx)})
fields["settings"].update(release=release, int8_path=int8_path or None, calibration_cache=calib or None,
                          command=["trtexec"] + command)
tmp = engine + ".json.tmp"
with open(tmp, "w") as f:
    json.dump(fields, f, indent=2, sort_keys=True)
os.replace(tmp, engine + ".json")
'''


def dla_tag(dla_core):
    """What an engine's file name adds for a DLA core ("-dla0"): a GPU and a DLA engine of one model never share it."""
    return "" if dla_core is None else f"-dla{dla_core}"


def manifest_writer(static_fields):
    """The stdlib-only Python program that writes <engine>.json (static fields embedded as a literal)."""
    return f"STATIC = {json.dumps(json.dumps(static_fields, sort_keys=True))}\n" + MANIFEST_WRITER.lstrip("\n")


def device_script(plan):
    """Text of build_on_device.sh for ``plan``."""
    profile = plan.profile
    lines = [
        "#!/bin/sh",
        f"# Build, check and time the {plan.name} {plan.graph or plan.form} {plan.precision} engine for {profile.name} on the "
        "device.",
        "#   sh build_on_device.sh                 (TRTEXEC=/path/to/trtexec sh build_on_device.sh to pick a trtexec)",
        "# Everything it writes lands in results/ beside it; it ends by printing the command that copies results/ back.",
        "set -eu",
        "say() { printf '%s\\n' \"$*\"; }  # dash's echo would read backslashes in paths and messages",
    ]
    if plan.int8_warning:
        lines.append(f"say {shlex.quote('warning: ' + plan.int8_warning)} >&2")
    lines += [
        'PATH="$PATH:${HOME:-/nonexistent}/.local/bin"  # pip3 install --user puts polygraphy there; on PATH after the next login',
        "export PYTHONDONTWRITEBYTECODE=1  # Polygraphy imports check_parity.py: no __pycache__ in the bundle",
        "# TRTEXEC as the caller meant it, before the cd: a relative path from where the script was started, a bare name",
        "# from PATH",
        'case "${TRTEXEC:-}" in',
        '    "" | /*) ;;',
        '    */*) TRTEXEC="$(pwd)/$TRTEXEC" ;;',
        '    *) TRTEXEC=$(command -v -- "$TRTEXEC" || printf \'%s\' "$TRTEXEC") ;;',
        "esac",
        'cd -- "$(dirname -- "$0")"',
        'BUNDLE=$(pwd)',
        'RESULTS="$BUNDLE/results"',
        'if [ -L "$RESULTS" ] || { [ -e "$RESULTS" ] && [ ! -d "$RESULTS" ]; }; then',
        '    say "error: results in the bundle is a link or not a folder; it must be a plain folder inside the bundle: remove it." >&2',
        "    exit 2",
        "fi",
        "# result files are written fresh: a link (a hard link too: tar xf links a planted member to a file of that name",
        "# in the folder it unpacks into), FIFO or device planted in the bundle (results/ included) is refused",
        'BAD=$(find . -mindepth 1 \\( \\( ! -type f ! -type d \\) -o \\( -type f -links +1 \\) \\) -print | head -n 1)',
        'if [ -n "$BAD" ]; then',
        '    say "error: ${BAD#./} in the bundle is a link (hard links included) or not a plain file; a bundle holds plain '
        'files only: remove it, or unpack the bundle again into an empty folder." >&2',
        "    exit 2",
        "fi",
        "",
        'say "checking the bundle (sha256sum -c SHA256SUMS)"',
        "# results/ is made once every check has passed: a refused bundle leaves nothing behind",
        'if ! SUMS=$(sha256sum -c SHA256SUMS 2>&1); then',
        "    say \"$SUMS\" | grep -v ': OK$' >&2 || true",
        '    say "error: the bundle is damaged (the files above); copy it again." >&2',
        "    exit 2",
        "fi",
        "# a graph may keep weights in external files, and TensorRT's parser reads whatever path it names: only the",
        "# bundle's own hashed files are allowed (checked with onnx; a graph naming none is let through unparsed)",
        "sed -n 's/^[0-9a-f]*  //p' SHA256SUMS | grep '\\.onnx$' | while IFS= read -r G; do",
        "    if grep -q -a -F location \"$G\"; then",
        "        python3 -c " + sh_word(EXTERNAL_DATA_CHECK.strip("\n")) + ' "$G" || exit 2',
        "    fi",
        "done",
        "",
        'if [ -n "${TRTEXEC:-}" ]; then',
        "    :",
        "elif command -v trtexec > /dev/null 2>&1; then",
        "    TRTEXEC=$(command -v trtexec)",
        "elif [ -x /usr/src/tensorrt/bin/trtexec ]; then",
        "    TRTEXEC=/usr/src/tensorrt/bin/trtexec",
        "else",
        '    say "error: trtexec not found (\\$TRTEXEC, PATH, /usr/src/tensorrt/bin); install TensorRT\'s samples '
        '(JetPack: sudo apt install tensorrt) or set TRTEXEC=/path/to/trtexec." >&2',
        "    exit 2",
        "fi",
        'if [ ! -f "$TRTEXEC" ] || [ ! -x "$TRTEXEC" ]; then  # a folder is -x too',
        '    say "error: TRTEXEC=$TRTEXEC is not an executable file; point it at trtexec itself '
        '(JetPack: TRTEXEC=/usr/src/tensorrt/bin/trtexec)." >&2',
        "    exit 2",
        "fi",
        "",
        "# TensorRT version: trtexec's banner ([TensorRT v8502] / [TensorRT v100300]), else the Python bindings, else dpkg.",
        "TRT=''",
        'N=$("$TRTEXEC" --help 2>&1 | sed -n \'s/.*TensorRT v\\([0-9][0-9]*\\).*/\\1/p\' | head -n 1) || N=\'\'',
        'if [ -n "$N" ] && [ "$N" -ge 100000 ]; then TRT="$((N / 10000)).$((N / 100 % 100)).$((N % 100))"',
        'elif [ -n "$N" ]; then TRT="$((N / 1000)).$((N / 100 % 10)).$((N % 100))"; fi',
        "[ -n \"$TRT\" ] || TRT=$(python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null) || TRT=''",
        "[ -n \"$TRT\" ] || TRT=$(dpkg-query -W -f='${Version}' libnvinfer-bin 2>/dev/null | cut -d- -f1) || TRT=''",
        'say "trtexec: $TRTEXEC (TensorRT ${TRT:-unknown})"',
        "",
    ]
    lines += _compute_capability(profile)
    if plan.precision == "int8" and plan.calibrator == "minmax" and plan.int8_path == "cache":
        # trtexec --calib always reads a cache with an EntropyCalibrator2 (and DLA needs entropy2), so a MinMax
        # cache builds only through the toolkit's Python path (Polygraphy Calibrator, BaseClass IInt8MinMaxCalibrator).
        python_path = f"python3 deploy/build_engine.py --target {profile.name} --bundle"
        lines += [
            "say " + sh_word("error: this bundle's calibration cache is MinMax, which trtexec cannot read; in the toolkit's "
                              "checkout on this board, pip3 install -e '.[device]', then:") + " >&2",
            "say " + sh_word("  " + python_path) + ' "$BUNDLE" >&2',
            "exit 2",
        ]
        return "\n".join(lines) + "\n"
    engine = f"{plan.name}-{plan.graph or plan.form}-{plan.precision}{dla_tag(plan.dla_core)}-trt"
    lines += [f'ENGINE="$RESULTS/"{sh_word(engine)}"$TRT-sm$SM.engine"', 'ENGINE_TMP="$ENGINE.partial"', ""]
    lines.append('case "$TRT" in')
    releases = sorted(profile.tensorrt, key=lambda r: len(r.version.parts), reverse=True)  # most specific first
    for release in releases:
        comment, body = branch(plan, release)
        lines.append(f"    {release_pattern(release.version)})  # {comment}")
        lines += ["        " + line for line in body] + ["        ;;"]
    lines += [
        '    "")',
        '        say "error: cannot tell the TensorRT release: $TRTEXEC --help printed no [TensorRT vNNNN] banner, and '
        'neither the tensorrt Python module nor dpkg names one; point TRTEXEC at TensorRT\'s trtexec." >&2',
        "        exit 2",
        "        ;;",
        "    *)",
        '        say "error: TensorRT $TRT is not a release of "'
        + sh_word(f"{profile.name} ({profile.tensorrt_names()}); install one of those or make the bundle for another target.")
        + " >&2",
        "        exit 2",
        "        ;;",
        "esac",
    ]
    lines += _build_and_manifest(plan)
    lines += _check(plan)
    lines += _timing(plan)
    lines += _candidate_table(plan)
    lines += _power_state_and_return(plan)
    return "\n".join(lines) + "\n"


def _compute_capability(profile):
    """Shell lines setting CC and SM: $CC when it reads like a capability (CC is also the C compiler's variable), else
    the Jetson SoC in the device tree (as build.detect_host), else nvidia-smi; a target of one capability assumes it
    only when none of them tells. A capability not the target's stops the build (an Orin bundle on a Xavier)."""
    from cosinegate.trt.build import TEGRA_CAPABILITY

    capabilities = "|".join(sh_word(cc) for cc in profile.compute_capabilities)
    socs = "; ".join(f"s/^{soc}$/{cc}/p" for soc, cc in TEGRA_CAPABILITY.items())
    lines = [
        'CC=${CC:-}',
        "if [ -n \"$CC\" ] && ! say \"$CC\" | grep -Eqx '[0-9]+[.][0-9]+'; then",
        "    say \"note: CC='$CC' is no compute capability (X.Y); ignored\"",
        "    CC=''",
        "fi",
        "[ -n \"$CC\" ] || CC=$(tr '\\000' '\\n' 2>/dev/null < \"${DEVICE_TREE:-/proc/device-tree/compatible}\" | sed -n "
        + sh_word(socs) + " | head -n 1) || CC=''",
        "[ -n \"$CC\" ] || CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1) || CC=''",
        "say \"$CC\" | grep -Eqx '([0-9]+[.][0-9]+)?' || CC=''  # a driver before 510 prints an error there",
    ]
    if len(profile.compute_capabilities) == 1:
        only = profile.compute_capabilities[0]
        lines.append('[ -n "$CC" ] || { CC=' + sh_word(only) + "; say "
                     + sh_word(f"note: neither the device tree nor nvidia-smi names the GPU; assuming {profile.name}'s "
                               f"compute capability {only} (set CC=X.Y to say otherwise)") + "; }")
    which = f" is not one of {profile.name}'s ({', '.join(profile.compute_capabilities)}); set CC=X.Y if nothing can tell, or use another target."
    return lines + [
        'case "$CC" in',
        f"    {capabilities}) ;;",
        "    *)",
        "        say \"error: GPU compute capability '$CC'\"" + sh_word(which) + " >&2",
        "        exit 2",
        "        ;;",
        "esac",
        "SM=$(say \"$CC\" | tr -d .)",
        "",
    ]


def _build_and_manifest(plan):
    return [
        "",
        'mkdir -p "$RESULTS"',
        "# a rerun (a rebuild, or another bundle of this name unpacked over this one) starts from an empty results/ but",
        "# for TensorRT's timing cache (it only speeds the build up): no engine, output, verdict or timing of the last",
        "# run is read again, followed by run_engine.py or carried back",
        'find "$RESULTS" -mindepth 1 -maxdepth 1 ! -name timing.cache -exec rm -rf -- {} +',
        'say "$SUMS" > "$RESULTS/sha256sum.txt"',
        'say "building $ENGINE (log: results/build.log)"',
        'START=$(date +%s)',
        'if ! "$TRTEXEC" "$@" > "$RESULTS/build.log" 2>&1; then',
        '    rm -f "$ENGINE_TMP"',
        '    tail -n 20 "$RESULTS/build.log" >&2',
        '    say "error: trtexec could not build the engine (full log: results/build.log)." >&2',
        "    exit 1",
        "fi",
        'mv "$ENGINE_TMP" "$ENGINE"',
        'BUILD_SECONDS=$(( $(date +%s) - START ))',
        "python3 - \"$ENGINE\" \"$TRT\" \"$CC\" \"$BUILD_SECONDS\" \"$RELEASE\" \"$BUILD_ONNX\" \"$INT8_PATH\" \"$CALIB\" \"$@\" "
        "<<'COSINEGATE_MANIFEST'",
        manifest_writer(plan.manifest_fields).rstrip("\n"),
        "COSINEGATE_MANIFEST",
        'say "wrote $ENGINE and its manifest $ENGINE.json"',
    ]


DATA_LOADER = "check_parity.py"  # its load_data(): the float feeds of inputs.npz beside it


def data_loader(plan):
    """Polygraphy's flags feeding the engine the bundle's reference images: check_parity.py's load_data reads
    inputs.npz (one copy, uint8) and makes the float feeds with the numpy code the desktop made the reference with."""
    if plan.reference_inputs != "inputs.npz":
        raise CosineGateError(f"the bundle's reference inputs are {plan.reference_inputs}; check_parity.py reads inputs.npz")
    return ["--data-loader-script", DATA_LOADER]


def _check(plan):
    # --trt is needed: without a runner flag `polygraphy run` runs nothing and compares the loaded outputs with
    # nothing, reporting PASSED (seen with Polygraphy 0.53 on a file that is no engine at all). Polygraphy only
    # runs the engine and saves its outputs; check_parity.py judges them by the precision's profile (top-1 and
    # gate-decision agreement, logit bounds where the profile has them), so an INT8 check can fail too.
    polygraphy = "polygraphy run " + sh_words(["$ENGINE", "--trt", "--model-type", "engine", *data_loader(plan),
                                               "--save-outputs", "$RESULTS/outputs.json"])
    judge = "python3 check_parity.py " + sh_words(["$RESULTS/outputs.json", "--reference", plan.reference,
                                                    "--json", "$RESULTS/parity.json"])
    return [
        "",
        "# why Polygraphy failed, in one line: its first error line (and the fix where numpy or the bindings are the cause)",
        "polygraphy_error() {",
        "    WHY=$(grep -m 1 -E 'could not be imported|Error|error|FAILED' \"$1\" 2>/dev/null | tr -d '\\r' | cut -c1-200) || WHY=''",
        "    # Polygraphy's import failure names the module, its cause on the next line (Note: Error was: ...)",
        "    CAUSE=$(grep -m 1 'Error was:' \"$1\" 2>/dev/null | tr -d '\\r' | sed 's/.*Error was: *//' | cut -c1-200) || CAUSE=''",
        "    case \"$WHY\" in *'Error was:'*) ;; *) [ -z \"$CAUSE\" ] || WHY=\"$WHY ($CAUSE)\" ;; esac",
        "    case \"$WHY\" in",
        "        *numpy*|*bool*) WHY=\"$WHY; TensorRT 8.5's bindings need numpy<1.24\" ;;",
        "        *\"No module named 'tensorrt'\"*) WHY=\"$WHY; TensorRT's Python bindings: sudo apt install python3-libnvinfer "
        "(a venv needs --system-site-packages)\" ;;",
        "    esac",
        "    printf '%s' \"${WHY:+: $WHY} (see ${1#\"$BUNDLE/\"})\"",
        "}",
        "if command -v polygraphy > /dev/null 2>&1; then",
        f'    say "checking the engine against the PyTorch reference ({plan.precision} profile; log: results/polygraphy.log)"',
        f"    if ! {polygraphy} > \"$RESULTS/polygraphy.log\" 2>&1; then",
        '        PARITY="not checked: Polygraphy could not run the engine$(polygraphy_error "$RESULTS/polygraphy.log")"',
        f"    elif {judge} >> \"$RESULTS/polygraphy.log\" 2>&1; then",
        "        PARITY=passed",
        "    # check_parity.py: 1 = outputs outside the profile (its report written), else it could not judge them",
        '    elif [ $? -eq 1 ] && [ -s "$RESULTS/parity.json" ]; then',
        "        PARITY=FAILED",
        "    else",
        "        PARITY=\"not checked: check_parity.py could not judge the outputs (see results/polygraphy.log)\"",
        "    fi",
        '    tail -n 1 "$RESULTS/polygraphy.log"',
        "else",
        "    PARITY='not run (polygraphy not installed: pip3 install \"numpy<1.24\" polygraphy: TensorRT 8.5 needs np.bool)'",
        "fi",
        'say "parity: $PARITY" | tee "$RESULTS/parity.txt"',
    ]


# Reads trtexec's --exportLayerInfo (detailed): every engine layer whose name holds a gate-head node and whose float
# tensors are not FP32 (a fused layer keeps its nodes' names, "a + b"); stdlib only, Python 3.8.
GATE_PRECISION = """
import json, sys
data = json.load(open(sys.argv[1]))
layers = data.get("Layers", []) if isinstance(data, dict) else data
low = ("FP16", "Half", "Int8", "INT8", "FP8", "BF16")
for layer in layers if isinstance(layers, list) else []:
    if not isinstance(layer, dict) or "/gate/" not in str(layer.get("Name", "")):
        continue
    formats = [str(t.get("Format/Datatype", "")) for t in layer.get("Inputs", []) + layer.get("Outputs", [])]
    below = sorted({f for f in formats if any(word in f for word in low)})
    if below:
        print(layer["Name"] + ": " + "; ".join(below))
"""


def _timing(plan):
    args = trtexec_timing_command(plan.profile, "$ENGINE", plan.profile.newest_tensorrt, {plan.input_name: plan.input_bin},
                                  "$RESULTS/timing", plan.dla_core)
    return [
        "",
        'say "timing the engine on one image, input.bin (log: results/timing.log)"',
        "set -- " + sh_words(args[1:]),
        'if ! "$TRTEXEC" "$@" > "$RESULTS/timing.log" 2>&1; then say "warning: timing failed (see results/timing.log)" >&2; fi',
        "# the gate heads are pinned to FP32 (weakly typed builds): which gate layers did the engine run lower?",
        'if [ -s "$RESULTS/timing.layers.json" ]; then',
        "    python3 - \"$RESULTS/timing.layers.json\" > \"$RESULTS/gate_precision.txt\" 2> \"$RESULTS/gate_precision.log\" "
        "<<'COSINEGATE_GATES' || true",
        GATE_PRECISION.strip("\n"),
        "COSINEGATE_GATES",
        '    if [ -s "$RESULTS/gate_precision.txt" ]; then',
        '        say "warning: gate layer(s) below FP32 in the engine (results/gate_precision.txt):" >&2',
        '        cat "$RESULTS/gate_precision.txt" >&2',
        "    fi",
        "fi",
    ] + _pattern_timing(plan)


def _pattern_timing(plan):
    """The conditional engine timed once per gate pattern of the timing images; LATENCY = the image-weighted mean of the
    medians (results/timing.patterns.txt: file, images, median ms, pattern). Without patterns: the one image's median."""
    lines = ["", MEDIAN_LATENCY, 'LATENCY=$(median_ms "$RESULTS/timing.log")', "LATENCY_OVER='one image (input.bin)'"]
    if not plan.timing_patterns:
        return lines
    args = trtexec_timing_command(plan.profile, "$ENGINE", plan.profile.newest_tensorrt,
                                  {plan.input_name: "$PATTERN_FILE"}, None, plan.dla_core)
    if plan.candidates:  # the winner's rule reads each pattern's timed queries (deleted once it has: ~MBs each)
        args.append("--exportTimes=$PATTERN_TIMES")
    table = '"$RESULTS/timing.patterns.txt"'
    return lines + [
        f'say "timing the engine over the gate patterns of the timing images ({plan.timing_patterns}; logs: '
        'results/timing.pattern-*.log)"',
        f": > {table}",
        "while read -r PATTERN_FILE PATTERN_IMAGES PATTERN; do",
        "    [ -n \"$PATTERN_FILE\" ] || continue",
        '    PATTERN_LOG="$RESULTS/timing.$(basename "$PATTERN_FILE" .bin).log"',
        '    PATTERN_TIMES="${PATTERN_LOG%.log}.times.json"; rm -f "$PATTERN_TIMES"',
        f"    set -- {sh_words(args[1:])}",
        '    if "$TRTEXEC" "$@" < /dev/null > "$PATTERN_LOG" 2>&1; then PM=$(median_ms "$PATTERN_LOG"); else PM=\'\'; fi',
        f'    printf \'%s %s %s %s\\n\' "$PATTERN_FILE" "$PATTERN_IMAGES" "${{PM:-n/a}}" "$PATTERN" >> {table}',
        f"done < {sh_word(plan.timing_patterns)}",
        "WEIGHTED=$(awk '$3 != \"n/a\" && $3 != \"\" { s += $2 * $3; n += $2 } { all += $2 } "
        f"END {{ if (n > 0) printf \"%.4f %d %d\", s / n, n, all }}' {table})",
        'if [ -n "$WEIGHTED" ]; then',
        "    set -- $WEIGHTED",
        '    LATENCY=$1; LATENCY_OVER="$2 of $3 timing images (one run per gate pattern, weighted by its images)"',
        "fi",
        'say "conditional engine latency: ${LATENCY:-n/a} ms over $LATENCY_OVER" | tee "$RESULTS/latency.txt"',
    ]


# Median of trtexec's "Latency" line (H2D + GPU compute + D2H of one query; sampleReporting.cpp printEpilog), with
# four decimals like the pattern-weighted latency beside it in the candidate table (trtexec prints six digits).
MEDIAN_LATENCY = ("median_ms() { awk '/\\] Latency: min = / { for (i = 1; i < NF; i++) if ($i == \"median\") v = $(i + 2) } "
                  "END { if (v != \"\") printf \"%.4f\\n\", v }' \"$1\" 2>/dev/null || true; }")


# The desktop's selection rule (cosinegate.bench.candidates.choose) on the board's table: candidates.txt (candidate,
# median ms, parity, accuracy) and each one's trtexec --exportTimes (its timed queries only, warm-ups excluded from
# TensorRT 8.5.2 on: samples/common/sampleReporting.cpp exportJSONTrace, `trace.begin() + nbWarmups`). The conditional
# engine's timings are pooled over its gate patterns, each pattern weighted by its images, and compared by their
# median (the desktop's p50 over real images). Spread = interquartile range, numpy's linear percentiles for equal
# weights (one trtexec run per engine, so no range of round medians as on the desktop). The conditional engine is
# dropped if its own check FAILED or could not run (error). Prints "winner: NAME" (run_engine.py reads it) and the
# comparisons; stdlib only, Python 3.8.
CHOOSE_WINNER = r"""
import json, os, sys
results = sys.argv[1]
SIMPLER_FIRST = ["dense", "pruned", "conditional"]

def latencies(path):
    try:
        with open(path) as f:
            return [float(q["latencyMs"]) for q in json.load(f)]
    except (OSError, ValueError, KeyError, TypeError):
        return []

def quantile(samples, q):
    # weighted, linear between the points at (weight before + half its own) rescaled so that the first point is at 0
    # and the last at 1: numpy.percentile's default for equal weights
    samples = sorted(s for s in samples if s[1] > 0)
    if len(samples) == 1:
        return samples[0][0]
    total, seen, points = sum(w for _, w in samples), 0.0, []
    first, last = samples[0][1] / 2, samples[-1][1] / 2
    for value, weight in samples:
        points.append(((seen + weight / 2 - first) / (total - first - last), value))
        seen += weight
    for (p0, v0), (p1, v1) in zip(points, points[1:]):
        if q <= p1:
            return v0 if p1 <= p0 else v0 + (v1 - v0) * (q - p0) / (p1 - p0)
    return points[-1][1]

def conditional_samples():
    pooled = []
    try:
        with open(os.path.join(results, "timing.patterns.txt")) as f:
            rows = [line.split() for line in f]
    except OSError:
        rows = []
    for row in rows:
        if len(row) < 3 or not row[0].endswith(".bin") or row[2] == "n/a" or not row[1].isdigit():
            continue
        times = latencies(os.path.join(results, "timing." + os.path.basename(row[0])[:-4] + ".times.json"))
        pooled += [(ms, float(row[1]) / len(times)) for ms in times]
    return pooled or [(ms, 1.0) for ms in latencies(os.path.join(results, "timing.times.json"))]

with open(os.path.join(results, "candidates.txt")) as f:
    rows = [line.split() for line in f][1:]
timed, notes = {}, []
unchecked = [row[0] for row in rows if len(row) >= 4 and row[2] == "error"]
for row in rows:
    if len(row) < 4 or row[1] == "n/a" or row[2] in ("FAILED", "error") or row[3] == "outside":
        continue
    name, median, reference = row[0], float(row[1]), row[3] == "reference"
    if reference:
        samples = conditional_samples()
    else:
        samples = [(ms, 1.0) for ms in latencies(os.path.join(results, "timing." + name + ".times.json"))]
    if samples:
        spread = quantile(samples, 0.75) - quantile(samples, 0.25)
        if reference:
            median = quantile(samples, 0.5)
        notes.append("%s: median %.4f ms, interquartile range %.4f ms over %d timed queries" % (
            name, median, spread, len(samples)))
    else:
        spread = 0.0
        notes.append("%s: median %.4f ms; no --exportTimes timings, spread unknown (taken as 0)" % (name, median))
    timed["conditional" if reference else name] = (median, spread, name)
if not timed:
    print("winner: none (%s)" % ("the checks of %s could not run: see results/polygraphy*.log" % ", ".join(unchecked)
                                 if unchecked else "no candidate timed"))
    sys.exit(0)
kept = None
for key in sorted(timed, key=lambda k: SIMPLER_FIRST.index(k) if k in SIMPLER_FIRST else len(SIMPLER_FIRST)):
    if kept is None:
        kept = key
        continue
    (ms, sp, name), (kept_ms, kept_sp, kept_name) = timed[key], timed[kept]
    if ms >= kept_ms:
        notes.append("%s is not faster than %s" % (name, kept_name))
        continue
    margin = max(sp, kept_sp)
    beyond = kept_ms - ms > margin
    notes.append("%s is %.1f%% faster than %s, %s the spread %.1f%%: %s" % (
        name, 100.0 * (kept_ms - ms) / kept_ms, kept_name, "beyond" if beyond else "within",
        100.0 * margin / kept_ms, (name + " chosen") if beyond else (kept_name + " kept")))
    kept = key if beyond else kept
print("winner: " + timed[kept][2])
print("rule: the simpler graph (dense, pruned, conditional) is kept unless a faster one wins by more than the larger "
      "interquartile range of the two, as on the desktop")
for note in notes:
    print(note)
"""


def _candidate_table(plan):
    """Build, check and time the other candidates; one table; the winner (none without candidates)."""
    if not plan.candidates:
        return []
    timing = trtexec_timing_command(plan.profile, "$CAND_ENGINE", plan.profile.newest_tensorrt,
                                    {plan.input_name: plan.input_bin}, None, plan.dla_core) + ["--exportTimes=$CAND_TIMES"]
    lines = ["", 'TABLE="$RESULTS/candidates.txt"',
             "printf '%-12s %10s %-10s %s\\n' candidate 'median ms' parity accuracy > \"$TABLE\"",
             'M=$LATENCY',
             'case "$PARITY" in passed|FAILED) P=$PARITY ;; "not checked"*) P=error ;; *) P=not-run ;; esac',
             "printf '%-12s %10s %-10s %s\\n' " + sh_word(plan.form) + ' "${M:-n/a}" "$P" reference >> "$TABLE"']
    for name, cand in plan.candidates.items():
        engine = f"{plan.name}-{name}-{plan.precision}{dla_tag(plan.dla_core)}-trt"
        if cand["inputs"] != plan.reference_inputs:
            raise CosineGateError(f"candidate {name} names inputs {cand['inputs']}, not the bundle's {plan.reference_inputs}")
        outputs = f"$RESULTS/outputs.{name}.json"
        run = "polygraphy run " + sh_words(["$CAND_ENGINE", "--trt", "--model-type", "engine", *data_loader(plan),
                                            "--save-outputs", outputs])
        judge = "python3 check_parity.py " + sh_words([outputs, "--reference", cand["reference"],
                                                        "--json", f"$RESULTS/parity.{name}.json"])
        accuracy = "within" if cand["eligible"] else "outside"
        lines += [
            "",
            f'CAND_ENGINE="$RESULTS/"{sh_word(engine)}"$TRT-sm$SM.engine"',
            'CAND_TMP="$CAND_ENGINE.partial"',
            f'CAND_TIMES="$RESULTS/timing.{name}.times.json"; rm -f "$CAND_TIMES"',
            f'say "candidate {name}: building (log: results/build.{name}.log)"',
            "M=''; P=not-built",
            f'if build_{name} > "$RESULTS/build.{name}.log" 2>&1; then',
            '    mv "$CAND_TMP" "$CAND_ENGINE"',
            "    if command -v polygraphy > /dev/null 2>&1; then",
            f'        if ! {run} > "$RESULTS/polygraphy.{name}.log" 2>&1; then P=error',
            f'        elif {judge} >> "$RESULTS/polygraphy.{name}.log" 2>&1; then P=passed',
            f'        elif [ $? -eq 1 ] && [ -s "$RESULTS/parity.{name}.json" ]; then P=FAILED; else P=error; fi',
            "    else P=not-run; fi",
            f'    set -- {sh_words(timing[1:])}',
            f'    if "$TRTEXEC" "$@" > "$RESULTS/timing.{name}.log" 2>&1; then M=$(median_ms "$RESULTS/timing.{name}.log"); fi',
            "else",
            '    rm -f "$CAND_TMP"',
            f'    say "warning: candidate {name} did not build (see results/build.{name}.log)" >&2',
            "fi",
            f"printf '%-12s %10s %-10s %s\\n' {sh_word(name)} \"${{M:-n/a}}\" \"$P\" {accuracy} >> \"$TABLE\"",
        ]
    lines += [
        "",
        'say "candidates (trtexec --loadInputs, --useSpinWait; the conditional engine over $LATENCY_OVER, the others, '
        'whose work does not depend on the image, on input.bin; accuracy: within the profile\'s tolerance of the '
        'conditional graph, measured on the desktop):"',
        'cat "$TABLE"',
        "if ! python3 - \"$RESULTS\" > \"$RESULTS/winner.txt\" 2> \"$RESULTS/winner.log\" <<'COSINEGATE_WINNER'",
        CHOOSE_WINNER.strip("\n"),
        "COSINEGATE_WINNER",
        "then",
        '    say "warning: no winner chosen (see results/winner.log)" >&2',
        '    say "winner: none (the selection failed)" > "$RESULTS/winner.txt"',
        "fi",
        'cat "$RESULTS/winner.txt"',
        'rm -f "$RESULTS"/timing.pattern-*.times.json  # read; winner.txt keeps their medians and spreads',
    ]
    return lines


def _power_state_and_return(plan):
    return [
        "",
        "if command -v nvpmodel > /dev/null 2>&1; then nvpmodel -q > \"$RESULTS/nvpmodel.txt\" 2>&1 || true; fi",
        "if command -v jetson_clocks > /dev/null 2>&1; then",
        "    { jetson_clocks --show 2>/dev/null || sudo -n jetson_clocks --show 2>/dev/null || "
        "say 'jetson_clocks --show needs root: run sudo jetson_clocks --show'; } > \"$RESULTS/jetson_clocks.txt\"",
        "    # on = the GPU's minimum clock raised to its maximum (jetson_clocks --show: GPU MinFreq=... MaxFreq=...)",
        "    awk '/^GPU / { for (i = 2; i <= NF; i++) { split($i, kv, \"=\"); f[kv[1]] = kv[2] }",
        "                   print (f[\"MinFreq\"] != \"\" && f[\"MinFreq\"] == f[\"MaxFreq\"]) ? \"on\" : \"off\" }' "
        "\"$RESULTS/jetson_clocks.txt\" > \"$RESULTS/jetson_clocks_state.txt\" || true",
        "fi",
        "",
        'say "results: $RESULTS"',
        'say "bring them back (run on the desktop):"',
        "# into <bundle folder>-results, so two bundles' results do not land in one folder. A path with shell characters",
        "# goes through ssh + tar, quoted once for the desktop's shell and once for the board's (scp before OpenSSH 9",
        "# hands a remote path to the board's shell, from 9.0 it does not: no one quoting serves both)",
        "NAME=$(basename -- \"$BUNDLE\" | tr -d '\\n' | tr -c 'A-Za-z0-9_.+-' _)",
        f'[ -n "$NAME" ] || NAME={sh_word(plan.name)}',
        'HOST="${USER:-$(id -un)}@$(hostname)"',
        'case "$RESULTS" in',
        "    *[!A-Za-z0-9_./+-]*)",
        "        Q=\"'$(printf '%s\\n' \"$RESULTS\" | sed \"s/'/'\\\\\\\\''/g\")'\"",
        "        Q=\"'$(printf '%s\\n' \"$Q\" | sed \"s/'/'\\\\\\\\''/g\")'\"",
        "        printf '%s\\n' \"  mkdir -p ./$NAME-results && ssh $HOST tar cf - -C $Q . | tar xf - -C ./$NAME-results\"",
        "        ;;",
        "    *)",
        "        printf '%s\\n' \"  scp -r $HOST:$RESULTS ./$NAME-results\"",
        "        ;;",
        "esac",
        "# the status says whether the engine run_engine.py uses is the model: 1 when its check failed or could not run.",
        "# A named winner's check passed or was not run (Polygraphy absent): the selection admits no other",
        "WINNER=$(sed -n '1s/^winner: \\([A-Za-z0-9_-]*\\).*/\\1/p' \"$RESULTS/winner.txt\" 2>/dev/null) || WINNER=''",
        'case "$WINNER" in',
        '    ""|none) ;;',
        '    *)',
        '        [ "$PARITY" = passed ] || say "note: the bundle\'s own engine: parity $PARITY; run_engine.py uses the winner, '
        '$WINNER (results/candidates.txt)."',
        "        PARITY=winner",
        "        ;;",
        "esac",
        'case "$PARITY" in',
        "    FAILED)",
        '        say "error: the engine disagrees with the PyTorch reference beyond the "' + sh_word(plan.precision)
        + '" profile (results/parity.json, results/polygraphy.log)." >&2',
        "        exit 1",
        "        ;;",
        '    "not checked"*)',
        '        say "error: the engine was built but $PARITY." >&2',
        "        exit 1",
        "        ;;",
        "esac",
    ]
