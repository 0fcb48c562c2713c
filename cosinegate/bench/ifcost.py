"""What a conditional costs: If chains around trivial branches and the model's own blocks, timed plain and
wrapped, and the rule that keeps plain a dynamic block whose expected saving is below its If cost.

- ``trivial_if_chain``: K chained ``If`` nodes, each with its own data-dependent condition (a mean over the
  tensor, as a gate's pooling) around an Identity / Neg pair, at the model's input size. The cost per
  conditional is the least-squares slope of the median latency over K = 0, 1, 3, 9.
- Per gated block of a real model: the block alone, plain (flat twin) and inside its ``If`` with the gate
  forced on (conditional-all graph); the difference is that block's If cost. Given ``native`` (ONNX Runtime:
  the form that runtime deploys, cosinegate.onnx.ort_native), the cost is instead the whole gate-free network
  timed beside the same network with that block alone gated in its native ``If``, gate forced on: its gate
  head, the If and whatever the runtime loses around it.
- Break-even: a block skipped at rate s saves s x latency per image and pays its If cost always, so skipping
  pays when latency > cost / s.

The table (``cosinegate bench --if-cost --json FILE``) is read back by ``--policy auto --if-cost-table FILE``.
"""

import numpy as np

from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import block_kinds
from cosinegate.onnx.costtable import TABLE_FORMAT, load_table

IF_COUNTS = (0, 1, 3, 9)
STATIC_VERDICT = {"always_run": "plain (always run)", "always_skipped": "removed (always skipped)"}


