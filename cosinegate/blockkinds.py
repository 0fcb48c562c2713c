"""Block classes from held-out skip rates: always run, always skipped, or dynamic.

Torch-free: ``--policy auto`` decides with them when exporting, and ``cosinegate bench --if-cost --onnx`` on the device.
"""

ALWAYS_SKIPPED = 0.995  # skip rate at or above: the block is statically pruned in effect
ALWAYS_RUN = 0.005  # skip rate at or below: the block is static, always executed


def block_classes(skip_rates):
    """'always_skipped', 'always_run' or 'dynamic' per block."""
    return [
        "always_skipped" if s >= ALWAYS_SKIPPED else "always_run" if s <= ALWAYS_RUN else "dynamic" for s in skip_rates
    ]
