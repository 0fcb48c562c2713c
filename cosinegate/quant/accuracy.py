"""FP32 vs INT8 (explicit Q/DQ) accuracy on ONNX Runtime, per calibration method.

Both sides run the masked form of the flat twin (any batch; each dynamic block
selected per sample with y = post(s + g * F)), which computes the same function
as the conditional (`If`) graph, batched. The default policy `conditional-all`
keeps every gated block dynamic, so every gate decision is compared.
"""

import numpy as np

from cosinegate.onnx import mask
from cosinegate.quant.calibrate import collect_ranges, flat_twin, onnxrt_runner, quantize_flat, quantized_tensors
from cosinegate.quant.calibset import check_image_array, to_input


def _run(make_graph, images, batch, normalization):
    """(logits, gates) of uint8 images through graphs built per batch size by make_graph(n)."""
    runners, logits, gates = {}, [], []
    for start in range(0, len(images), batch):
        chunk = to_input(images[start : start + batch], normalization)
        n = len(chunk)
        if n not in runners:
            runners[n] = onnxrt_runner(make_graph(n))
        outputs = runners[n].infer({"input": chunk})
        logits.append(outputs["logits"])
        gates.append(outputs["gates"])
    return np.concatenate(logits), np.concatenate(gates)


def compare(fp32, int8, labels):
    """Metrics of one INT8 run against the FP32 run: (logits, gates) pairs."""
    (lf, gf), (lq, gq) = fp32, int8
    pf, pq = lf.argmax(1), lq.argmax(1)
    norms = np.linalg.norm(lf, axis=1) * np.linalg.norm(lq, axis=1)
    cosine = np.sum(lf * lq, axis=1) / np.maximum(norms, 1e-12)
    gate_agreement = [float(np.mean(gf[:, b] == gq[:, b])) for b in range(gf.shape[1])]
    return {
        "top1_fp32": float(np.mean(pf == labels)),
        "top1_int8": float(np.mean(pq == labels)),
        "top1_drop_pp": float(100.0 * (np.mean(pf == labels) - np.mean(pq == labels))),
        "top1_agreement": float(np.mean(pf == pq)),
        "gate_agreement": gate_agreement,
        "gate_agreement_min": float(min(gate_agreement)) if gate_agreement else 1.0,
        "gate_rate_fp32": [float(v) for v in gf.mean(0)],
        "gate_rate_int8": [float(v) for v in gq.mean(0)],
        "logits_cosine_mean": float(cosine.mean()),
        "logits_cosine_min": float(cosine.min()),
    }


def evaluate(model, state, test_images, test_labels, calib_images, methods, policy="conditional-all", batch=100,
             calib_batch=64, percentile=99.99):
    """{"fp32": ..., "methods": {method: metrics, with "amax"}} on the given test images."""
    test_images = check_image_array(test_images, "test data", model.image_size)
    skip_rates = state.get("skip_rates")
    fp32 = _run(lambda n: mask(flat_twin(model, n), policy, skip_rates), test_images, batch, model.normalization)
    tensors = quantized_tensors(flat_twin(model, 1))
    report = {"num_images": int(len(test_labels)), "policy": policy, "methods": {}}
    for method in methods:
        amax = collect_ranges(model, calib_images, method, calib_batch, percentile, tensors=tensors)
        int8 = _run(lambda n: mask(quantize_flat(flat_twin(model, n), amax), policy, skip_rates), test_images, batch, model.normalization)
        report["methods"][method] = compare(fp32, int8, np.asarray(test_labels))
    return report


def evaluate_checkpoint(checkpoint, methods, data=None, data_root=None, image_size=None, calib_images=512, seed=0,
                        policy="conditional-all", test_images=None, batch=100, calib_batch=64, percentile=99.99):
    """`evaluate` on the checkpoint's own data (unless `data`/`data_root` say otherwise): ranges from a class-balanced
    sample of `calib_images` training images (`seed`), the first `test_images` test images (None: all); the report
    names the checkpoint, the data and the calibration sample."""
    from cosinegate.data.choice import DataOrigin, choose_data
    from cosinegate.errors import CosineGateError
    from cosinegate.quant.calibrate import check_method
    from cosinegate.quant.calibset import select
    from cosinegate.training.checkpoint import model_from_checkpoint

    if not methods:
        raise CosineGateError("--methods is empty; pass e.g. minmax,entropy,percentile.")
    if test_images is not None and test_images < 1:
        raise CosineGateError(f"--test-images must be at least 1, got {test_images}.")
    for method in methods:
        check_method(method)
    model, state = model_from_checkpoint(checkpoint, image_size=image_size)
    chosen = choose_data(DataOrigin.of_checkpoint(state), data, data_root)
    calib = select(chosen.train, calib_images, seed, chosen.source, None if chosen.root is None else str(chosen.root))
    images, labels = chosen.test.images[:test_images], chosen.test.labels[:test_images]
    report = evaluate(model, state, images, labels, calib.images, methods, policy, batch, calib_batch, percentile)
    report.update(checkpoint=str(checkpoint), data=chosen.record(), calibration_images=len(calib),
                  calibration_ids_sha256=calib.ids_sha256)
    return report


def format_table(report):
    rows = [("method", "top1 fp32", "top1 int8", "drop pp", "top1 agree", "gate agree min", "gate agree mean", "cos mean", "cos min")]
    for method, m in report["methods"].items():
        rows.append((method, f"{100 * m['top1_fp32']:.2f}%", f"{100 * m['top1_int8']:.2f}%", f"{m['top1_drop_pp']:+.2f}",
                     f"{100 * m['top1_agreement']:.2f}%", f"{100 * m['gate_agreement_min']:.2f}%",
                     f"{100 * float(np.mean(m['gate_agreement'])):.2f}%", f"{m['logits_cosine_mean']:.5f}", f"{m['logits_cosine_min']:.4f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for method, m in report["methods"].items():
        lines.append(f"{method} gate agreement per block: " + " ".join(f"{100 * a:.2f}" for a in m["gate_agreement"]))
    return "\n".join(lines)
