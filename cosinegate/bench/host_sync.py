"""The PyTorch side of "what a conditional costs": batch 1, the dense network (every block, no gate) eager and
captured in a CUDA graph, against the gated network that decides on the host at each gate (the eager
``GatedBlock`` reads its decision with ``bool(...)``, a device-to-host sync), with every gate as trained and
with every gate forced open. On a CPU it runs the same code without the CUDA graph (a dry run).
"""

import time

import numpy as np
import torch


def dense_forward(model, x):
    """Every block's residual branch run, no gate head computed (the gate-free network)."""
    x = model.stem(x)
    for block in model.blocks:
        s = block.shortcut(x)
        x = block.post(s if block.dropped else s + block.residual(x))
    return model.fc(x.mean(dim=(2, 3)))


def open_gates_forward(model, x):
    """The gated network with each gate's head computed and read on the host, then the block run regardless."""
    x = model.stem(x)
    for block in model.blocks:
        s = block.shortcut(x)
        if block.dropped:
            x = block.post(s)
            continue
        if block.gate is not None:
            logit, _ = block.gate(x)
            bool(block.gate.decide(logit).all())  # the host reads the decision, as the gated forward does
        x = block.post(s + block.residual(x))
    return model.fc(x.mean(dim=(2, 3)))


def gated_forward(model, x):
    return model(x)[0]


def cuda_graph(fn, x):
    """``fn`` captured in a CUDA graph on a static input; returns replay(x) -> output."""
    static_x = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn(static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = fn(static_x)

    def replay(inp):
        static_x.copy_(inp)
        graph.replay()
        return static_y

    return replay


def time_us(fn, inputs, warmup, iterations, cuda):
    """Per-call latency in us (CUDA events around each call on a GPU, host clock on a CPU)."""
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    out = []
    for i in range(iterations):
        x = inputs[i % len(inputs)]
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(x)
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) * 1e3)
        else:
            t0 = time.perf_counter()
            fn(x)
            out.append((time.perf_counter() - t0) * 1e6)
    return out


def measure(model, inputs, warmup=50, iterations=1000):
    """{variant: {p50_us, mean_us}} plus the host-sync cost per gate and the skip rate seen on ``inputs``."""
    cuda = inputs[0].is_cuda
    gates = sum(b.gate is not None for b in model.blocks)
    variants = {"dense eager": lambda x: dense_forward(model, x),
                "gated, host sync per gate": lambda x: gated_forward(model, x),
                "gated, gates forced open": lambda x: open_gates_forward(model, x)}
    if cuda:
        variants["dense CUDA graph"] = cuda_graph(lambda x: dense_forward(model, x), inputs[0])
    rows = {}
    with torch.inference_mode():
        for name, fn in variants.items():
            us = np.asarray(time_us(fn, inputs, warmup, iterations, cuda))
            rows[name] = {"p50_us": float(np.median(us)), "mean_us": float(us.mean())}
        ran = torch.cat([model(x)[1].gates for x in inputs]).cpu().numpy()
    skip = float(1.0 - ran[:, [i for i, b in enumerate(model.blocks) if b.gate is not None]].mean()) if gates else 0.0
    per_gate = (rows["gated, gates forced open"]["p50_us"] - rows["dense eager"]["p50_us"]) / gates if gates else None
    best_dense = min(rows[k]["p50_us"] for k in rows if k.startswith("dense"))
    return {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "gates": gates, "skip_rate": skip,
            "variants": rows, "sync_cost_per_gate_us": per_gate,
            "gated_over_best_dense": rows["gated, host sync per gate"]["p50_us"] / best_dense}


def measure_checkpoint(checkpoint=None, backbone="resnet20", device="cuda", warmup=50, iterations=1000, test_images=64,
                       random_input=False, data=None, data_root=None):
    """`measure` on `checkpoint` (else an untrained predictive `backbone`, speed only) with its first `test_images` test
    images (of its data, at its input size and normalization; `random_input`: random tensors), batch 1 on `device`
    (cpu: a dry run on one thread); the report adds the model, input shape, data and torch version."""
    from cosinegate.data.augment import to_tensor
    from cosinegate.data.choice import DataOrigin, choose_data
    from cosinegate.errors import CosineGateError

    if device == "cuda" and not torch.cuda.is_available():
        raise CosineGateError("no CUDA device here; run on a GPU, or pass --device cpu for a dry run.")
    if iterations < 1 or test_images < 1:
        raise CosineGateError("--iterations and --test-images must be at least 1.")
    if checkpoint:
        from cosinegate.data.normalization import of_checkpoint
        from cosinegate.training.checkpoint import model_from_checkpoint

        model, state = model_from_checkpoint(checkpoint)
        source, normalization, origin = checkpoint, of_checkpoint(state), DataOrigin.of_checkpoint(state)
    else:
        from cosinegate.config import load_config
        from cosinegate.models import build_model

        config = load_config("balanced")["model"]
        model = build_model(dict(config, backbone=backbone, mode="predictive")).eval()
        source, normalization, origin = f"untrained predictive {backbone} (speed only)", None, None
    if device == "cpu":
        torch.set_num_threads(1)  # a dry run: stable, and polite on shared machines
    model = model.to(device).eval()
    size = model.spec.image_size
    if random_input:
        x = torch.randn(test_images, model.spec.in_channels, size, size, generator=torch.Generator().manual_seed(0))
        record = "random (speed only)"
    else:
        if origin is None:  # an untrained network has no data of its own: the given data, else the embedded set
            origin = DataOrigin("synthetic", None, (), size)
        chosen = choose_data(origin, data, data_root)
        x = to_tensor(chosen.test.images[:test_images], "cpu", normalization)
        record = chosen.record()
    x = x.to(device)
    inputs = [x[i : i + 1] for i in range(x.shape[0])]
    report = measure(model, inputs, warmup, iterations)
    report.update(model=str(source), backbone=model.backbone, input=list(inputs[0].shape), data=record,
                  torch=torch.__version__, images=len(inputs))
    return report
