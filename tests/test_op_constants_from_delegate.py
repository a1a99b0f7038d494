"""Each op's reading of its constants out of a .pte's Vulkan delegate, offline: a fake delegate (the three
calls q4gsw.export.pte.DelegateGraph offers: args, value, constant) stands in for an exported .pte, so which
argument is the weight, the scales, the group size or the packing flag, and every layout check, are pinned
without torch or ExecuTorch (the e2e tests of each op read real exports).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from q4gsw.export import pte
from q4gsw.export.pte import DelegateLayoutError
from q4gsw.ops.embedding_q4gsw.layout import EMBEDDING_OPERATOR
from q4gsw.ops.embedding_q4gsw.layout import packed_from_delegate as embedding_from_delegate
from q4gsw.ops.linear_q4gsw.layout import Q4GSW_OPERATOR, DelegateCall, tiny_problem
from q4gsw.ops.linear_q4gsw.layout import packed_from_delegate as linear_from_delegate
from q4gsw.ops.linear_qcs4w.layout import QCS4W_OPERATOR, constants_from_delegate

PTE = b"not read: the fake delegate stands in for it"


class FakeDelegate:
    """A delegate whose call `operator` (of the chain `calls`) has `args`; `values` are scalars/tensor metadata
    and `constants` the constant tensors (with the dtype each must be read as), by argument id."""

    def __init__(self, operator: str, args: list[int], values: dict[int, Any],
                 constants: dict[int, tuple[str, np.ndarray]], calls: tuple[str, ...] = ()) -> None:
        self.operator, self.calls, self.arg_ids = operator, calls, args
        self.values, self.constants = values, constants

    def args(self, operator: str, calls: tuple[str, ...] = ()) -> list[int]:
        assert (operator, calls) == (self.operator, self.calls), f"asked for {operator} of {calls}"
        return list(self.arg_ids)

    def value(self, arg: int) -> Any:
        return self.values[arg]

    def constant(self, arg: int, dtype: str) -> np.ndarray:
        wanted, array = self.constants[arg]
        assert dtype == wanted, f"argument {arg} read as {dtype}, stored as {wanted}"
        return array


def use(monkeypatch: pytest.MonkeyPatch, delegate: FakeDelegate) -> None:
    def read(data: bytes) -> FakeDelegate:
        assert data is PTE
        return delegate

    monkeypatch.setattr(pte, "read_delegate", read)


# ------------------------------------------------------------------------------------------------
# embedding_q4gsw: args (weight, scales, group_size, indices, is_linear_weight, out)
# ------------------------------------------------------------------------------------------------

EMB_WEIGHT = np.arange(12, dtype=np.uint8).reshape(3, 4)  # vocab 3, dim 8
EMB_SCALES = np.float32([[0.5, 0.25], [1.0, 2.0], [4.0, 8.0]])  # group size 4


def embedding_delegate(flag: Any, args: list[int] | None = None, weight: np.ndarray = EMB_WEIGHT,
                       scales: np.ndarray = EMB_SCALES) -> FakeDelegate:
    return FakeDelegate(EMBEDDING_OPERATOR, [20, 21, 22, 23, 24, 25] if args is None else args,
                        {22: SimpleNamespace(int_val=4), 24: flag},
                        {20: ("uint8", weight), 21: ("<f4", scales)})


@pytest.mark.parametrize("flag, expected", [(SimpleNamespace(bool_val=True), True),
                                            (SimpleNamespace(bool_val=False), False),
                                            (SimpleNamespace(int_val=1), True), (SimpleNamespace(int_val=0), False)])
def test_embedding_table_is_read_from_its_arguments(monkeypatch, flag, expected):
    use(monkeypatch, embedding_delegate(flag))
    table = embedding_from_delegate(PTE)
    assert table.weight is EMB_WEIGHT and table.scales is EMB_SCALES
    assert table.group_size == 4 and type(table.group_size) is int
    assert table.is_linear_weight is expected


def test_embedding_call_with_another_argument_count_is_refused(monkeypatch):
    use(monkeypatch, embedding_delegate(SimpleNamespace(bool_val=True), args=[20, 21, 22, 23, 24]))
    with pytest.raises(DelegateLayoutError) as raised:
        embedding_from_delegate(PTE)
    assert str(raised.value) == (f"{EMBEDDING_OPERATOR} has 5 arguments, expected 6 (weight, scales, group_size, "
                                 "indices, is_linear_weight, out)")


@pytest.mark.parametrize("weight, scales", [
    (np.arange(3, dtype=np.uint8), EMB_SCALES),  # weight not 2-D (though one entry per scale row)
    (EMB_WEIGHT, EMB_SCALES.reshape(-1)),  # scales not 2-D
    (EMB_WEIGHT, EMB_SCALES[:2]),  # a scale row fewer than the table's rows
])
def test_embedding_tensors_of_the_wrong_shape_are_refused(monkeypatch, weight, scales):
    use(monkeypatch, embedding_delegate(SimpleNamespace(bool_val=True), weight=weight, scales=scales))
    with pytest.raises(DelegateLayoutError) as raised:
        embedding_from_delegate(PTE)
    assert str(raised.value) == (f"weight {weight.shape} and scales {scales.shape} are not [vocab, dim/2] and "
                                 "[vocab, groups]")


# ------------------------------------------------------------------------------------------------
# linear_q4gsw: args (input, weights, scales, group_size, bias, output), or another op's DelegateCall
# ------------------------------------------------------------------------------------------------

LIN_WEIGHT = np.full((8, 4), 0x88, dtype=np.uint8)
LIN_SCALES = np.float32([[1.0] * 8, [2.0] * 8])


def test_linear_constants_come_from_the_weight_scales_and_group_size_arguments(monkeypatch):
    use(monkeypatch, FakeDelegate(Q4GSW_OPERATOR, [30, 31, 32, 33, 34, 35], {33: SimpleNamespace(int_val=4)},
                                  {31: ("uint8", LIN_WEIGHT), 32: ("<f4", LIN_SCALES)}, calls=(Q4GSW_OPERATOR,)))
    packed = linear_from_delegate(PTE)
    assert packed.weight_packed is LIN_WEIGHT and packed.scales is LIN_SCALES
    assert packed.group_size == 4 and type(packed.group_size) is int


def test_linear_constants_follow_another_calls_argument_positions(monkeypatch):
    call = DelegateCall(operator="et_vk.other.default", calls=("et_vk.first.default", "et_vk.other.default"),
                        weight_arg=3, scales_arg=0, group_size_arg=5)
    use(monkeypatch, FakeDelegate(call.operator, [40, 41, 42, 43, 44, 45], {45: SimpleNamespace(int_val=2)},
                                  {43: ("uint8", LIN_WEIGHT), 40: ("<f4", LIN_SCALES)}, calls=call.calls))
    packed = linear_from_delegate(PTE, call)
    assert packed.weight_packed is LIN_WEIGHT and packed.scales is LIN_SCALES and packed.group_size == 2


def test_tiny_problem_is_a_zero_input_and_zero_weights_of_one_group():
    x, tiny = tiny_problem()
    assert x.shape == (1, 8) and x.dtype == np.float32 and not x.any()
    assert tiny.weight_packed.shape == (8, 4) and tiny.weight_packed.dtype == np.uint8
    assert (tiny.weight_packed == 0x88).all()  # nibble 8 is the value 0
    assert tiny.scales.shape == (1, 8) and tiny.scales.dtype == np.float32 and (tiny.scales == 1).all()
    assert tiny.group_size == 8 and tiny.N == 8 and tiny.K == 8


# ------------------------------------------------------------------------------------------------
# linear_qcs4w: args (input, weight, scales, output); K from the input's dims
# ------------------------------------------------------------------------------------------------


def qcs4w_delegate(K: int, weight: np.ndarray, scales: np.ndarray, args: list[int] | None = None) -> FakeDelegate:
    return FakeDelegate(QCS4W_OPERATOR, [50, 51, 52, 53] if args is None else args,
                        {50: SimpleNamespace(dims=[2, 3, K])}, {51: ("uint8", weight), 52: ("<f4", scales)})


def test_qcs4w_constants_and_k_from_the_input_dims(monkeypatch):
    weight, scales = np.zeros((6, 3), dtype=np.uint8), np.float32([1, 2, 3, 4, 5, 6])
    use(monkeypatch, qcs4w_delegate(5, weight, scales))  # odd K = 5: three bytes per row
    constants = constants_from_delegate(PTE)
    assert constants.weight_packed is weight and constants.scales is scales
    assert constants.K == 5 and type(constants.K) is int


def test_qcs4w_call_with_another_argument_count_is_refused(monkeypatch):
    use(monkeypatch, qcs4w_delegate(4, np.zeros((2, 2), np.uint8), np.float32([1, 2]), args=[50, 51, 52]))
    with pytest.raises(DelegateLayoutError) as raised:
        constants_from_delegate(PTE)
    assert str(raised.value) == f"{QCS4W_OPERATOR} has 3 arguments, expected 4 (input, weight, scales, output)"


@pytest.mark.parametrize("K, weight, message", [
    (6, np.zeros((2, 4), np.uint8), "packed weight of shape (2, 4) for K=6: expected [N, 3]"),
    (5, np.zeros((2, 2), np.uint8), "packed weight of shape (2, 2) for K=5: expected [N, 3]"),
    (4, np.zeros(4, np.uint8), "packed weight of shape (4,) for K=4: expected [N, 2]"),
])
def test_qcs4w_weight_not_holding_k_is_refused(monkeypatch, K, weight, message):
    use(monkeypatch, qcs4w_delegate(K, weight, np.float32([1, 2])))
    with pytest.raises(DelegateLayoutError) as raised:
        constants_from_delegate(PTE)
    assert str(raised.value) == message


def test_qcs4w_scales_not_one_per_channel_are_refused(monkeypatch):
    use(monkeypatch, qcs4w_delegate(6, np.zeros((2, 3), np.uint8), np.float32([[1, 2]])))
    with pytest.raises(DelegateLayoutError) as raised:
        constants_from_delegate(PTE)
    assert str(raised.value) == "scales of shape (1, 2): expected one per output channel, (2,)"


# ------------------------------------------------------------------------------------------------
# rms_norm: args (input, weight, eps, output); eps a Double
# ------------------------------------------------------------------------------------------------


class Double(SimpleNamespace):
    """The name the delegate's scalar type has for a double (rms_norm checks it by name)."""


