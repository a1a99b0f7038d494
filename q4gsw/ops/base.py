"""The Op interface: everything that makes a config one operator rather than another.

The engine, selection, comparison, reports and CLI name no op; they ask the config's Op (`op_for`).
An op answers: which shapes it accepts, how ExecuTorch exports it (the recipe its own tests use) and
what the `.pte` delegate then holds (its constants), the fp64 golden of the op's meaning, how its
buffers bind in ExecuTorch's layout, where its kernels live (here and in an ExecuTorch checkout),
and its FLOP and byte counts. Each op is one folder: q4gsw/ops/<name>/.
"""

from __future__ import annotations

import inspect
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from q4gsw.matrix.values import Config, Dim, Tolerance

if TYPE_CHECKING:
    from q4gsw.ops.error_model import ErrorModel

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ShapeProblem:
    """Why an op cannot take a config's shape: the matrix.toml key, the problem and the fix."""

    key: str
    problem: str
    fix: str


@dataclass(frozen=True)
class Binding:
    """One buffer of a kernel's bind group.

    `shared` names a buffer that one dispatch of a chain writes and a later one reads (a kernel's `before`:
    ExecuTorch's choose_qparams_affine writing the per-row qparams linear_dq8ca_q4gsw reads): bindings with the
    same name in the dispatches of one run are one buffer, sized and first filled from `data`."""

    index: int
    data: np.ndarray
    kind: Literal["read-only-storage", "uniform", "storage"] = "read-only-storage"
    shared: str = ""


@dataclass(frozen=True)
class Bindings:
    """A dispatch's buffers in the op's (ExecuTorch's) layout: the output (read-write, fp32) and the rest.
    A dispatch that runs before the kernel under test has no output of its own (output_index None): what it
    writes goes to `shared` storage bindings."""

    output_index: int | None
    output_shape: tuple[int, ...]
    inputs: tuple[Binding, ...]


@dataclass(frozen=True)
class Exported:
    """What an export produced: the .pte bytes and the op's constants read back from its delegate."""

    pte: bytes
    constants: Any
    cross_checked: bool  # the constants were compared with the quantizer's own tensors


@dataclass(frozen=True)
class Mutant:
    """A wrong-but-plausible version of an op's reference kernel: a bug a kernel author makes."""

    name: str
    bug: str  # what the kernel author got wrong
    edits: tuple[tuple[str, str], ...]  # (exact text in the reference kernel, replacement)
    in_before: bool | str = False  # the edits apply to a `before` reference of the suite: True its first, or its name
    # (adapter-name regex, why): where the adapter's compiler makes this mutant compute the reference's very
    # numbers, so no input can expose it there; a survivor only on such adapters is reported equivalent, not missed.
    equivalent_on: tuple[tuple[str, str], ...] = ()

    def equivalent_reason(self, adapter: str) -> str:
        """Why this mutant is equivalent on `adapter` ("" where it is not)."""
        return next((why for pattern, why in self.equivalent_on if re.search(pattern, adapter)), "")

    def source(self, reference: str) -> str:
        text = reference
        for old, new in self.edits:
            if text.count(old) != 1:
                raise ValueError(f"mutant '{self.name}': {old!r} occurs {text.count(old)} times in the reference "
                                 "kernel; each edit must match exactly once")
            text = text.replace(old, new)
        return text


@dataclass(frozen=True)
class BeforeReference:
    """A simple correct kernel the runtime dispatches before the op's (e.g. choose_qparams_affine before
    linear_dq8ca_q4gsw): every kernel of a MutationSuite that has one runs after it, as a matrix kernel's `before`."""

    file: Path
    dispatch: str
    overrides: Mapping[str, str]
    name: str = "before"  # what a Mutant's in_before names, in a chain of several
    stage: str = ""  # its stage, for an op with stages (Op.stages)


@dataclass(frozen=True)
class MutationSuite:
    """An op's simple correct kernel and the catalogue of mutants derived from it (`python -m q4gsw mutants`);
    with `before`, mutants may edit either kernel of the chain (Mutant.in_before)."""

    reference: Path
    dispatch: str
    overrides: Mapping[str, str]
    mutants: tuple[Mutant, ...]
    before: BeforeReference | tuple[BeforeReference, ...] | None = None  # one, or a chain in dispatch order
    stage: str = ""  # the reference's stage, for an op with stages

    @property
    def chain(self) -> tuple[BeforeReference, ...]:
        """The `before` references in dispatch order (empty without)."""
        return () if self.before is None else (self.before,) if isinstance(self.before, BeforeReference) \
            else tuple(self.before)

    def edited(self, mutant: Mutant) -> int | None:
        """Which of the chain a mutant edits (its index), None for the reference."""
        if mutant.in_before is False:
            return None
        names = [b.name for b in self.chain]
        return 0 if mutant.in_before is True else names.index(str(mutant.in_before))


