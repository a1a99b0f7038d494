"""embedding_q4gsw's export recipe, as ExecuTorch's own test builds it (needs torch, torchao, executorch).

executorch/backends/webgpu/test/ops/test_embedding_q4gsw.py: torch.manual_seed(seed); an nn.Embedding(vocab, dim)
model quantized by the Llama recipe's EmbeddingQuantHandler (bitwidth 4, group_size, packed, no HQQ), exported
with int64 indices and lowered through the Vulkan partitioner, which fuses quantized_decomposed.embedding_4bit
into et_vk.embedding_q4gsw (and repacks the table to the linear nibble order). The constants read back from the
.pte are cross-checked against the quantized model's state_dict.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from q4gsw.export.pte import DelegateLayoutError
from q4gsw.matrix.values import Config
from q4gsw.ops import inputs
from q4gsw.ops.embedding_q4gsw.indices import make_indices
from q4gsw.ops.embedding_q4gsw.layout import PackedEmbedding, unpack_int4

TORCH_EMBEDDING = "torch_embedding"  # nn.Embedding's own init (N(0, 1)) after torch.manual_seed(weight_seed)


def quantized_model(config: Config) -> Any:
    """The quantized nn.Embedding(K, N) of ExecuTorch's test; other weight patterns (q4gsw.ops.inputs, [rows, dim]
    with groups along dim) replace its weight before quantization."""
    import torch
    from executorch.examples.models.llama.source_transformation.quantize import EmbeddingQuantHandler

    class EmbeddingModel(torch.nn.Module):
        def __init__(self, vocab: int, dim: int) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, dim)

        def forward(self, indices: torch.Tensor) -> torch.Tensor:
            return self.emb(indices)

    vocab, dim, group_size = config.dims["vocab"], config.dims["dim"], config.dims["group_size"]
    torch.manual_seed(config.weight_seed)
    model = EmbeddingModel(vocab, dim).eval()
    if config.weights != TORCH_EMBEDDING:
        with torch.no_grad():
            table = inputs.make_weights(config.weights, vocab, dim, group_size, config.weight_seed)
            model.emb.weight.copy_(torch.from_numpy(table))
            del table
    handler = EmbeddingQuantHandler(model, device="cpu", bitwidth=4, group_size=group_size, packed=True,
                                    quantize_with_hqq=False)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "quantize ..." for every embedding
        return handler.quantized_model().eval()


def export_pte(config: Config) -> tuple[bytes, dict[str, np.ndarray]]:
    """(.pte, the quantized model's weight and scales as numpy)."""
    import torch

    from q4gsw.export.lowering import lower_to_vulkan

    model = quantized_model(config)
    state = {name: tensor.numpy().copy() for name, tensor in model.state_dict().items()}
    indices = make_indices(config.inputs[0], config.dims["tokens"], config.dims["vocab"], config.weight_seed)
    example = torch.from_numpy(indices.astype(np.int64))
    return lower_to_vulkan(model, (example,)), state


def state_tensors(state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The quantized model's packed table (uint8, dim 2j in the high nibble) and scales [vocab, groups]."""
    weight = next(v for k, v in state.items() if k.endswith("weight") and v.dtype == np.uint8)
    scales = next(v for k, v in state.items() if k.endswith("scales"))
    return weight, scales.reshape(weight.shape[0], -1)


def cross_check(table: PackedEmbedding, state: dict[str, np.ndarray], config: Config) -> None:
    """The .pte's nibbles and scales must equal the quantized model's exactly, each read in its own packing."""
    weight, scales = state_tensors(state)
    vocab, dim, group_size = config.dims["vocab"], config.dims["dim"], config.dims["group_size"]
    if table.weight.shape != (vocab, dim // 2):
        raise DelegateLayoutError(f"delegate table shape {table.weight.shape} != {(vocab, dim // 2)}")
    if table.group_size != group_size:
        raise DelegateLayoutError(f"delegate group_size {table.group_size} != config group_size {group_size}")
    if scales.dtype != np.float32 or table.scales.dtype != np.float32:
        raise DelegateLayoutError(f"scales are {scales.dtype} (model) and {table.scales.dtype} (.pte), not float32")
    for r0 in range(0, vocab, 8192):
        r1 = min(r0 + 8192, vocab)
        if not np.array_equal(unpack_int4(table.weight[r0:r1], table.is_linear_weight),
                              unpack_int4(weight[r0:r1], False)):
            raise DelegateLayoutError(f"unpacked int4 rows {r0}..{r1} of the .pte differ from the quantized model's")
    if not np.array_equal(table.scales, scales):
        raise DelegateLayoutError("delegate scales differ from the quantized model's scales")