def test_rms_norm_weight_and_eps_are_read_from_their_arguments(monkeypatch):
    from q4gsw.ops.rms_norm.layout import RMS_NORM_OPERATOR, NormWeights
    from q4gsw.ops.rms_norm.layout import constants_from_delegate as rms_from_delegate

    weight = np.array([0.5, 1.5, -2.0], dtype="<f4")
    use(monkeypatch, FakeDelegate(RMS_NORM_OPERATOR, [30, 31, 32, 33], {32: Double(double_val=1e-6)},
                                  {31: ("<f4", weight)}))
    read = rms_from_delegate(PTE)
    assert isinstance(read, NormWeights) and read.weight.dtype == np.float32
    assert read.weight.tolist() == [0.5, 1.5, -2.0] and read.eps == 1e-6 and type(read.eps) is float
    assert read.width == 3 and type(read.width) is int


@pytest.mark.parametrize("args, values, constants, says", [
    ([30, 31, 32], {32: Double(double_val=1e-6)}, {31: ("<f4", np.zeros(3, "<f4"))},
     "et_vk.rms_norm.default has 3 arguments, expected [input, weight, eps, output]"),
    ([30, 31, 32, 33], {32: SimpleNamespace(double_val=1e-6)}, {31: ("<f4", np.zeros(3, "<f4"))},
     "et_vk.rms_norm.default: weight dims [3], eps a SimpleNamespace; expected a 1-D weight and a Double eps"),
    ([30, 31, 32, 33], {32: Double(double_val=1e-6)}, {31: ("<f4", np.zeros((2, 3), "<f4"))},
     "et_vk.rms_norm.default: weight dims [2, 3], eps a Double; expected a 1-D weight and a Double eps"),
], ids=["three-arguments", "eps-not-a-double", "weight-2d"])
def test_rms_norm_refuses_another_layout_with_its_whole_message(monkeypatch, args, values, constants, says):
    from q4gsw.ops.rms_norm.layout import RMS_NORM_OPERATOR
    from q4gsw.ops.rms_norm.layout import constants_from_delegate as rms_from_delegate

    use(monkeypatch, FakeDelegate(RMS_NORM_OPERATOR, args, values, constants))
    with pytest.raises(DelegateLayoutError) as raised:
        rms_from_delegate(PTE)
    assert str(raised.value) == says
