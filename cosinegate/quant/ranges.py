"""Activation range (amax) collection that does not depend on batch size or order.

TensorRT's own calibrators grow their histograms as batches arrive, so the
result depends on how the calibration set is split and ordered. Here:

- ``minmax`` keeps max |x| per tensor; a max is exactly split- and order-invariant.
- ``percentile`` and ``entropy`` use two passes over the same batches. Pass 1
  (``update`` before ``start_histograms``) records max |x| per tensor; that fixes
  each histogram's range to [0, max |x|]. Pass 2 (``update`` after
  ``start_histograms``) adds integer bin counts, and sums of counts do not
  depend on how the data was batched or ordered.
"""

import numpy as np

from cosinegate.errors import CosineGateError
from cosinegate.quant.names import METHODS

# INT8 is symmetric: 127 positive levels plus sign, so 128 quantized bins of |x|.
QUANT_BINS = 128


class RangeCollector:
    """Collects per-tensor amax values with one of `METHODS`.

    Use: ``update`` every batch; if ``needs_histograms``, call
    ``start_histograms()`` and ``update`` the same batches again; then ``amax()``.
    """

    def __init__(self, method, num_bins=2048, percentile=99.99):
        if method not in METHODS:
            raise CosineGateError(
                f"unknown calibration method {method!r}; use one of: {', '.join(METHODS)}."
            )
        if not 0.0 < percentile <= 100.0:
            raise CosineGateError(f"percentile must be in (0, 100], got {percentile}; pass e.g. 99.99.")
        if int(num_bins) < QUANT_BINS:
            raise CosineGateError(f"num_bins must be at least {QUANT_BINS}, got {num_bins}; use the default 2048.")
        self.method = method
        self.num_bins = int(num_bins)
        self.percentile = float(percentile)
        self._absmax = {}
        self._histograms = None

    @property
    def needs_histograms(self):
        """True when a second (histogram) pass over the same batches is required."""
        return self.method != "minmax"

    def start_histograms(self):
        """End pass 1: freeze each tensor's histogram range at [0, max |x|].

        A no-op for ``minmax`` (a single pass) and on repeated calls.
        """
        if self.needs_histograms and self._histograms is None:
            self._histograms = {}

    def update(self, name, array):
        """Add one batch (any batch size) of tensor `name`."""
        values = np.abs(np.asarray(array)).ravel()
        if values.size == 0:
            return
        peak = float(values.max())
        if not np.isfinite(peak):
            raise CosineGateError(
                f"tensor {name!r} has NaN or Inf values in the calibration data; "
                "check the calibration inputs and the FP32 model."
            )
        if self._histograms is None:
            self._absmax[name] = max(self._absmax.get(name, 0.0), peak)
            return
        if name not in self._absmax:
            raise CosineGateError(
                f"tensor {name!r} appeared in the histogram pass but not in the range pass; "
                "feed the same tensors and batches to both passes."
            )
        top = self._absmax[name]
        if top == 0.0:
            return
        # Values above the pass-1 range can only come from different pass-2 data;
        # they are counted in the last bin, like the clipped tail they would be.
        counts, _ = np.histogram(np.minimum(values, top), bins=self.num_bins, range=(0.0, top))
        previous = self._histograms.get(name)
        self._histograms[name] = counts if previous is None else previous + counts

    def amax(self, names=None):
        """{tensor name: amax} for `names` (default: every tensor seen)."""
        wanted = list(self._absmax) if names is None else list(names)
        if not wanted:
            raise CosineGateError("no calibration data was collected; run the calibration batches first.")
        missing = [name for name in wanted if name not in self._absmax]
        if missing:
            raise CosineGateError(
                f"no calibration data for tensor(s) {missing}; "
                "make sure the calibration run exposes them as outputs."
            )
        all_zero = [name for name in wanted if self._absmax[name] == 0.0]
        if all_zero:
            raise CosineGateError(
                f"tensor(s) {all_zero} were all zeros over the calibration data, so no INT8 scale exists; "
                "check the calibration inputs or leave these tensors unquantized."
            )
        if not self.needs_histograms:
            return {name: self._absmax[name] for name in wanted}
        if self._histograms is None:
            raise RuntimeError(f"method {self.method!r} needs start_histograms() and a second pass before amax()")
        no_histogram = [name for name in wanted if name not in self._histograms]
        if no_histogram:
            raise CosineGateError(
                f"tensor(s) {no_histogram} got no data in the histogram pass; "
                "feed the same tensors and batches to both passes."
            )
        result = {}
        for name in wanted:
            edges = np.linspace(0.0, self._absmax[name], self.num_bins + 1)
            hist = self._histograms[name]
            if self.method == "percentile":
                result[name] = percentile_amax(hist, edges, self.percentile)
            else:
                result[name] = entropy_amax(hist, edges)
        return result


def percentile_amax(hist, edges, percentile):
    """Upper edge of the bin where the cumulative count reaches `percentile` %.

    At least `percentile` % of the |x| values are <= the result. (NVIDIA's
    pytorch-quantization `_compute_amax_percentile` returns that bin's lower
    edge instead, which clips one bin more.)
    """
    cumulative = np.cumsum(hist)
    index = int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0, side="left"))
    return float(edges[min(index, len(hist) - 1) + 1])


def entropy_amax(hist, edges, start_bin=QUANT_BINS):
    """amax minimising KL(reference || quantized) over thresholds edges[start_bin:].

    Port of `_compute_amax_entropy` (stride 1) from NVIDIA/TensorRT
    tools/pytorch-quantization/pytorch_quantization/calib/histogram.py, NVIDIA's
    open implementation of the TensorRT entropy calibration idea (Migacz, "8-bit
    Inference with TensorRT", GTC 2017). TensorRT's built-in EntropyCalibration2
    is closed source, so its thresholds are not bit-identical to this one.
    """
    bins = np.asarray(hist, dtype=np.float64).copy()
    bins[0] = bins[1]  # as in the reference: ignore the spike of exact zeros (e.g. after ReLU)
    divergences = []
    for threshold in range(start_bin, len(bins) + 1):
        kept = bins[:threshold]
        reference = kept.copy()
        reference[-1] += bins[threshold:].sum()  # clipped outliers pile up in the last bin
        space = np.linspace(0, threshold, num=QUANT_BINS + 1)
        group = np.digitize(np.arange(threshold), space) - 1
        nonzero = kept != 0
        sums = np.bincount(group[nonzero], weights=kept[nonzero], minlength=QUANT_BINS)
        counts = np.bincount(group[nonzero], minlength=QUANT_BINS)
        means = np.divide(sums, counts, out=np.zeros(QUANT_BINS), where=counts > 0)
        quantized = np.where(nonzero, means[group], 0.0)
        divergences.append(_kl_divergence(reference, quantized))
    divergences = np.asarray(divergences)
    last_argmin = len(divergences) - 1 - int(np.argmin(divergences[::-1]))
    return float(edges[last_argmin + start_bin])


def _kl_divergence(reference, candidate):
    """KL(p || q) of the normalised inputs; inf where q misses mass that p has."""
    p_total, q_total = reference.sum(), candidate.sum()
    if p_total == 0.0 or q_total == 0.0:
        return np.inf
    p, q = reference / p_total, candidate / q_total
    support = p > 0
    if np.any(q[support] == 0.0):
        return np.inf
    return float(np.sum(p[support] * np.log(p[support] / q[support])))
