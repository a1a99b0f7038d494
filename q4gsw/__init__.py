"""q4gsw: a declarative accuracy test matrix for ExecuTorch's quantized ops as WGSL kernels on WebGPU.

The package reads top-down as the pipeline: matrix -> ops / export -> webgpu -> case -> run -> report / drift,
with the commands over it (docs/architecture.md).
"""

__version__ = "0.1.0"
