"""The real webgpu.execute.Device on a fake wgpu device (offline, no GPU): buffers, bind groups, compute passes
and submits are recorded by the fake, and each "kernel" is a numpy function that reads and writes the bound
buffers as a WGSL kernel would. execute_case drives it, so what a GPU run depends on outside the WGSL is checked
without an adapter: a chain's shared buffers and order (Binding.shared, Kernel.before), the op of the config
(op_for) and embedding's packing flag in its Params.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
from helpers import make_config, random_packed

from q4gsw.case import Problem, execute_case
from q4gsw.cases import Case
from q4gsw.matrix.load import Backend, Tolerance, make_kernel
from q4gsw.matrix.values import AdapterInfo
from q4gsw.ops import op_for
from q4gsw.ops.embedding_q4gsw.layout import PackedEmbedding, pack_int4, unpack_int4
from q4gsw.ops.linear_dq8ca_q4gsw.qparams import RowQparams, choose_qparams, op_codes
from q4gsw.webgpu.execute import Device

ADAPTER = AdapterInfo(name="Fake GPU", device_type="DiscreteGPU", api="Vulkan", webgpu="wgpu-native",
                      limits={"max-compute-invocations-per-workgroup": 256,
                              "max-compute-workgroups-per-dimension": 65535})
BACKEND = Backend(name="fake", description="", api="Vulkan", adapter_name="Fake", device_type="DiscreteGPU",
                  provision="native")
TOLERANCE = Tolerance(atol=1e-5, rtol=1e-4, justification="test: one fp32 rounding of an fp64 result")
Views = dict[int, Callable[[Any], np.ndarray]]  # binding -> (dtype -> a writable view of the bound bytes)


class FakeBuffer:
    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)

    def destroy(self) -> None:
        pass


class FakeQueue:
    def __init__(self, kernels: dict[str, Callable[[Views], None]], log: list[str]) -> None:
        self.kernels, self.log = kernels, log

    def submit(self, commands: list[list[tuple[Any, Any, tuple[int, ...]]]]) -> None:
        """Runs the recorded dispatches in order, each kernel on the buffers of its bind group."""
        for dispatches in commands:
            for pipeline, entries, counts in dispatches:
                if counts[0] == 0:
                    continue
                self.log.append(pipeline.kernel)
                views: Views = {}
                for entry in entries:
                    resource = entry["resource"]
                    buffer, offset = resource["buffer"], resource.get("offset", 0)
                    size = resource.get("size", len(buffer.data) - offset)
                    views[entry["binding"]] = (lambda dtype, b=buffer, o=offset, s=size:
                                               np.frombuffer(memoryview(b.data)[o:o + s], dtype=dtype))
                self.kernels[pipeline.kernel](views)

    def read_buffer(self, buffer: FakeBuffer) -> bytes:
        return bytes(buffer.data)


class FakeEncoder:
    def __init__(self) -> None:
        self.commands: list[tuple[Any, Any, tuple[int, ...]]] = []

    def begin_compute_pass(self, timestamp_writes: Any = None) -> Any:
        state: dict[str, Any] = {}
        return SimpleNamespace(set_pipeline=lambda p: state.update(pipeline=p),
                               set_bind_group=lambda index, group: state.update(group=group),
                               dispatch_workgroups=lambda *counts: self.commands.append(
                                   (state["pipeline"], state["group"], counts)),
                               end=lambda: None)

    def finish(self) -> list[tuple[Any, Any, tuple[int, ...]]]:
        return self.commands


class FakeWgpuDevice:
    """The part of a wgpu GPUDevice that Device uses; a kernel is named by its source's first line."""

    def __init__(self, kernels: dict[str, Callable[[Views], None]]) -> None:
        self.log: list[str] = []
        self.queue = FakeQueue(kernels, self.log)

    def create_bind_group_layout(self, entries: list[dict[str, Any]]) -> object:
        return object()

    def create_pipeline_layout(self, bind_group_layouts: list[object]) -> object:
        return object()

    def create_shader_module(self, code: str, label: str) -> Any:
        return SimpleNamespace(kernel=code.splitlines()[0].removeprefix("// fake kernel: "))

    def create_compute_pipeline(self, layout: object, label: str, compute: dict[str, Any]) -> Any:
        return SimpleNamespace(kernel=compute["module"].kernel)

    def create_buffer_with_data(self, data: np.ndarray, usage: int) -> FakeBuffer:
        return FakeBuffer(np.ascontiguousarray(data).tobytes())

    def create_buffer(self, size: int, usage: int) -> FakeBuffer:
        return FakeBuffer(bytes(size))

    def create_bind_group(self, layout: object, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return entries

    def create_command_encoder(self) -> FakeEncoder:
        return FakeEncoder()


def fake_device(kernels: dict[str, Callable[[Views], None]]) -> tuple[Device, FakeWgpuDevice]:
    fake = FakeWgpuDevice(kernels)
    adapter = SimpleNamespace(request_device_sync=lambda required_features, required_limits: fake)
    return Device(adapter, ADAPTER), fake


def run_case(config: Any, kernel: Any, x: np.ndarray, constants: Any, golden: np.ndarray,
             kernels: dict[str, Callable[[Views], None]]) -> tuple[Any, list[str]]:
    device, fake = fake_device(kernels)
    case = Case(config=config, kernel=kernel, input=config.inputs[0], backend=BACKEND, tolerance=TOLERANCE)
    problem = Problem(constants=constants, x={config.inputs[0]: x}, golden={config.inputs[0]: golden})
    return execute_case(case, device, problem, root=None), fake.log  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# linear_dq8ca_q4gsw's chain: choose_qparams writes the per-row qparams, the linear kernel reads them
# ------------------------------------------------------------------------------------------------


def choose_qparams_kernel(views: Views) -> None:
    """ExecuTorch's choose_qparams_affine layout: b0 x, b1 scales (written), b2 zero-point words (written)."""
    M, K = (int(v) for v in views[3](np.int32)[:2])
    qparams = choose_qparams(views[0](np.float32).reshape(M, K))
    views[1](np.float32)[:] = qparams.scale
    views[2](np.uint32)[:] = qparams.zero_point_words()


def dq8ca_linear_kernel(packed: Any) -> Callable[[Views], None]:
    """linear_dq8ca_q4gsw from the qparams it is bound (b2, b3), not from its own: s * (xq - z) @ w.T."""
    def kernel(views: Views) -> None:
        M, N, K = (int(v) for v in views[7](np.uint32)[:3])
        zero_points = views[3](np.uint32).view(np.int8)[:M]
        qparams = RowQparams(scale=views[2](np.float32)[:M].copy(), zero_point=zero_points.copy())
        x = views[1](np.float32).reshape(M, K)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = qparams.scale.astype(np.float64)[:, None] * (op_codes(x, qparams) @ packed.dequantized_rows(0, N).T)
        views[0](np.float32)[:] = y.astype(np.float32).ravel()
    return kernel


def dq8ca_chain_case() -> tuple[Any, Any, np.ndarray, Any]:
    from q4gsw.ops.linear_dq8ca_q4gsw.inputs import row_offsets

    config = dataclasses.replace(make_config("chain", 6, 64, 16, 32, ("row_offsets",), tolerance=TOLERANCE),
                                 op="linear_dq8ca_q4gsw")
    first = make_kernel("fake_qparams", "fake_qparams.wgsl", "ceil(M / 4)", op=config.op,
                        text="// fake kernel: choose_qparams\n")
    kernel = make_kernel("fake_dq8ca", "fake_dq8ca.wgsl", "ceil(N / 16), M", op=config.op, before=first,
                         text="// fake kernel: dq8ca_linear\n")
    return config, kernel, row_offsets(6, 64, 0), random_packed(16, 64, 32, np.random.default_rng(7))


def test_a_chain_shares_its_buffers_and_runs_before_first():
    """The linear kernel reads the scale and zero points choose_qparams wrote (one buffer per `shared` name), after
    it wrote them (one pass, `before` first): a buffer of its own (zeros) or the reversed order reads scale 0."""
    config, kernel, x, packed = dq8ca_chain_case()
    golden = op_for("linear_dq8ca_q4gsw").golden(x, packed)
    kernels = {"choose_qparams": choose_qparams_kernel, "dq8ca_linear": dq8ca_linear_kernel(packed)}
    result, log = run_case(config, kernel, x, packed, golden, kernels)
    assert log == ["choose_qparams", "dq8ca_linear"]
    assert result.status == "pass" and result.op == "linear_dq8ca_q4gsw", result.message
    assert len(set(choose_qparams(x).zero_point.tolist())) >= 3  # rows whose qparams differ: a mix-up would show


def test_a_chain_whose_first_kernel_writes_wrong_qparams_fails():
    """The linear kernel really reads the chain's qparams: a choose_qparams that writes scale * 2 fails."""
    config, kernel, x, packed = dq8ca_chain_case()

    def doubled(views: Views) -> None:
        choose_qparams_kernel(views)
        views[1](np.float32)[:] *= 2

    result, _ = run_case(config, kernel, x, packed, op_for(config).golden(x, packed),
                         {"choose_qparams": doubled, "dq8ca_linear": dq8ca_linear_kernel(packed)})
    assert result.status == "fail", result.message


def test_execute_case_binds_the_configs_op():
    """An unchained dq8ca kernel: the qparams come from the op's bindings (b2, b3, computed on the host), which
    only the config's op, linear_dq8ca_q4gsw, provides; linear_q4gsw's layout has no b7."""
    config, kernel, x, packed = dq8ca_chain_case()
    kernel = dataclasses.replace(kernel, before=None)
    result, log = run_case(config, kernel, x, packed, op_for(config).golden(x, packed),
                           {"dq8ca_linear": dq8ca_linear_kernel(packed)})
    assert log == ["dq8ca_linear"] and result.status == "pass", result.message


# ------------------------------------------------------------------------------------------------
# embedding_q4gsw: the packing flag the kernel reads from Params
# ------------------------------------------------------------------------------------------------


def embedding_kernel(views: Views) -> None:
    """ExecuTorch's layout: b1 indices, b2 table words, b3 scales, b4 Params {embed_dim, blocks_per_row,
    num_indices, group_size, groups_per_row, bytes_per_row, total_blocks, is_linear_weight}; the nibble order
    is the one Params says."""
    dim, _, count, group_size, groups, row_bytes, _, is_linear = (int(v) for v in views[4](np.uint32))
    indices = views[1](np.int32)[:count]
    table = views[2](np.uint32).view(np.uint8).reshape(-1, row_bytes)
    q = unpack_int4(table[indices], bool(is_linear)).astype(np.float32)
    scales = views[3](np.float32).reshape(-1, groups)[indices]
    views[0](np.float32)[:] = (q * np.repeat(scales, group_size, axis=1)).ravel()
    assert q.shape[1] == dim


def test_embedding_reads_each_packing_by_its_flag():
    config = dataclasses.replace(make_config("emb", 7, 10, 64, 32, ("edges",), tolerance=TOLERANCE),
                                 op="embedding_q4gsw", weights="torch_embedding",
                                 dims={"tokens": 7, "vocab": 10, "dim": 64, "group_size": 32})
    op = op_for(config)
    kernel = make_kernel("fake_embedding", "fake_embedding.wgsl", "ceil(tokens * dim / 32 / 64)", op=config.op,
                         text="// fake kernel: embedding\n")
    q = np.random.default_rng(9).integers(-8, 8, size=(10, 64))
    scales = np.random.default_rng(10).uniform(0.05, 0.6, size=(10, 2)).astype(np.float32)
    indices = op.make_input("edges", config)
    for is_linear in (False, True):
        table = PackedEmbedding(weight=pack_int4(q, is_linear), scales=scales, group_size=32,
                                is_linear_weight=is_linear)
        golden = q[indices] * np.repeat(scales[indices], 32, axis=1).astype(np.float64)  # independent of the op
        result, _ = run_case(config, kernel, indices, table, golden, {"embedding": embedding_kernel})
        assert result.status == "pass", (is_linear, result.message)


def test_embedding_constants_files_keep_the_packing_flag():
    """The fixture files round-trip both packings (an export's is linear; a hand-made state_dict one is not)."""
    op = op_for("embedding_q4gsw")
    config = dataclasses.replace(make_config("emb", 4, 12, 64, 32, ("edges",)), op="embedding_q4gsw",
                                 weights="torch_embedding",
                                 dims={"tokens": 4, "vocab": 12, "dim": 64, "group_size": 32})
    q = np.random.default_rng(11).integers(-8, 8, size=(12, 64))
    for is_linear in (False, True):
        table = PackedEmbedding(weight=pack_int4(q, is_linear), scales=np.ones((12, 2), np.float32), group_size=32,
                                is_linear_weight=is_linear)
        back = op.constants_from_files(op.constants_to_files(table), config)
        assert back.is_linear_weight is is_linear
        assert np.array_equal(unpack_int4(back.weight, back.is_linear_weight), q)
