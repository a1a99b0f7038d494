"""rope's export recipes (need torch and executorch) and the rows read back from the .pte.

`llama3` tables: the Llama example model's own Rope (examples/models/llama/rope.py) with Llama-3.2-1B's
parameters (head_dim, theta 500000, use_scaled_rope with rope_scale_factor 32, high_freq_factor 4), the KV cache
and dynamic shapes on, as export_llama builds it; one step: freqs = rope.get_freqs(input_pos, S), then
rope(xq, xk, freqs_cos, freqs_sin). The Vulkan partitioner fuses the rotation into et_vk.apply_rotary_emb and
delegates the slice too, so the tables are constants of the .pte and start_pos is a runtime input (input_pos);
`rows_from_pte` reads the tables and takes rows [start_pos, start_pos + S) as the delegate's slice_copy does.

`upstream` tables: ExecuTorch's own test (backends/webgpu/test/ops/test_rope.py) exports RotaryEmbedding() with
the freqs as forward inputs (its ramps); the .pte then holds no tables and the rows are those ramps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from q4gsw.export.pte import DelegateLayoutError
from q4gsw.matrix.values import Config
from q4gsw.ops.rope.tables import (
    DELEGATE_CALLS,
    HIGH_FREQ_FACTOR,
    ROPE_OPERATOR,
    SCALE_FACTOR,
    THETA,
    RopeTables,
)

CONTEXT = 8192  # the tables' rows (max_context_len): the model's own for its 8k configs; rows do not depend on it


def llama_rope_step(seq: int, heads: int, head_dim: int, start_pos: int) -> Any:
    """The Llama model's Rope with Llama-3.2-1B's frequencies, as one decode/prefill step's module; its tables hold
    max(CONTEXT, 2 (start_pos + seq)) rows: the step's slice is never most of the table (torch.export's narrow with
    the data-dependent start fails on a GuardOnDataDependentSymNode where the slice is the whole table, or 8192 of
    8193 rows; at one row of one it drops the slice and binds the table)."""
    import torch
    from executorch.examples.models.llama.model_args import ModelArgs
    from executorch.examples.models.llama.rope import Rope

    context = max(CONTEXT, 2 * (start_pos + seq))
    args = ModelArgs(dim=heads * head_dim, n_heads=heads, n_kv_heads=heads, head_dim=head_dim, rope_theta=THETA,
                     use_scaled_rope=True, rope_scale_factor=SCALE_FACTOR, high_freq_factor=HIGH_FREQ_FACTOR,
                     max_context_len=context, max_seq_len=context, use_kv_cache=True,
                     enable_dynamic_shape=True)

    class RopeStep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rope = Rope(args)

        def forward(self, xq: Any, xk: Any, input_pos: Any) -> Any:
            freqs_cos, freqs_sin = self.rope.get_freqs(input_pos, xq.shape[1])
            return self.rope(xq, xk, freqs_cos, freqs_sin)

    return RopeStep().eval()


def export_pte(config: Config) -> tuple[bytes, tuple[np.ndarray, np.ndarray]]:
    """The .pte of one step of the Llama Rope (xq and xk both [1, S, heads, head_dim]) and the model's own fp32
    tables (its buffers), to cross-check the .pte's with."""
    import torch

    from q4gsw.export.lowering import lower_to_vulkan
    seq, heads, head_dim, start_pos = (config.dims[k] for k in ("seq", "heads", "head_dim", "start_pos"))
    module = llama_rope_step(seq, heads, head_dim, start_pos)
    x = torch.zeros(1, seq, heads, head_dim, dtype=torch.float32)
    pte = lower_to_vulkan(module, (x, x.clone(), torch.tensor([start_pos], dtype=torch.long)))
    return pte, (module.rope.freqs_cos.numpy().copy(), module.rope.freqs_sin.numpy().copy())


