import numpy as np
import pytest

from cosinegate.errors import CosineGateError
from cosinegate.quant.ranges import METHODS, RangeCollector, entropy_amax, percentile_amax


def heavy_tailed(rng, size=120_000):
    values = rng.laplace(0.0, 1.0, size)
    values[:30] = rng.choice([-1.0, 1.0], 30) * rng.uniform(40.0, 80.0, 30)
    return rng.permutation(values).reshape(-1, 4, 5, 6).astype(np.float32)


def collect(method, batches_by_tensor, **kwargs):
    """Run both passes over the same batches, as a calibration script would."""
    collector = RangeCollector(method, **kwargs)
    for _ in range(2 if collector.needs_histograms else 1):
        for name, batches in batches_by_tensor.items():
            for batch in batches:
                collector.update(name, batch)
        collector.start_histograms()
    return collector.amax()


def splits(data, rng):
    """The same samples as: one batch, batches of 1, uneven batches, and shuffled batches of 7."""
    cuts = np.sort(rng.choice(np.arange(1, len(data)), size=9, replace=False))
    shuffled = data[rng.permutation(len(data))]
    return [
        [data],
        list(data[:, None]),
        np.split(data, cuts),
        [shuffled[i : i + 7] for i in range(0, len(shuffled), 7)],
    ]


@pytest.mark.parametrize("method", METHODS)
def test_amax_is_exactly_invariant_to_batch_size_and_order(method):
    rng = np.random.default_rng(0)
    data = heavy_tailed(rng)
    relu = np.maximum(rng.normal(size=(800, 3, 4, 4)), 0).astype(np.float32)
    results = [
        collect(method, {"x": x_batches, "relu": relu_batches})
        for x_batches, relu_batches in zip(splits(data, rng), splits(relu, rng))
    ]
    for result in results[1:]:
        assert result == results[0]


def test_minmax_is_max_abs():
    rng = np.random.default_rng(1)
    data = heavy_tailed(rng)
    assert collect("minmax", {"x": [data]})["x"] == float(np.abs(data).max())


def test_entropy_clips_heavy_tail_but_keeps_uniform_range():
    rng = np.random.default_rng(2)
    tailed = heavy_tailed(rng)
    uniform = rng.uniform(-3.0, 3.0, size=(2000, 50)).astype(np.float32)
    amax = collect("entropy", {"tailed": [tailed], "uniform": [uniform]})
    tailed_max, uniform_max = float(np.abs(tailed).max()), float(np.abs(uniform).max())
    assert amax["tailed"] < 0.5 * tailed_max
    assert amax["tailed"] > float(np.percentile(np.abs(tailed), 99))
    assert amax["uniform"] == pytest.approx(uniform_max, rel=0.02)


def test_percentile_matches_numpy_within_one_bin():
    rng = np.random.default_rng(3)
    data = heavy_tailed(rng)
    peak = float(np.abs(data).max())
    amax = collect("percentile", {"x": [data]}, percentile=99.0)["x"]
    exact = float(np.percentile(np.abs(data), 99.0))
    assert exact <= amax <= exact + peak / 2048 + 1e-6


def test_percentile_100_is_max():
    hist = np.array([5, 0, 3, 1, 0, 0, 0, 0])
    edges = np.linspace(0.0, 8.0, 9)
    assert percentile_amax(hist, edges, 100.0) == 4.0


def test_entropy_of_spike_at_max_keeps_everything():
    hist = np.zeros(256, dtype=np.int64)
    hist[-1] = 100
    assert entropy_amax(hist, np.linspace(0.0, 1.0, 257)) == 1.0


def test_unknown_method_names_valid_ones():
    with pytest.raises(CosineGateError, match="minmax, percentile, entropy"):
        RangeCollector("kl")


@pytest.mark.parametrize("kwargs", [{"percentile": 0.0}, {"percentile": 101.0}, {"num_bins": 64}])
def test_bad_parameters_refused(kwargs):
    with pytest.raises(CosineGateError):
        RangeCollector("percentile", **kwargs)


def test_tensor_without_data_refused():
    collector = RangeCollector("minmax")
    collector.update("seen", np.ones(4))
    collector.update("empty", np.zeros((0, 3)))
    with pytest.raises(CosineGateError, match="empty"):
        collector.amax(["seen", "empty"])
    with pytest.raises(CosineGateError, match="no calibration data was collected"):
        RangeCollector("minmax").amax()


def test_tensor_missing_from_histogram_pass_refused():
    collector = RangeCollector("entropy")
    collector.update("a", np.arange(1000.0))
    collector.update("b", np.arange(1000.0))
    collector.start_histograms()
    collector.update("a", np.arange(1000.0))
    with pytest.raises(CosineGateError, match="histogram pass"):
        collector.amax()


def test_new_tensor_in_histogram_pass_refused():
    collector = RangeCollector("percentile")
    collector.update("a", np.ones(10))
    collector.start_histograms()
    with pytest.raises(CosineGateError, match="not in the range pass"):
        collector.update("b", np.ones(10))


def test_all_zero_and_non_finite_tensors_refused():
    collector = RangeCollector("minmax")
    collector.update("dead", np.zeros(10))
    with pytest.raises(CosineGateError, match="all zeros"):
        collector.amax()
    with pytest.raises(CosineGateError, match="NaN or Inf"):
        collector.update("bad", np.array([1.0, np.nan]))
    with pytest.raises(CosineGateError, match="NaN or Inf"):
        collector.update("bad", np.array([1.0, np.inf]))


def test_amax_before_histogram_pass_is_a_programming_error():
    collector = RangeCollector("entropy")
    collector.update("a", np.ones(10))
    with pytest.raises(RuntimeError, match="start_histograms"):
        collector.amax()
