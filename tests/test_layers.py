"""The package's layers point one way and its units form no circle.

Every module under cosinegate/ is parsed (no import runs) and every import of a cosinegate module is read,
at any depth: module level, inside functions, under ``if``/``try``. A *unit* is a subpackage
(``cosinegate/onnx/``) or a top-level module (``cosinegate/config.py``); each unit sits in one layer:

    core -> data -> models -> training -> onnx -> quant, runtime -> parity -> trt -> bench
         -> pipeline, research -> cli

(core: errors, artifacts, archives, schema, graphmeta, minitoml, trtversion, layernames, lazy, manifests, progress, cpuinfo; models: models/, macs, blockkinds;
training: training/, config, evaluation, plots, defaults.)

A unit may import its own layer or a lower one, never a higher one; and no chain of imports between units
leads back to where it started. Two decisions the layers encode: data sits below models (the network's
default normalization is the data's; data never imports a model or training code), and the research code
(cosinegate/research/: campaigns, paper reproduction, run packing) sits beside the pipeline, above
everything the product ships, so the training loop cannot reach it.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cosinegate"

# low -> high; a unit not named here fails the test until it is placed.
LAYERS = (
    ("core", {"cosinegate", "errors", "artifacts", "archives", "schema", "graphmeta", "minitoml", "trtversion", "layernames",
              "lazy", "manifests", "progress", "cpuinfo"}),
    ("data", {"data"}),
    ("models", {"models", "macs", "blockkinds"}),
    ("training", {"training", "config", "evaluation", "plots", "defaults"}),
    ("onnx", {"onnx"}),
    ("quant, runtime", {"quant", "runtime"}),  # runtime (cosinegate/runtime/, the model runners): below parity/trt/bench
    ("parity", {"parity"}),
    ("trt", {"trt"}),
    ("bench", {"bench"}),
    ("pipeline, research", {"pipeline", "research"}),
    ("cli", {"cli", "__main__"}),
)
RANK = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
LAYER_NAME = {unit: name for name, units in LAYERS for unit in units}

# {(from unit, to unit): "owner who removes it, and why it is here"} for an upward edge that must wait for a change
# elsewhere. Empty is the goal; an entry that no longer occurs fails the test too, so the list only shrinks.
ALLOWED = {}


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module):
    """'cosinegate.onnx.export' -> 'onnx'; 'cosinegate.config' -> 'config'; 'cosinegate' -> 'cosinegate'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def is_module(name):
    """Whether dotted ``name`` (under cosinegate) is a module or package rather than a name inside one."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path):
    """(line, cosinegate module) for every import in the file at ``path``, at any depth."""
    found = []
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from cosinegate import campaign` imports the module cosinegate.campaign
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if is_module(full) else base))
    return [(line, name) for line, name in found if name == "cosinegate" or name.startswith("cosinegate.")]


def unit_edges():
    """{(from unit, to unit): ['cosinegate/x.py:12 imports cosinegate.y', ...]} between different units."""
    edges = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit_of(module_name(path))
        for line, name in imported_modules(path):
            target = unit_of(name)
            if target != source:
                where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
                edges.setdefault((source, target), [])
                if where not in edges[(source, target)]:
                    edges[(source, target)].append(where)
    return edges


def circles(edges):
    """Each strongly connected group of more than one unit (a circle of imports), as a sorted list."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(node):  # Tarjan
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def cycle_path(group, edges):
    """One shortest circle through the group's first unit, as 'a -> b -> a'."""
    start = group[0]
    paths, seen = [[start]], set()
    while paths:
        path = paths.pop(0)
        for a, b in sorted(edges):
            if a != path[-1] or b not in group:
                continue
            if b == start:
                return " -> ".join([*path, start])
            if b not in seen:
                seen.add(b)
                paths.append([*path, b])
    return " -> ".join(group)


def upward(edges):
    """{(from, to): where} for each import from a lower layer to a higher one."""
    return {(a, b): where for (a, b), where in edges.items() if a in RANK and b in RANK and RANK[a] < RANK[b]}


def shown(edge, where):
    a, b = edge
    lines = "\n".join(f"      {w}" for w in where)
    return f"  {a} ({LAYER_NAME.get(a, '?')}) -> {b} ({LAYER_NAME.get(b, '?')}):\n{lines}"


def test_every_unit_has_a_layer():
    units = {unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert not units - set(RANK), f"place these units in LAYERS (tests/test_layers.py): {sorted(units - set(RANK))}"


def test_no_import_goes_up_a_layer():
    edges = unit_edges()
    found = upward(edges)
    bad = {edge: where for edge, where in found.items() if edge not in ALLOWED}
    message = "\n".join(shown(edge, where) for edge, where in sorted(bad.items()))
    assert not bad, f"imports from a lower layer to a higher one (see LAYERS in tests/test_layers.py):\n{message}"
    stale = sorted(set(ALLOWED) - set(found))
    assert not stale, f"ALLOWED lists edges that no longer occur; remove them: {stale}"


def test_no_circle_between_units():
    edges = unit_edges()
    groups = circles(edges)
    blocks = []
    for group in groups:
        inside = "\n".join(shown(edge, where) for edge, where in sorted(edges.items()) if set(edge) <= set(group))
        blocks.append(f"circle {cycle_path(group, edges)} (every import among {', '.join(group)}):\n{inside}")
    assert not groups, "imports between these units form a circle:\n" + "\n\n".join(blocks)


def test_the_checker_sees_a_function_level_import_and_a_circle(tmp_path):
    module = tmp_path / "cosinegate" / "data" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    if True:\n        from cosinegate.training.loop import train\n")
    global PACKAGE
    real, PACKAGE = PACKAGE, tmp_path / "cosinegate"
    try:
        assert imported_modules(module) == [(3, "cosinegate.training.loop")]
    finally:
        PACKAGE = real
    assert upward({("data", "training"): ["x"]}) == {("data", "training"): ["x"]}
    ring = {("a", "b"): [], ("b", "c"): [], ("c", "a"): [], ("c", "d"): []}
    assert circles(ring) == [["a", "b", "c"]]
    assert cycle_path(["a", "b", "c"], ring) == "a -> b -> c -> a"


def module_edges():
    """{(module, module): [lines]} between modules of the same unit (cosinegate.pipeline.deploy -> .stages)."""
    edges = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for line, name in imported_modules(path):
            if name != source and unit_of(name) == unit_of(source):
                edges.setdefault((source, name), []).append(line)
    return edges


def test_no_circle_of_imports_between_modules_of_a_unit():
    """Review finding: pipeline.deploy <-> pipeline.ort_target and pipeline.bundle <-> pipeline.int8_check imported each
    other inside functions, which the unit-level check cannot see."""
    edges = module_edges()
    assert ("cosinegate.pipeline.deploy", "cosinegate.pipeline.stages") in edges  # the check reads modules, not units
    found = [cycle_path(group, edges) for group in circles(edges)]
    assert found == [], "\n".join(found)
