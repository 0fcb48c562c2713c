"""CosineGate edge toolkit: dynamic-routing ResNets from training to TensorRT on Jetson."""

__version__ = "0.1.0"
