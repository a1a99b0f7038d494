"""q4gsw: a declarative accuracy test matrix for ExecuTorch's int4 group-quantized linear on WebGPU.

Pipeline (one module per stage): matrix -> export -> unpack -> golden -> gpu -> compare -> report.
"""

__version__ = "0.1.0"