def export_upstream_pte(config: Config) -> bytes:
    """test_rope.py's export: RotaryEmbedding() with (xq, xk, freqs_cos, freqs_sin) all forward inputs."""
    import torch
    from executorch.examples.models.llama.rope import RotaryEmbedding

    from q4gsw.export.lowering import lower_to_vulkan
    seq, heads, head_dim = (config.dims[k] for k in ("seq", "heads", "head_dim"))
    x = torch.zeros(1, seq, heads, head_dim, dtype=torch.float32)
    freqs = torch.zeros(seq, head_dim // 2, dtype=torch.float32)
    return lower_to_vulkan(RotaryEmbedding().eval(), (x, x.clone(), freqs, freqs.clone()))


def _int(delegate: Any, arg: int) -> int:
    """An Int argument's value (VkGraph's Int holds int_val; a SymInt, a runtime value, has none)."""
    value = getattr(delegate.value(arg), "int_val", None)
    if not isinstance(value, int):
        raise DelegateLayoutError(f"argument {arg} is a {type(delegate.value(arg)).__name__}, expected an Int")
    return value


def _check_rotation_args(delegate: Any, args: list[int], config: Config) -> None:
    seq, heads, head_dim = (config.dims[k] for k in ("seq", "heads", "head_dim"))
    if len(args) != 5:
        raise DelegateLayoutError(f"{ROPE_OPERATOR} has {len(args)} arguments, expected 5 (xq, xk, freqs_cos, "
                                  "freqs_sin, outputs)")
    xq = [int(d) for d in delegate.value(args[0]).dims]
    freqs = [[int(d) for d in delegate.value(a).dims] for a in args[2:4]]
    if xq != [1, seq, heads, head_dim] or freqs != [[seq, head_dim // 2]] * 2:
        raise DelegateLayoutError(f"{ROPE_OPERATOR} binds xq {xq} and freqs {freqs}; config '{config.name}' has "
                                  f"[1, {seq}, {heads}, {head_dim}] and [{seq}, {head_dim // 2}]")


def rows_from_pte(pte: bytes, config: Config) -> RopeTables:
    """The rows et_vk.apply_rotary_emb binds: the delegate's constant tables (prepacked, then sliced along dim 0
    from start_pos = input_pos to start_pos + S with step 1, checked here) at the config's start_pos."""
    from q4gsw.export.pte import read_delegate

    delegate = read_delegate(pte)
    chain = list(delegate.graph.chain)
    args = delegate.args(ROPE_OPERATOR, DELEGATE_CALLS)
    _check_rotation_args(delegate, args, config)
    seq, start_pos = config.dims["seq"], config.dims["start_pos"]
    producer = {c.args[-1]: c for c in chain}  # each call's last argument is its output
    tables = []
    for freqs_arg in args[2:4]:
        sliced = producer[freqs_arg]
        if sliced.name != "aten.slice_copy.Tensor" or _int(delegate, sliced.args[1]) != 0 or \
                _int(delegate, sliced.args[4]) != 1:
            raise DelegateLayoutError(f"freqs argument {freqs_arg} is not a step-1 slice along dim 0 ({sliced.name})")
        start, end = sliced.args[2], sliced.args[3]
        select, add = producer[start], producer[end]
        if select.name != "et_vk.select_as_symint.default" or add.name != "add" or add.args[0] != start or \
                _int(delegate, add.args[1]) != seq:
            raise DelegateLayoutError("the freqs slice does not run from input_pos to input_pos + S")
        prepack = producer[sliced.args[0]]
        if prepack.name != "et_vk.prepack.default":
            raise DelegateLayoutError(f"the sliced table comes from {prepack.name}, not a prepacked constant")
        table = delegate.constant(prepack.args[0], "<f4")
        if table.ndim != 2 or table.shape[0] < start_pos + seq:
            raise DelegateLayoutError(f"table of shape {table.shape} has no rows [{start_pos}, {start_pos + seq})")
        tables.append(table[start_pos:start_pos + seq].copy())
    return RopeTables(cos=tables[0], sin=tables[1], start_pos=start_pos)


def check_upstream_pte(pte: bytes, config: Config) -> None:
    """test_rope.py's .pte: the delegate runs et_vk.apply_rotary_emb alone, its freqs graph inputs."""
    from q4gsw.export.pte import read_delegate

    delegate = read_delegate(pte)
    args = delegate.args(ROPE_OPERATOR)
    _check_rotation_args(delegate, args, config)
    constant = [a for a in args[2:4] if delegate.value(a).constant_id >= 0]
    if constant:
        raise DelegateLayoutError(f"freqs arguments {constant} are constants; test_rope.py passes them as inputs")


def cross_check(rows: RopeTables, model_tables: tuple[np.ndarray, np.ndarray], config: Config) -> None:
    """The .pte's rows must be the model's own fp32 table rows, bit for bit."""
    start, end = config.dims["start_pos"], config.dims["start_pos"] + config.dims["seq"]
    for name, got, table in (("cos", rows.cos, model_tables[0]), ("sin", rows.sin, model_tables[1])):
        if table.dtype != np.float32 or not np.array_equal(got.view(np.uint32), table[start:end].view(np.uint32)):
            raise DelegateLayoutError(f"the .pte's freqs_{name} rows [{start}, {end}) differ from the Llama Rope's "
                                      "own table")