def trivial_if_chain(input_shape, count, opset):
    """ONNX model: ``input`` [1, *input_shape] through ``count`` chained If nodes to ``output``."""
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, *input_shape]
    nodes, inits = [], [numpy_helper.from_array(np.array(-1e30, np.float32), "threshold")] if count else []
    x = "input"
    for i in range(count):
        mean, cond, y = f"if{i}/mean", f"if{i}/cond", f"if{i}/out"
        nodes += [helper.make_node("ReduceMean", [x], [mean], name=mean, keepdims=0),
                  helper.make_node("Greater", [mean, "threshold"], [cond], name=cond)]
        then = helper.make_graph([helper.make_node("Identity", [x], [f"{y}/then"], name=f"{y}/then")], f"if{i}_then", [],
                                 [helper.make_tensor_value_info(f"{y}/then", TensorProto.FLOAT, shape)])
        other = helper.make_graph([helper.make_node("Neg", [x], [f"{y}/else"], name=f"{y}/else")], f"if{i}_else", [],
                                  [helper.make_tensor_value_info(f"{y}/else", TensorProto.FLOAT, shape)])
        nodes.append(helper.make_node("If", [cond], [y], name=f"if{i}", then_branch=then, else_branch=other))
        x = y
    nodes.append(helper.make_node("Identity", [x], ["output"], name="output"))
    graph = helper.make_graph(nodes, f"if_chain_{count}", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def cost_per_if(counts, latencies_us):
    """Least-squares slope of latency (us) over the number of If nodes."""
    return float(np.polyfit(np.asarray(counts, np.float64), np.asarray(latencies_us, np.float64), 1)[0])


def break_even_us(cost_us, skip_rate):
    """Block latency above which skipping at ``skip_rate`` pays for the If (inf when never skipped)."""
    return float("inf") if skip_rate <= 0 else cost_us / skip_rate


def measure_if_cost(make_runner, flat, conditional_all, skip_rates, kinds, warmup=20, iterations=300, rounds=5, counts=IF_COUNTS,
                    progress=None, native=None):
    """The cost table of one model on one backend.

    make_runner(onnx ModelProto) -> object with run(x); flat / conditional_all: the model's flat twin and its
    conditional-all graph (every gated block in an If); skip_rates / kinds: per block (policy-auto kinds);
    native: None (the portable If around the block alone), or native(index) -> (gate-free graph, graph with
    block ``index`` alone in its If) in the runtime's own form, timed whole."""
    from cosinegate.bench.backends import time_interleaved
    from cosinegate.bench.graphs import block_subgraph, forced_on_model
    from cosinegate.onnx.export import get_metadata

    input_dims = [d.dim_value for d in flat.graph.input[0].type.tensor_type.shape.dim]
    if input_dims[0] != 1:
        raise CosineGateError(f"--if-cost measures batch 1 (an If condition is one scalar); the graph has batch {input_dims[0]}.")
    opset = max(o.version for o in flat.opset_import if o.domain in ("", "ai.onnx"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(input_dims, dtype=np.float32)
    chains = {f"K={k}": make_runner(trivial_if_chain(input_dims[1:], k, opset)) for k in counts}
    walls = time_interleaved(chains, [x], warmup, iterations, None, rounds)
    chain_us = [1e3 * float(np.median(walls[f"K={k}"])) for k in counts]
    forced = forced_on_model(conditional_all)
    meta = get_metadata(flat)
    gated = [i for i, kind in enumerate(block_kinds(meta)) if kind == "gated"]
    blocks = []
    for i in gated:
        plain = block_subgraph(flat, i)
        dims = [d.dim_value for d in plain.graph.input[0].type.tensor_type.shape.dim]
        feed = [rng.standard_normal(dims, dtype=np.float32)]
        if native is None:
            w = time_interleaved({"plain": make_runner(plain), "if": make_runner(block_subgraph(forced, i))}, feed, warmup,
                                 iterations, None, rounds)
            plain_us, if_us = (1e3 * float(np.median(w[k])) for k in ("plain", "if"))
            cost_us = if_us - plain_us
        else:
            base, wrapped = native(i)
            plain_us = 1e3 * float(np.median(time_interleaved({"plain": make_runner(plain)}, feed, warmup, iterations, None,
                                                               rounds)["plain"]))
            w = time_interleaved({"base": make_runner(base), "if": make_runner(forced_on_model(wrapped))}, [x], warmup,
                                 iterations, None, rounds)
            cost_us = 1e3 * (float(np.median(w["if"])) - float(np.median(w["base"])))
        s = float(skip_rates[i]) if skip_rates is not None else None
        blocks.append(block_row(i, kinds[i], s, plain_us, cost_us))
        if progress:
            progress(i)
    trivial = cost_per_if(counts, chain_us)
    return {"format": TABLE_FORMAT, "backbone": meta.get("backbone"), "input_shape": input_dims, "num_blocks": len(meta["blocks"]),
            "if_form": "portable" if native is None else "runtime-native",
            "if_counts": list(counts), "chain_latency_us": chain_us, "trivial_cost_per_if_us": trivial,
            "break_even_us": {str(s): break_even_us(trivial, s) for s in (1.0, 0.5, 0.25, 0.1)},
            "real_block": blocks[0] if blocks else None, "blocks": blocks}


def block_row(index, kind, skip_rate, latency_us, if_cost_us):
    """One dynamic-or-not block of the cost table with its verdict under the break-even rule."""
    row = {"block": index, "kind": kind, "skip_rate": skip_rate, "latency_us": latency_us, "if_cost_us": if_cost_us}
    if kind != "dynamic":
        row["verdict"] = STATIC_VERDICT.get(kind, kind)
    if skip_rate is not None:
        row["expected_saving_us"] = skip_rate * latency_us
        row["break_even_us"] = break_even_us(if_cost_us, skip_rate)
        row.setdefault("verdict", "conditional" if row["expected_saving_us"] > if_cost_us else "plain")
    return row


def block_rows(path, skip_rates, kinds):
    """The table's rows at ``path`` re-judged at the skip rates measured now (``kinds``: the graph's block kinds, or
    None for the table's own)."""
    table = load_table(path)
    if table.get("num_blocks") != len(skip_rates):
        raise CosineGateError(f"the If cost table {path} has {table.get('num_blocks')} blocks, this model {len(skip_rates)}; "
                              "measure this model: cosinegate bench --if-cost --checkpoint CKPT --json FILE.")
    return [block_row(r["block"], kinds[r["block"]] if kinds else r.get("kind"), float(skip_rates[r["block"]]),
                      r["latency_us"], r["if_cost_us"]) for r in table["blocks"] if 0 <= r["block"] < len(skip_rates)]


def model_graphs(checkpoint=None, flat_onnx=None, opset=None):
    """(flat twin, conditional-all graph, per-block skip rates or None, policy-auto kinds) of the model measured.

    From a checkpoint (exported here) or from a flat twin ONNX (a bundle's model.flat.onnx; skip rates from
    its ``.json`` manifest when that names this graph)."""
    from cosinegate.onnx import conditionalize, load_toolkit_onnx, manifest_skip_rates, resolve_policy
    from cosinegate.onnx.export import DEFAULT_OPSET, get_metadata

    if checkpoint:
        from cosinegate.onnx import build_flat_graph, optimize_flat
        from cosinegate.training.checkpoint import model_from_checkpoint

        model, state = model_from_checkpoint(checkpoint)
        flat = optimize_flat(build_flat_graph(model, 1, opset or DEFAULT_OPSET))
        skip_rates = state.get("skip_rates")
    elif flat_onnx:
        flat = load_toolkit_onnx(flat_onnx)
        if get_metadata(flat).get("form") != "flat":
            raise CosineGateError(f"--if-cost needs the flat twin (model.flat.onnx), {flat_onnx} is "
                                  f"{get_metadata(flat).get('form')}; or pass --checkpoint CKPT.")
        skip_rates = manifest_skip_rates(flat_onnx)
    else:
        raise CosineGateError("--if-cost measures a model's blocks: pass --checkpoint CKPT or --onnx model.flat.onnx.")
    meta = get_metadata(flat)
    if meta.get("mode") == "paper":
        raise CosineGateError("paper-mode gates need F(x) before deciding, so no block is conditional; --if-cost takes a "
                              "predictive checkpoint.")
    kinds = block_kinds(meta)
    auto = resolve_policy(kinds, "auto", skip_rates) if skip_rates is not None else ["dynamic" if k == "gated" else k for k in kinds]
    cond_all = conditionalize(flat, "conditional-all", None)
    return flat, cond_all, skip_rates, auto
