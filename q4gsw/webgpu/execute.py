"""Execute one WGSL kernel on one device: buffers, guard regions, the pipeline, timing.

This is the only module that creates compute pipelines. A kernel's buffers come from its op
(`Op.bindings`: ExecuTorch's layout for that op, docs/kernels.md "Kernel interface"). The output
buffer is surrounded by guard words holding a NaN pattern, so unwritten outputs read back as NaN and
out-of-bounds writes are counted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from q4gsw.matrix.expressions import LIMIT_NAMES
from q4gsw.matrix.values import AdapterInfo
from q4gsw.ops.base import Bindings

GUARD_WORDS = 256  # per side; 1 KiB keeps the output binding offset 256-byte aligned
GUARD_PATTERN = 0x7FC0_0BAD  # a quiet-NaN bit pattern: unwritten outputs read back as NaN
MAX_BATCH = 2048  # passes per submit: two timestamps each, and WebGPU caps a query set at 4096
_SUBGROUPS_DIRECTIVE = re.compile(r"^\s*enable\s+subgroups\s*;[^\n]*$", re.MULTILINE)
_SUBGROUP_BUILTIN = re.compile(r"\bsubgroup[A-Z]\w*\s*\(|@builtin\(\s*subgroup_")


COMPILERS = {"dawn": "Tint (Dawn)", "wgpu-native": "naga (wgpu-native)"}


class KernelCompileError(RuntimeError):
    """The implementation's WGSL compiler (or pipeline creation) rejected the kernel."""


def adapt_source(source: str, implementation: str) -> tuple[str, tuple[str, ...]]:
    """The WGSL each implementation accepts for subgroup operations, and a note of any change made.

    Tint (Dawn) requires `enable subgroups;` before subgroup builtins; the naga in wgpu-native 0.32
    rejects that directive and enables them through the device feature instead. Nothing else is touched.
    """
    has_directive = bool(_SUBGROUPS_DIRECTIVE.search(source))
    if implementation == "dawn" and not has_directive and _SUBGROUP_BUILTIN.search(source):
        return "enable subgroups;\n" + source, ("added `enable subgroups;` (Tint requires it)",)
    if implementation == "wgpu-native" and has_directive:
        return (_SUBGROUPS_DIRECTIVE.sub("// enable subgroups; (removed: naga 0.32 rejects it)", source),
                ("removed `enable subgroups;` (naga in wgpu-native 0.32 rejects it)",))
    return source, ()


@dataclass(frozen=True)
class Dispatch:
    """A kernel dispatched before the kernel under test (one of its chain), with its resolved overrides and counts."""

    source: str
    label: str
    overrides: Mapping[str, Any]  # WGSL `override` values, by name
    workgroups: tuple[int, ...]
    bindings: Bindings


@dataclass
class GpuRun:
    output: np.ndarray  # float32 [M, N]
    guard_violations: list[int]  # byte offsets (relative to the output start) of changed guard words
    wall_s: float  # first dispatch, including pipeline creation
    gpu_s: float | None  # from timestamp queries, when supported
    workgroups: tuple[int, ...]
    overrides: dict[str, Any]
    gpu_samples: tuple[float, ...] = ()  # seconds of each repeat (_dispatch), for a bench's median and spread
    warmup_s: float = 0.0  # seconds of back-to-back dispatches before the timed repeats (Device.warm_clocks)


