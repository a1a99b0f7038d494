"""`python -m q4gsw graph PTE`: the delegate's calls in order and the q4gsw op covering each (issue 31's first step:
a composed run stops on `unsupported: op NAME`, never skips a call in silence)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from q4gsw.commands import graph
from q4gsw.export.pte import Call, CallArg


def tensor(value_id: int, *dims: int, constant: bool = False) -> CallArg:
    return CallArg(value_id, "VkTensor", dims, constant)


def test_each_call_names_its_op_or_says_unsupported() -> None:
    calls = (Call("et_vk.rms_norm.default", (tensor(0, 1, 2048), tensor(1, 2048, constant=True),
                                             CallArg(2, "Double"), tensor(3, 1, 2048))),
             Call("torchao.choose_qparams_affine.default", (tensor(3, 1, 2048),)),
             Call("et_vk.linear_dq8ca_q4gsw.default", (tensor(3, 1, 2048), tensor(4, 512, 1024, constant=True))),
             Call("aten.view_copy.default", (tensor(5, 1, 512), CallArg(6, "IntList"), tensor(7, 1, 8, 64))),
             Call("aten.view_copy.default", (tensor(5, 1, 512), CallArg(6, "IntList"), tensor(8, 1, 8, 64))))
    covered = {"et_vk.linear_dq8ca_q4gsw.default": "linear_dq8ca_q4gsw",
               "torchao.choose_qparams_affine.default": "linear_dq8ca_q4gsw"}
    lines, missing = graph.coverage_lines(calls, covered)
    assert len(lines) == 5
    assert lines[0].endswith("unsupported: op et_vk.rms_norm.default")
    assert "[1,2048] [2048] const Double [1,2048]" in lines[0]
    assert lines[1].endswith("linear_dq8ca_q4gsw") and lines[2].endswith("linear_dq8ca_q4gsw")
    assert lines[2].split()[0] == "2"
    assert missing == {"et_vk.rms_norm.default": 1, "aten.view_copy.default": 2}


def test_the_shipped_ops_cover_their_operators_and_their_chains() -> None:
    covered = graph.covering_ops()
    assert covered["et_vk.linear_q4gsw.default"] == "linear_q4gsw"
    assert covered["et_vk.linear_dq8ca_q4gsw.default"] == "linear_dq8ca_q4gsw"
    assert covered["torchao.choose_qparams_affine.default"] == "linear_dq8ca_q4gsw"  # its chain's first call
    assert covered["et_vk.embedding_q4gsw.default"] == "embedding_q4gsw"
    # the names the delegate of ExecuTorch's Llama layer calls them by (docs/layer.md)
    assert covered["sdpa_with_kv_cache.default"] == "sdpa"
    assert covered["et_vk.rms_norm.default"] == "rms_norm"
    assert covered["et_vk.apply_rotary_emb.default"] == "rope"
    assert covered["aten.add.Tensor"] == "add"
    assert "aten.view_copy.default" not in covered


@pytest.mark.parametrize("content", [None, b""])
def test_a_missing_or_empty_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     content: bytes | None) -> None:
    path = tmp_path / "model.pte"
    if content is not None:
        path.write_bytes(content)
    assert graph.main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    assert ("no such file" if content is None else "empty file") in err


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_folder_or_an_unreadable_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder said 'no such file'; a file that cannot be read (no permission, an I/O error: /proc/self/mem) was
    an OSError traceback from read_bytes."""
    folder = tmp_path / "model.pte"
    folder.mkdir()
    assert graph.main([str(folder)]) == 2
    err = one_error_line(capsys)
    assert str(folder) in err and "cannot be read" in err and "no such file" not in err

    def refused(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    path = tmp_path / "locked.pte"
    path.write_bytes(b"x")
    monkeypatch.setattr(Path, "read_bytes", refused)
    assert graph.main([str(path)]) == 2
    err = one_error_line(capsys)
    assert str(path) in err and "cannot be read (Permission denied)" in err


class Delegate:
    """read_delegate's answer stood in for (offline): a delegate whose chain is `calls`."""

    def __init__(self, calls: tuple[Call, ...]) -> None:
        self._calls = calls

    def calls(self) -> tuple[Call, ...]:
        return self._calls


LINEAR = Call("et_vk.linear_q4gsw.default", (tensor(0, 5, 96), tensor(1, 40, 48, constant=True), tensor(2, 5, 40)))
VIEW = Call("aten.view_copy.default", (tensor(2, 5, 40), CallArg(3, "IntList"), tensor(4, 200)))


@pytest.mark.parametrize("calls, code, said", [
    ((LINEAR,), 0, "every call is covered by a q4gsw op"),
    ((LINEAR, VIEW, VIEW), 1, "2 of 3 calls have no q4gsw op: unsupported: op aten.view_copy.default x2"),
    ((), 1, "no call: nothing a composed run could check"),
], ids=["covered", "unsupported", "empty"])
def test_the_verdict_of_a_delegate(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, calls: tuple[Call, ...], code: int,
                                   said: str) -> None:
    """Exit 0 only when every call has an op; a delegate of no call checks nothing, never a success."""
    monkeypatch.setattr(graph, "read_delegate", lambda data: Delegate(calls))
    path = tmp_path / "model.pte"
    path.write_bytes(b"stand-in")
    assert graph.main([str(path)]) == code
    captured = capsys.readouterr()
    assert said in captured.out + captured.err
    assert f"{path}: {len(calls)} calls in its Vulkan delegate" in captured.out
    assert sum(" linear_q4gsw" in line for line in captured.out.splitlines()) == calls.count(LINEAR)


def test_a_program_q4gsw_cannot_read_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from q4gsw.export.pte import DelegateLayoutError

    def layout(data: bytes) -> Delegate:
        raise DelegateLayoutError("expected exactly one VulkanBackend delegate, found ['XnnpackBackend']")

    monkeypatch.setattr(graph, "read_delegate", layout)
    path = tmp_path / "model.pte"
    path.write_bytes(b"stand-in")
    assert graph.main([str(path)]) == 2
    assert f"{path}: expected exactly one VulkanBackend delegate" in one_error_line(capsys)


@pytest.mark.e2e
def test_a_program_of_no_delegate_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """torch.export + to_edge without a partitioner: ExecuTorch's portable kernels run it, no Vulkan delegate."""
    import torch
    from executorch.exir import to_edge

    class AddOne(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    program = to_edge(torch.export.export(AddOne(), (torch.ones(2, 3),))).to_executorch()
    (tmp_path / "cpu.pte").write_bytes(program.buffer)
    capsys.readouterr()
    assert graph.main([str(tmp_path / "cpu.pte")]) == 2
    err = one_error_line(capsys)
    assert "cpu.pte: expected exactly one VulkanBackend delegate, found []" in err and "VulkanPartitioner" in err


@pytest.mark.e2e
def test_a_real_export_is_listed_and_fully_covered(tiny_matrix: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A linear_q4gsw exported by its recipe: one call, et_vk.linear_q4gsw, covered (exit 0); random bytes are
    one line, exit 2."""
    from q4gsw.matrix.load import load_matrix
    from q4gsw.ops import op_for

    config = load_matrix(tiny_matrix).config("tiny_gemm")
    pte, _ = op_for(config).export_pte(config)
    (tmp_path / "model.pte").write_bytes(pte)
    assert graph.main([str(tmp_path / "model.pte")]) == 0
    out = capsys.readouterr().out
    assert "1 calls in its Vulkan delegate" in out and "et_vk.linear_q4gsw.default" in out
    assert "every call is covered by a q4gsw op" in out
    [line] = [line for line in out.splitlines() if "et_vk.linear_q4gsw.default" in line]
    # tiny_gemm (M 5, K 96, N 40, gs 32): x, the packed weight [N, K/2] and the scales [K/gs, N] as constants (the
    # first has constant id 0), the group size, no bias, the output [M, N]
    assert line.split()[2:10] == ["[5,96]", "[40,48]", "const", "[3,40]", "const", "Int", "Null", "[5,40]"], line
    (tmp_path / "junk.pte").write_bytes(b"\x00not a pte" * 50)
    assert graph.main([str(tmp_path / "junk.pte")]) == 2
    assert "not a .pte ExecuTorch can read" in capsys.readouterr().err


class VkTensor:
    """Stands in for the Vulkan schema's tensor value (DelegateGraph.calls reads its type's name)."""

    def __init__(self, dims: list[int], constant_id: int) -> None:
        self.dims, self.constant_id = dims, constant_id


class Int:
    pass


def test_the_calls_of_a_delegate_graph_offline() -> None:
    """Constant id 0 is a constant (the first one), -1 is none; None is Null; other values by their type's name."""
    from types import SimpleNamespace as Ns

    from q4gsw.export.pte import DelegateGraph

    values = [Ns(value=v) for v in (VkTensor([5, 96], -1), VkTensor([40, 48], 0), VkTensor([3, 40], 1), Int(), None)]
    chain = [Ns(name="et_vk.linear_q4gsw.default", args=[0, 1, 2, 3, 4]), Ns(name="aten.view_copy.default", args=[0])]
    delegate = DelegateGraph(pte=None, graph=Ns(chain=chain, values=values), blob=b"", bytes_offset=0)
    assert delegate.calls() == (
        Call("et_vk.linear_q4gsw.default", (tensor(0, 5, 96), tensor(1, 40, 48, constant=True),
                                            tensor(2, 3, 40, constant=True), CallArg(3, "Int"), CallArg(4, "Null"))),
        Call("aten.view_copy.default", (tensor(0, 5, 96),)))


def _plan(delegates: tuple[str, ...], operators: tuple[str, ...] = (), instructions: tuple[str, ...] = ()) -> object:
    """An ExecuTorch program's execution plan, as deserialize_pte_binary gives it, built offline."""
    from types import SimpleNamespace as Ns

    kinds = {name: type(name, (), {}) for name in set(instructions)}
    chain = Ns(instructions=[Ns(instr_args=kinds[name]()) for name in instructions])
    return Ns(program=Ns(execution_plan=[Ns(delegates=[Ns(id=d) for d in delegates],
                                             operators=[Ns(name=o) for o in operators], chains=[chain])]))


@pytest.mark.parametrize("plan, says", [
    (_plan(()), "expected exactly one VulkanBackend delegate, found []: lower the program with ExecuTorch's "
                "VulkanPartitioner"),
    (_plan(("XnnpackBackend",), (), ("DelegateCall",)), "found ['XnnpackBackend']"),
    (_plan(("VulkanBackend", "VulkanBackend")), "found ['VulkanBackend', 'VulkanBackend']"),
    (_plan(("VulkanBackend",), ("aten::cumsum",), ("DelegateCall", "KernelCall")),
     "graph is not fully delegated: operators outside the delegate ['aten::cumsum'], instructions ['DelegateCall', "
     "'KernelCall']: q4gsw reads only a program the VulkanPartitioner took whole"),
    # an instruction besides the delegate's call (a move, a jump) or an operator listed with none: either refuses it
    (_plan(("VulkanBackend",), (), ("DelegateCall", "MoveCall")), "operators outside the delegate [], instructions "
                                                                  "['DelegateCall', 'MoveCall']"),
    (_plan(("VulkanBackend",), ("aten::add",), ("DelegateCall",)), "operators outside the delegate ['aten::add']"),
], ids=["no-delegate", "xnnpack", "two-delegates", "partly-delegated", "a-move", "an-operator"])
def test_a_program_not_wholly_in_one_vulkan_delegate_is_refused(monkeypatch: pytest.MonkeyPatch, plan: object,
                                                                 says: str) -> None:
    """read_delegate's refusals, with ExecuTorch's deserializer stood in for (offline; the e2e test exports one)."""
    import sys
    from types import ModuleType

    from q4gsw.export.pte import DelegateLayoutError, read_delegate

    vulkan, program = ModuleType("vulkan_graph_serialize"), ModuleType("_program")
    vulkan.VulkanDelegateHeader = vulkan.extract_vk_flatbuffer = vulkan.flatbuffer_to_vk_graph = None
    program.deserialize_pte_binary = lambda data: plan
    monkeypatch.setitem(sys.modules, "executorch.backends.vulkan.serialization.vulkan_graph_serialize", vulkan)
    monkeypatch.setitem(sys.modules, "executorch.exir._serialize._program", program)
    with pytest.raises(DelegateLayoutError) as caught:
        read_delegate(b"stand-in")
    assert says in str(caught.value)


def test_a_delegate_that_does_not_run_exactly_the_ops_calls_is_refused() -> None:
    """An rms_norm the partitioner left unfused (its aten chain), the op beside another call, or twice: refused, so
    a recipe never reads the constants of a graph whose kernel is not the one under test."""
    from types import SimpleNamespace as Ns

    from q4gsw.export.pte import DelegateGraph, DelegateLayoutError

    def delegate(*names: str) -> DelegateGraph:
        chain = [Ns(name=n, args=[i]) for i, n in enumerate(names)]
        return DelegateGraph(pte=None, graph=Ns(chain=chain, values=[]), blob=b"", bytes_offset=0)

    norm = "et_vk.rms_norm.default"
    assert delegate(norm).args(norm) == [0]
    assert delegate("et_vk.choose_qparams.default", norm).args(norm, ("et_vk.choose_qparams.default", norm)) == [1]
    unfused = ("aten.pow.Tensor_Scalar", "aten.mean.dim", "aten.add.Tensor", "aten.rsqrt.default", "aten.mul.Tensor",
               "aten.mul.Tensor")
    for names in (unfused, (norm, "aten.add.Tensor"), (norm, norm)):
        with pytest.raises(DelegateLayoutError, match=re.escape(f"delegate runs {list(names)}, expected ['{norm}']")):
            delegate(*names).args(norm)
    with pytest.raises(DelegateLayoutError, match="expected"):  # the expected chain names the operator twice
        delegate(norm, norm).args(norm, (norm, norm))
