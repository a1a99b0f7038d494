"""Storage-buffer read bandwidth per buffer size and binding variant, through q4gsw's own WebGPU adapter.

Why: q4gsw's int4 GEMV kernels lose ~5x on an H200 (not on an H100) once the packed weights exceed ~64 MiB.
This isolates the memory system from the kernels: a grid-stride kernel reads every vec4<u32> of a buffer
once, and the variants separate the suspects (buffer size, binding size, binding offset, one large
allocation, mappedAtCreation vs queue.write_buffer). A benchmark, not a test; every run checks its sums.
Usage: python scripts/bandwidth_probe.py --backend native [--sizes-mib 16 64 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

MIB = 1 << 20
WG_SIZE = 256
VARIANTS = ("exact", "oversized", "offset", "split", "mapped", "chunked")
CHUNK = 64 * MIB  # host-side fill granularity: a 256 MiB buffer never needs a full-size host copy
MULT, SEEDS = 0x9E3779B1, {"exact": 1, "oversized": 2, "offset": 2, "split": 3, "mapped": 5, "chunked": 6}
# (split reads two buffers, seeds 3 and 4)

# Each invocation adds (wrapping) the vec4s of a grid-stride walk and writes one word: the sum of all output
# words is then the sum of all bound words mod 2^32 whatever the grid, so the host can check that every
# element was read exactly once, and the compiler cannot drop a load. Adds cost the same as XORs.
KERNEL = """
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<storage, read> a: array<vec4<u32>>;
BINDING_B
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * WG;
    var acc = vec4<u32>(0u);
    for (var i = gid.x; i < arrayLength(&a); i += stride) { acc += a[i]; }
    LOOP_B
    out[gid.x] = acc.x + acc.y + acc.z + acc.w;
}
""".replace("WG", str(WG_SIZE))
TWO_BINDINGS = {"BINDING_B": "@group(0) @binding(2) var<storage, read> b: array<vec4<u32>>;",
                "LOOP_B": "for (var i = gid.x; i < arrayLength(&b); i += stride) { acc += b[i]; }"}


def pattern(first_word: int, words: int, seed: int) -> np.ndarray:
    """Words first_word.. of a buffer, hashed from their index and seed (a misread changes the sum)."""
    values = np.arange(first_word, first_word + words, dtype=np.uint32)  # wraps mod 2^32, as intended
    values *= np.uint32(MULT)  # a multiply-xorshift hash: a linear pattern's sum would miss shifted reads
    values ^= values >> np.uint32(15)
    values += np.uint32(seed)
    values *= np.uint32(0x2C1B3C6D)
    values ^= values >> np.uint32(12)
    return values


def make_buffer(device: Any, wgpu: Any, parts: list[int], seed: int, mapped: bool = False) -> tuple[Any, list[int]]:
    """A storage buffer of sum(parts) bytes holding pattern(0, .., seed), written in chunks through the mapping made
    at creation (mapped) or queue.write_buffer (the implementation may pick a different memory type for each), and
    numpy's sum mod 2^32 of each part's words, taken from the very arrays uploaded."""
    usage = wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_DST
    buffer = device.create_buffer(size=sum(parts), usage=usage, mapped_at_creation=mapped)
    sums, start = [], 0
    for part in parts:
        total = 0
        for offset in range(start, start + part, CHUNK):
            data = pattern(offset // 4, min(CHUNK, start + part - offset) // 4, seed)
            total += int(data.sum(dtype=np.uint64))
            if mapped:
                buffer.write_mapped(data, offset)
            else:
                device.queue.write_buffer(buffer, offset, data)
        sums.append(total & 0xFFFFFFFF)
        start += part
    if mapped:
        buffer.unmap()
    return buffer, sums


class Probe:
    def __init__(self, backend_name: str, workgroups: int, repeats: int, flush_mib: float,
                 chunk_mib: float = 32) -> None:
        from q4gsw.matrix.load import load_matrix
        from q4gsw.webgpu.adapter import select_adapter
        from q4gsw.webgpu.provision import provision

        backend = load_matrix(os.path.join(os.path.dirname(__file__), "..", "matrix.toml")).backend(backend_name)
        # The Vulkan loader reads its ICD variables when wgpu first loads it, so they go in before select_adapter.
        os.environ.update(provision(backend))
        adapter, self.info = select_adapter(backend)  # Dawn: timestamp_quantization disabled there
        import wgpu

        self.wgpu, self.workgroups, self.repeats = wgpu, workgroups, repeats
        self.chunk = max(256, int(chunk_mib * MIB) // 256 * 256)  # binding offsets must be 256-byte aligned
        self.timestamps = "timestamp-query" in self.info.features
        features = [self.info.native_features["timestamp-query"]] if self.timestamps else []
        # The defaults (128 MiB binding, 256 MiB buffer) are below the sizes probed: ask for the adapter's own.
        keys = ("max-buffer-size", "max-storage-buffer-binding-size", "max-storage-buffers-per-shader-stage",
                "max-compute-workgroups-per-dimension")
        limits = {k: self.info.limits[k] for k in keys if k in self.info.limits}
        self.limits = {k: int(v) for k, v in limits.items()}
        self.device = adapter.request_device_sync(required_features=features, required_limits=limits)
        # The output words share a buffer with the L2 flush region: clearing it before each repeat then evicts the
        # bound data (else a size below the 50 MiB L2 of an H100/H200 stays resident) and, as the kernel writes that
        # buffer, the implementation must finish the clear before the dispatch starts (no overlap with it).
        self.out_bytes = workgroups * WG_SIZE * 4
        usage = wgpu.BufferUsage
        self.out = self.device.create_buffer(size=max(self.out_bytes, int(flush_mib * MIB) // 4 * 4),
                                             usage=usage.STORAGE | usage.COPY_SRC | usage.COPY_DST)
        self.pipelines = {n: self._pipeline(n) for n in (1, 2)}

    def _pipeline(self, inputs: int) -> Any:
        source = KERNEL
        for key, text in TWO_BINDINGS.items():
            source = source.replace(key, text if inputs == 2 else "")
        module = self.device.create_shader_module(code=source)
        return self.device.create_compute_pipeline(layout="auto", compute={"module": module, "entry_point": "main"})

    def measure(self, dispatches: list[list[tuple[Any, int, int]]]) -> tuple[list[float], int]:
        """Seconds of each of `repeats` passes, each running the dispatches in order (each reading its (buffer,
        offset, size) bindings and writing its own output words), and the sum of the output words. Timestamps: one
        pass per repeat in one submit; without them, the wall time of a submit."""
        wgpu, device = self.wgpu, self.device
        pipeline = self.pipelines[len(dispatches[0])]
        groups = []
        for d, bindings in enumerate(dispatches):
            entries = [{"binding": 0, "resource": {"buffer": self.out, "offset": d * self.out_bytes,
                                                   "size": self.out_bytes}}]
            entries += [{"binding": i + 1, "resource": {"buffer": b, "offset": o, "size": s}}
                        for i, (b, o, s) in enumerate(bindings)]
            groups.append(device.create_bind_group(layout=pipeline.get_bind_group_layout(0), entries=entries))
        n = self.repeats
        query_set = device.create_query_set(type=wgpu.QueryType.timestamp, count=2 * n) if self.timestamps else None
        samples: list[float] = []
        encoder = device.create_command_encoder()
        for r in range(n):
            encoder.clear_buffer(self.out)  # the flush; and a dispatch that never ran cannot pass on older words
            if query_set is None:  # wall fallback: the flush runs untimed, then submit..read back of one dispatch
                device.queue.submit([encoder.finish()])
                device.queue.read_buffer(self.out, 0, 4)
                encoder, started = device.create_command_encoder(), time.perf_counter()
            writes = None if query_set is None else {"query_set": query_set, "beginning_of_pass_write_index": 2 * r,
                                                     "end_of_pass_write_index": 2 * r + 1}
            compute = encoder.begin_compute_pass(timestamp_writes=writes)
            compute.set_pipeline(pipeline)
            for group in groups:
                compute.set_bind_group(0, group)
                compute.dispatch_workgroups(self.workgroups)
            compute.end()
            if query_set is None:
                device.queue.submit([encoder.finish()])
                device.queue.read_buffer(self.out, 0, 4)
                samples.append(time.perf_counter() - started)
                encoder = device.create_command_encoder()
        if query_set is not None:
            resolved = device.create_buffer(size=16 * n, usage=wgpu.BufferUsage.QUERY_RESOLVE
                                            | wgpu.BufferUsage.COPY_SRC)
            encoder.resolve_query_set(query_set, 0, 2 * n, resolved, 0)
            device.queue.submit([encoder.finish()])
            stamps = np.frombuffer(device.queue.read_buffer(resolved), dtype=np.uint64).reshape(n, 2).astype(float)
            samples = [s for s in ((stamps[:, 1] - stamps[:, 0]) * 1e-9).tolist() if 0 < s < 60]
        words = np.frombuffer(device.queue.read_buffer(self.out, 0, len(groups) * self.out_bytes), dtype=np.uint32)
        return samples, int(words.sum(dtype=np.uint64)) & 0xFFFFFFFF

    def size_rows(self, size: int, variants: list[str]) -> list[dict[str, Any]]:
        wgpu, device, rows = self.wgpu, self.device, []
        big: tuple[Any, list[int]] | None = None
        for variant in variants:
            seed = SEEDS[variant]
            if variant in ("oversized", "offset"):  # one 2*S buffer for both: does the buffer or binding size count?
                if 2 * size > self.limits.get("max-buffer-size", 2 * size):
                    rows.append({"size_mib": size / MIB, "variant": variant, "skipped": "2*S > max-buffer-size"})
                    continue
                if big is None:
                    big = make_buffer(device, wgpu, [size, size], seed)
                part = 1 if variant == "offset" else 0
                buffers, bindings, expected = [], [(big[0], size * part, size)], big[1][part]
            elif variant == "split":
                made = [make_buffer(device, wgpu, [size // 2], seed + i) for i in range(2)]
                buffers, bindings = [b for b, _ in made], [(b, 0, size // 2) for b, _ in made]
                expected = (made[0][1][0] + made[1][1][0]) & 0xFFFFFFFF
            else:
                buffer, (expected,) = make_buffer(device, wgpu, [size], seed, mapped=variant == "mapped")
                buffers, bindings = [buffer], [(buffer, 0, size)]
            # chunked: the same bytes read by one dispatch per chunk (does the working set of one dispatch count?)
            dispatches = ([[(buffers[0], o, min(self.chunk, size - o))] for o in range(0, size, self.chunk)]
                          if variant == "chunked" else [bindings])
            if len(dispatches) * self.out_bytes > self.out.size:
                rows.append({"size_mib": size / MIB, "variant": variant, "skipped": "too many chunks for --flush-mib"})
                continue
            samples, checksum = self.measure(dispatches)
            if checksum != expected:
                raise SystemExit(f"CHECKSUM MISMATCH at {size / MIB:g} MiB {variant}: GPU {checksum:#010x}, numpy "
                                 f"{expected:#010x}: the kernel did not read every bound element exactly once")
            best = min(samples) if samples else None
            rows.append({"size_mib": size / MIB, "variant": variant, "bytes": size, "best_s": best,
                         "gbs": size / best / 1e9 if best else None, "samples_s": samples,
                         "gpu_checksum": checksum, "numpy_checksum": expected,
                         "bindings": [{"offset": o, "size": n, "seed": seed + i}
                                      for i, (_, o, n) in enumerate(b for d in dispatches for b in d)]})
            for buffer in buffers:
                buffer.destroy()
        if big is not None:
            big[0].destroy()
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="native", help="a matrix.toml backend (native, native-dawn, lavapipe)")
    parser.add_argument("--sizes-mib", type=float, nargs="+", default=[16, 32, 48, 64, 72, 80, 96, 128, 192, 256])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--workgroups", type=int, default=132 * 32, help="of 256 invocations (H100/H200: 132 SMs)")
    parser.add_argument("--flush-mib", type=float, default=128, help="cleared before each repeat to evict the L2 "
                        "(0: only the output words, so sizes below the L2 read from it)")
    parser.add_argument("--chunk-mib", type=float, default=32, help="bytes per dispatch of the chunked variant")
    parser.add_argument("--json", help="write the rows and adapter info here")
    args = parser.parse_args()
    probe = Probe(args.backend, args.workgroups, args.repeats, args.flush_mib, args.chunk_mib)
    timer = "timestamp queries" if probe.timestamps else "WALL CLOCK (no timestamp-query: submit+readback)"
    print(f"{'MiB':>7} {'variant':<10} {'best us':>10} {'GB/s':>9}   timer: {timer}, best of {args.repeats}, "
          f"{args.workgroups} x {WG_SIZE} invocations, L2 flush {args.flush_mib:g} MiB")
    rows = []
    for mib in args.sizes_mib:
        size = int(mib * MIB) // 512 * 512  # split halves and the offset stay 256-byte aligned
        if size > probe.limits.get("max-storage-buffer-binding-size", size):
            print(f"{mib:>7g} skipped: above max-storage-buffer-binding-size")
            continue
        for row in probe.size_rows(size, args.variants):
            rows.append(row)
            if "skipped" in row:
                print(f"{row['size_mib']:>7g} {row['variant']:<10} skipped: {row['skipped']}")
            else:
                best = f"{row['best_s'] * 1e6:10.1f} {row['gbs']:9.1f}" if row["best_s"] else "no valid sample"
                print(f"{row['size_mib']:>7g} {row['variant']:<10} {best}", flush=True)
    info, version = probe.info, getattr(probe.wgpu, "__version__", "?")
    print(f"\nadapter: {info.name} | vendor {info.vendor} | {info.device_type} | {info.api} | driver: {info.driver} | "
          f"implementation: {info.webgpu} {version} | limits: {probe.limits}")
    timed = [r for r in rows if r.get("gbs")]
    if timed:
        base_mib = min(r["size_mib"] for r in timed)
        print(f"GB/s relative to {base_mib:g} MiB (per variant):")
        base = {r["variant"]: r["gbs"] for r in timed if r["size_mib"] == base_mib}
        for mib in sorted({r["size_mib"] for r in timed}):
            ratios = {r["variant"]: r["gbs"] / base[r["variant"]] for r in timed if r["size_mib"] == mib
                      and r["variant"] in base}
            print(f"{mib:>7g} " + "  ".join(f"{v} {x:.2f}" for v, x in ratios.items()))
    if args.json:
        adapter = {"name": info.name, "vendor": info.vendor, "device_type": info.device_type, "api": info.api,
                   "driver": info.driver, "implementation": info.webgpu, "version": version}
        with open(args.json, "w") as handle:
            json.dump({"backend": args.backend, "adapter": adapter, "limits": probe.limits, "timer": timer,
                       "workgroups": args.workgroups, "wg_size": WG_SIZE, "repeats": args.repeats,
                       "flush_mib": args.flush_mib, "rows": rows},
                      handle, indent=1)


if __name__ == "__main__":
    main()