class Device:
    """A device on one adapter; bind group layouts are made per op layout (Bindings), pipelines per kernel."""

    def __init__(self, adapter: Any, info: AdapterInfo, want_features: tuple[str, ...] = ()) -> None:
        import wgpu

        self.wgpu = wgpu
        self.info = info
        features = [info.native_features.get(f, f) for f in ("timestamp-query", *want_features) if f in info.features]
        limit_keys = [*LIMIT_NAMES.values(), "max-buffer-size", "max-storage-buffers-per-shader-stage"]
        limits = {k: info.limits[k] for k in limit_keys if k in info.limits}
        self.device = adapter.request_device_sync(required_features=features, required_limits=limits)
        self.timestamps = "timestamp-query" in info.features
        self._layouts: dict[tuple[tuple[int, str], ...], tuple[Any, Any]] = {}
        self._pipelines: dict[tuple[Any, ...], Any] = {}

    def _layout(self, signature: tuple[tuple[int, str], ...]) -> tuple[Any, Any]:
        """(bind group layout, pipeline layout) for buffers of these (binding, kind) pairs."""
        if signature not in self._layouts:
            types = {"storage": self.wgpu.BufferBindingType.storage,
                     "read-only-storage": self.wgpu.BufferBindingType.read_only_storage,
                     "uniform": self.wgpu.BufferBindingType.uniform}
            entries = [{"binding": index, "visibility": self.wgpu.ShaderStage.COMPUTE, "buffer": {"type": types[kind]}}
                       for index, kind in signature]
            group = self.device.create_bind_group_layout(entries=entries)
            self._layouts[signature] = group, self.device.create_pipeline_layout(bind_group_layouts=[group])
        return self._layouts[signature]

    def pipeline(self, source: str, overrides: Mapping[str, Any], label: str, bindings: Bindings) -> Any:
        """The compute pipeline for a kernel (cached: bench repeats and several inputs reuse it).

        Raises KernelCompileError when the implementation's shader compiler or pipeline creation rejects it."""
        signature = _signature(bindings)
        key = (source, tuple(sorted(overrides.items())), label, signature)
        if key not in self._pipelines:
            try:
                module = self.device.create_shader_module(code=adapt_source(source, self.info.webgpu)[0], label=label)
                self._pipelines[key] = self.device.create_compute_pipeline(
                    layout=self._layout(signature)[1], label=label,
                    compute={"module": module, "entry_point": "main", "constants": dict(overrides)})
            except Exception as exc:
                raise KernelCompileError(f"{type(exc).__name__}: {exc}") from exc
        return self._pipelines[key]

    def warm_up(self, source: str, overrides: Mapping[str, Any], label: str, bindings: Bindings) -> None:
        """Build a kernel's pipeline and go once through everything run() does, with an empty dispatch (zero
        workgroups: the kernel never executes). A warm spare child calls this before its fixture arrives:
        wgpu-py's cffi parses each C struct type on its first use (~25 ms apiece, ~0.5 s per process), and
        SwiftShader compiles the pipeline, while the previous config still runs."""
        self.run(source, label, overrides, (0,), bindings)

    def run(self, source: str, kernel_name: str, overrides: Mapping[str, Any], workgroups: tuple[int, ...],
            bindings: Bindings, repeats: int = 1, before: Sequence[Dispatch] = (), batch: int = 1,
            warmup_s: float = 0.0) -> GpuRun:
        """Dispatch the kernel (after its chain `before`, in order, in the same compute pass) and read its output
        back with its guard words; with warmup_s, keep the GPU busy with it that long before the timed repeats
        (warm_clocks)."""
        wgpu = self.wgpu
        device = self.device
        usage = wgpu.BufferUsage
        started = time.perf_counter()
        steps = list(before)
        steps.append(Dispatch(source, kernel_name, dict(overrides), workgroups, bindings))
        pipelines = [self.pipeline(s.source, s.overrides, s.label, s.bindings) for s in steps]
        assert bindings.output_index is not None, "the kernel under test writes an output"
        out_words = int(np.prod(bindings.output_shape))
        guarded = np.full(out_words + 2 * GUARD_WORDS, GUARD_PATTERN, dtype=np.uint32)
        out_buffer = device.create_buffer_with_data(data=guarded, usage=usage.STORAGE | usage.COPY_SRC)
        shared: dict[str, Any] = {}
        owned = [out_buffer]
        passes = []
        for step, pipeline in zip(steps, pipelines, strict=True):
            entries = []
            if step.bindings.output_index is not None:
                entries.append({"binding": step.bindings.output_index,
                                "resource": {"buffer": out_buffer, "offset": GUARD_WORDS * 4, "size": out_words * 4}})
            for b in step.bindings.inputs:
                if b.shared and b.shared in shared:
                    buffer = shared[b.shared]
                else:
                    kind = usage.UNIFORM if b.kind == "uniform" else usage.STORAGE
                    buffer = device.create_buffer_with_data(data=b.data, usage=kind)
                    owned.append(buffer)
                    if b.shared:
                        shared[b.shared] = buffer
                entries.append({"binding": b.index, "resource": {"buffer": buffer}})
            group = device.create_bind_group(layout=self._layout(_signature(step.bindings))[0], entries=entries)
            passes.append((pipeline, group, (*step.workgroups, 1, 1)[:3]))
        warmed_s = self.warm_clocks(passes, warmup_s) if warmup_s > 0 else 0.0
        samples = self._dispatch(passes, repeats, batch)
        gpu_s = min(samples) if self.timestamps and samples else None
        raw = np.frombuffer(device.queue.read_buffer(out_buffer), dtype=np.uint32)
        wall_s = time.perf_counter() - started
        guards = np.concatenate([raw[:GUARD_WORDS], raw[GUARD_WORDS + out_words:]])
        changed = np.flatnonzero(guards != GUARD_PATTERN)
        violations = [int((i - GUARD_WORDS) * 4) if i < GUARD_WORDS else int((out_words + i - GUARD_WORDS) * 4)
                      for i in changed]
        output = raw[GUARD_WORDS:GUARD_WORDS + out_words].view(np.float32).reshape(bindings.output_shape).copy()
        for buffer in owned:
            buffer.destroy()
        return GpuRun(output=output, guard_violations=violations, wall_s=wall_s, gpu_s=gpu_s,
                      workgroups=tuple(passes[-1][2]), overrides=dict(overrides), gpu_samples=tuple(samples),
                      warmup_s=warmed_s)

    def warm_clocks(self, passes: list[tuple[Any, Any, tuple[int, ...]]], seconds: float) -> float:
        """Dispatch the chain back to back for at least `seconds` (_dispatch with batch = repeats, from 2 so that
        every submit is waited for, doubling each time); the seconds it took. Why: a GPU's driver raises its clocks
        only after sustained load (the lent H200 idles at 345 MHz and needs ~0.4 s of Vulkan compute to reach 1980
        MHz, then drops back within ~1.5 s idle), so a kernel timed from idle is timed at the idle clock
        (docs/kernels.md, "Speed")."""
        started, count = time.perf_counter(), 2
        while time.perf_counter() - started < seconds:
            self._dispatch(passes, count, batch=count)
            count = min(MAX_BATCH, 2 * count)
        return time.perf_counter() - started

    def _dispatch(self, passes: list[tuple[Any, Any, tuple[int, ...]]], repeats: int, batch: int = 1) -> list[float]:
        """Dispatch the chain `repeats` times, in one compute pass each time (WebGPU orders a pass's dispatches
        and makes one's storage writes visible to the next); the seconds of each repeat: its timestamp-query time
        where the adapter has them (readings that are no measurement left out), else its wall time from submit to
        the queue's work done. `batch` passes go in one submit and the host waits once per submit: batch 1 times
        each repeat alone (the GPU idles between repeats), a larger batch keeps the GPU busy back to back (wall
        samples are then a submit's time over its passes)."""
        wgpu, device, usage = self.wgpu, self.device, self.wgpu.BufferUsage
        samples: list[float] = []
        batch = max(1, min(batch, MAX_BATCH))
        # Waiting for a repeat = reading a word back (queue.on_submitted_work_done_sync fails in wgpu-py 0.32 with
        # wgpu-native: a callback signature mismatch), so a wall sample includes one tiny copy and map.
        done = None if self.timestamps or (repeats <= 1 and batch <= 1) else device.create_buffer(
            size=4, usage=usage.COPY_SRC)
        left = max(1, repeats)
        while left > 0:
            count, left = min(batch, left), left - min(batch, left)
            query_set = resolve_buffer = None
            encoder = device.create_command_encoder()
            if self.timestamps:
                query_set = device.create_query_set(type=wgpu.QueryType.timestamp, count=2 * count)
                resolve_buffer = device.create_buffer(size=16 * count, usage=usage.QUERY_RESOLVE | usage.COPY_SRC)
            for index in range(count):
                timestamp_writes = None if query_set is None else {
                    "query_set": query_set, "beginning_of_pass_write_index": 2 * index,
                    "end_of_pass_write_index": 2 * index + 1}
                compute_pass = encoder.begin_compute_pass(timestamp_writes=timestamp_writes)
                for pipeline, bind_group, counts in passes:
                    compute_pass.set_pipeline(pipeline)
                    compute_pass.set_bind_group(0, bind_group)
                    compute_pass.dispatch_workgroups(*counts)
                compute_pass.end()
            if query_set is not None:
                encoder.resolve_query_set(query_set, 0, 2 * count, resolve_buffer, 0)
            started = time.perf_counter()
            device.queue.submit([encoder.finish()])
            if resolve_buffer is not None:
                stamps = np.frombuffer(device.queue.read_buffer(resolve_buffer), dtype=np.uint64).reshape(count, 2)
                for begin, end in stamps.tolist():
                    elapsed = (int(end) - int(begin)) * 1e-9
                    # A zero or backwards reading (Dawn's quantized timestamps, a wrapped counter) is no measurement.
                    if 0 < elapsed < 3600:
                        samples.append(elapsed)
            elif done is not None:
                device.queue.read_buffer(done)
                samples.append((time.perf_counter() - started) / count)
        return samples

def _signature(bindings: Bindings) -> tuple[tuple[int, str], ...]:
    output = [] if bindings.output_index is None else [(bindings.output_index, "storage")]
    return tuple(sorted([*output, *((b.index, b.kind) for b in bindings.inputs)]))
