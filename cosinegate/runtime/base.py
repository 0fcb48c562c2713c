"""What the runners share: activation (a context manager), timed ``infer`` and a Polygraphy view."""

import time
from collections import OrderedDict

from cosinegate.lazy import require

POLYGRAPHY_EXTRAS = ("deploy", "device")


class Runner:
    """A backend's runner. Subclasses implement ``_activate``, ``_deactivate``, ``_infer(feed)`` and
    ``input_metadata()``, as Polygraphy's BaseRunner (activate_impl, infer_impl, get_input_metadata_impl).

    After each ``infer``: ``inference_time`` (seconds, host wall time of the backend's call) and ``gpu_ms``
    (device time from CUDA events, TensorRT only; else None)."""

    name = "runner"

    def __init__(self, name=None):
        self.name = name or type(self).name
        self.is_active = False
        self.inference_time = None
        self.gpu_ms = None

    def activate(self):
        """Load the model and allocate what inference needs; returns the runner."""
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self):
        """Free what ``activate`` made."""
        if self.is_active:
            self.is_active = False
            self._deactivate()

    def __enter__(self):
        return self.activate()

    def __exit__(self, exc_type, exc_value, traceback):
        self.deactivate()

    def _activate(self):
        raise NotImplementedError

    def _deactivate(self):
        pass

    def input_metadata(self):
        """{input name: (numpy dtype, shape)} of an active runner."""
        raise NotImplementedError

    @property
    def input_name(self):
        """The first (for the toolkit's graphs: the only) input's name."""
        return next(iter(self.input_metadata()))

    def infer(self, feed):
        """{output name: numpy array} for ``feed`` {input name: numpy array}, in the backend's output order."""
        if not self.is_active:
            raise RuntimeError(f"runner {self.name!r} is not active; use it as `with runner:` or call activate() first")
        start = time.perf_counter()
        outputs = self._infer(feed)
        self.inference_time = time.perf_counter() - start
        return outputs

    def _infer(self, feed):
        raise NotImplementedError

    def polygraphy(self):
        """This runner as a Polygraphy BaseRunner (for ``Comparator.run``); activation, input metadata and
        inference are this runner's."""
        return polygraphy_runner(self)


def polygraphy_runner(runner):
    base = require("polygraphy.backend.base", POLYGRAPHY_EXTRAS, "a Polygraphy comparison")
    common = require("polygraphy.common", POLYGRAPHY_EXTRAS, "a Polygraphy comparison")

    class PolygraphyRunner(base.BaseRunner):
        def __init__(self):
            super().__init__(name=runner.name)
            self.runner = runner

        def activate_impl(self):
            runner.activate()

        def deactivate_impl(self):
            runner.deactivate()

        def get_input_metadata_impl(self):
            meta = common.TensorMetadata()
            for name, (dtype, shape) in runner.input_metadata().items():
                meta.add(name, dtype, shape)
            return meta

        def infer_impl(self, feed_dict):
            outputs = runner.infer(feed_dict)
            self.inference_time = runner.inference_time
            return OrderedDict(outputs)

    return PolygraphyRunner()

