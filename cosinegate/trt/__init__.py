"""TensorRT target layer: target profiles, TensorRT version guards, trtexec command lines."""