class Op(ABC):
    name: ClassVar[str]  # matrix.toml's `op = "..."`
    operator: ClassVar[str]  # the delegate's operator, e.g. et_vk.linear_q4gsw.default
    also_runs: ClassVar[tuple[str, ...]] = ()  # delegate operators its chain runs before `operator` (`graph` reads it)
    executorch_folder: ClassVar[str | None] = None  # the op's kernels in an ExecuTorch checkout; None: it has none
    executorch_fixture_prefix: ClassVar[str | None] = None  # ExecuTorch's export folder names its files
    # <prefix><config>.pte; None: no ExecuTorch export folder writes this op's
    constant_files: ClassVar[tuple[str, ...]]  # the fixture files that hold the constants (.npy)
    input_names: ClassVar[tuple[str, ...]] = ("ramp", "normal", "outliers")  # matrix.toml `inputs` it accepts
    synthetic_input: ClassVar[str] = "normal"  # the input a synthetic problem (bench, no export) gets
    bench_shapes: ClassVar[tuple[str, ...]] = ()  # `bench`'s default shapes, as --shape takes them
    weight_names: ClassVar[tuple[str, ...]] = ()  # matrix.toml `weights` it accepts, default first (): all of
    # q4gsw.ops.inputs.WEIGHTS

    @property
    def folder(self) -> Path:
        """The op's folder (q4gsw/ops/<name>/, or one under $Q4GSW_OPS_PATH), with its kernels under kernels/."""
        return Path(inspect.getfile(type(self))).parent

    dims: ClassVar[tuple[Dim, ...]]  # the op's dimensions: matrix.toml keys of its configs, in the order shown

    def derived_names(self, dims: Mapping[str, int]) -> dict[str, int]:
        """Names computed from the dims that `when`, `dispatch` and `overrides` expressions may use too
        (e.g. a linear with int4 weights: K_packed = K // 2)."""
        return {}

    def shape_text(self, dims: Mapping[str, int]) -> str:
        """The shape in the op's words, for progress lines, tables, JUnit names and plots."""
        return " ".join(f"{d.name}={dims[d.name]}" for d in self.dims)

    @abstractmethod
    def shape_problems(self, config: Config) -> list[ShapeProblem]:
        """Everything wrong with the config's shape for this op beyond each dim's minimum (empty: fine)."""

    def dims_from_v2(self, shape: Mapping[str, int]) -> dict[str, int] | None:
        """A results.json of schema 2 recorded every case's shape as M, K, N, group_size: this op's dims from those
        (None: the op did not exist then, so no such file holds it)."""
        return None

    def parse_shorthand(self, text: str) -> dict[str, int] | None:
        """bench's short form of a shape in this op's words (a linear's MxKxN), None where `text` is not one."""
        return None

    @abstractmethod
    def make_input(self, name: str, config: Config) -> np.ndarray:
        """The input named `name` (one of input_names) for a config, bit-exactly reproducible with numpy alone."""

    @abstractmethod
    def output_shape(self, config: Config) -> tuple[int, ...]: ...

    @abstractmethod
    def bench_tolerance(self, dims: Mapping[str, int]) -> Tolerance:
        """The sanity bound bench checks each timed kernel's output with (a fast wrong kernel is no result)."""

    def bench_dims(self, dims: Mapping[str, int]) -> dict[str, int]:
        """The dims a bench of `dims` really runs (bench records these: a per-channel op's group spans K)."""
        return dict(dims)

    @abstractmethod
    def flops(self, config: Config) -> int: ...

    @abstractmethod
    def bytes_moved(self, config: Config) -> int:
        """Bytes a kernel must read and write at least once (inputs, constants, output)."""

    recipe: ClassVar[str] = "quantize + torch.export + Vulkan lowering"  # the export's progress words

    @property
    def has_export_recipe(self) -> bool:
        """Whether the op overrides export_pte; without one its fixtures hold the constants it builds itself."""
        return type(self).export_pte is not Op.export_pte

    def export(self, config: Config, progress: Progress) -> Exported:
        """ExecuTorch's recipe for the op (needs torch, torchao, executorch), its constants read back from the .pte
        and cross-checked against what the quantizer made. An op without a recipe (no export_pte) runs from the
        constants it builds itself, synthetic_constants(config, weight_seed): no .pte, nothing cross-checked."""
        if not self.has_export_recipe:
            progress(f"export {config.name}: {self.name} has no export recipe: constants built by the op "
                     f"({self.shape_text(config.dims)})")
            return Exported(pte=b"", constants=self.synthetic_constants(config, config.weight_seed),
                            cross_checked=False)
        progress(f"export {config.name}: {self.recipe} ({self.shape_text(config.dims)})")
        pte, quantized = self.export_pte(config)
        progress(f"export {config.name}: unpacking {len(pte) / 2**20:.1f} MiB .pte delegate")
        constants = self.constants_from_pte(pte)
        self.cross_check(pte, constants, quantized, config)
        return Exported(pte=pte, constants=constants, cross_checked=True)

    def export_pte(self, config: Config) -> tuple[bytes, Any]:
        """The .pte bytes of the op's export recipe, and the quantizer's own tensors to cross-check them with.
        Optional: an op without one runs from the constants it builds itself (see export)."""
        raise NotImplementedError(f"op '{self.name}' has no export recipe")

    def cross_check(self, pte: bytes, constants: Any, quantized: Any, config: Config) -> None:
        """Raise when the constants read from the .pte are not what the quantizer made (or the .pte is not the
        op's graph). Only ops with an export recipe need one."""
        raise NotImplementedError(f"op '{self.name}' has an export recipe but no cross_check")

    def constants_from_pte(self, pte: bytes) -> Any:
        """The op's constants from a .pte's delegate (needs executorch); raises q4gsw.export.pte.DelegateLayoutError.
        Only ops with an export recipe or an ExecuTorch export folder need one."""
        raise NotImplementedError(f"op '{self.name}' reads no constants from a .pte")

    @abstractmethod
    def constants_to_files(self, constants: Any) -> dict[str, np.ndarray]:
        """The constants as the fixture's .npy files (names in constant_files)."""

    @abstractmethod
    def constants_from_files(self, files: Mapping[str, np.ndarray], config: Config) -> Any: ...

    def check_constants(self, constants: Any, config: Config) -> str:
        """Why these constants do not belong to this config ('' when they do); asked of constants read from
        ExecuTorch's export folder, so only ops with an executorch_fixture_prefix need one."""
        raise NotImplementedError(f"op '{self.name}' checks no constants read from ExecuTorch's export folder")

    @abstractmethod
    def synthetic_constants(self, config: Config, seed: int) -> Any:
        """Random constants of the config's shape (bench: no export)."""

    @abstractmethod
    def golden(self, x: np.ndarray, constants: Any, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """The op's meaning in fp64, from the constants exactly as the kernel receives them."""

    @abstractmethod
    def cpu_reference(self, x: np.ndarray, constants: Any) -> np.ndarray:
        """The op in fp32 numpy, as a framework without a kernel for it computes it: bench's native reference."""

    def torch_baseline(self, x: np.ndarray, constants: Any, golden: np.ndarray, repeats: int,
                       warmup_s: float = 0.0) -> Any:
        """torch's own kernel for the op on a CUDA GPU, timed after `warmup_s` of back-to-back calls, as q4gsw's
        kernels are (bench, native GPUs); None where the op has none."""
        return None

    @abstractmethod
    def bindings(self, x: np.ndarray, constants: Any, chained: bool = False) -> Bindings:
        """The kernel's buffers. `chained`: the kernel runs after its `before` kernel, and reads what that one
        wrote (the same `shared` names as before_bindings) instead of buffers computed here."""

    def before_bindings(self, x: np.ndarray, constants: Any) -> Bindings:
        """The buffers of the kernel that runs first in a chain (a kernel's `before`), for ops that have one."""
        raise NotImplementedError(f"op '{self.name}' has no kernel that runs before its own")

    # An op the runtime runs as a sequence of dispatches names them here (e.g. update_k, update_v, attn_weights,
    # softmax, compute_out): each kernel of it says which it is (matrix.toml `stage`), and its buffers are
    # stage_bindings(stage, ...) instead of bindings/before_bindings.
    stages: ClassVar[tuple[str, ...]] = ()

    def stage_bindings(self, stage: str, x: np.ndarray, constants: Any) -> Bindings:
        """The buffers of the dispatch `stage` (one of `stages`): the buffers one stage writes and a later one reads
        are Binding(shared=NAME), one buffer per run; the stage under test binds the output."""
        raise NotImplementedError(f"op '{self.name}' has no stages")

    def kernel_bindings(self, stage: str, x: np.ndarray, constants: Any, chained: bool = False) -> Bindings:
        """The buffers of a kernel under test: its stage's (stage_bindings) when it names one, else the op's own
        (bindings; `chained`: a chain ran before it)."""
        return self.stage_bindings(stage, x, constants) if stage else self.bindings(x, constants, chained=chained)

    @property
    def chains(self) -> bool:
        """Whether a kernel of this op may declare a `before` (the op defines its buffers: before_bindings or
        stages)."""
        return bool(self.stages) or type(self).before_bindings is not Op.before_bindings

    def error_model(self, x: np.ndarray, constants: Any) -> ErrorModel | None:
        """The one interface `audit` reads an op's fp32 rounding through (q4gsw.ops.error_model.ErrorModel: S, sigma,
        step, K; a dot-product op builds it with error_model.error_model from GroupedWeights), or None where the op
        has none (audit then says so for its configs)."""
        return None

    def mutation_suite(self) -> MutationSuite | None:
        """The op's mutation self-test, or None where it has none yet."""
        return None

    @abstractmethod
    def warm_up_problem(self) -> tuple[np.ndarray, Any]:
        """A tiny (x, constants) to build a pipeline's buffers with before the real fixture arrives."""
