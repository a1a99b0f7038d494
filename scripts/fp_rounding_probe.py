"""How an adapter's shader compiler rounds the two embedding_q4gsw mutants that only rounding tells apart.

Why: `offset_folded` (nibble * s - 8 * s) and `fp16_output` (the value through pack2x16float/unpack2x16float)
differ from the reference (q * s, one rounding) only in the last bits. A compiler that contracts
`n * s - 8 * s` into fma(n, s, -(8 * s)) computes (n - 8) * s with ONE rounding (8 * s is exact), i.e. the
reference bit for bit; one that drops the f16 round trip returns the f32 value unchanged. This runs the
mutants' exact expressions (the same WGSL text as q4gsw/ops/embedding_q4gsw/mutants.py) on every nibble
0..15 times chosen scales, and says, per expression and per class of scales, which numpy model each output
matches bit for bit: "separate" (two roundings), "fma" (one rounding of the exact n*s - fl(8s)),
"reference" (one rounding of q*s), "f16" (round to nearest even f16), "f16 ftz" (f16 subnormals flushed).
Usage: python scripts/fp_rounding_probe.py --backend native [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np

KERNEL = """
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<storage, read> nibbles: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;

fn reference(n: u32, s: f32) -> f32 {
  let q = f32(i32(n) - 8);
  return q * s;
}
fn offset_folded(n: u32, s: f32) -> f32 {
  return f32(n) * s - 8.0 * s;
}
fn explicit_fma(n: u32, s: f32) -> f32 {
  return fma(f32(n), s, -(8.0 * s));
}
fn fp16_output(n: u32, s: f32) -> f32 {
  let q = f32(i32(n) - 8);
  return unpack2x16float(pack2x16float(vec2<f32>(q * s, 0.0))).x;
}
fn quantize_f16(n: u32, s: f32) -> f32 {
  let q = f32(i32(n) - 8);
  return quantizeToF16(q * s);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let count = arrayLength(&nibbles);
  let i = gid.x;
  if (i >= count) {
    return;
  }
  let n = nibbles[i] & 15u;
  let s = scales[i];
  out[i] = bitcast<u32>(reference(n, s));
  out[count + i] = bitcast<u32>(offset_folded(n, s));
  out[2u * count + i] = bitcast<u32>(explicit_fma(n, s));
  out[3u * count + i] = bitcast<u32>(fp16_output(n, s));
  out[4u * count + i] = bitcast<u32>(quantize_f16(n, s));
  out[5u * count + i] = pack2x16float(vec2<f32>(f32(i32(n) - 8) * s, 0.0));
}
"""
EXPRESSIONS = ("reference", "offset_folded", "explicit_fma", "fp16_output", "quantize_f16", "fp16_bits")
F32_MAX = float(np.finfo(np.float32).max)


def scale_classes(seed: int = 0) -> dict[str, np.ndarray]:
    """Scales by the behaviour they can expose: typical table scales (~0.3, every nibble rounds), 8s overflowing
    (only the fma form sees inf), n*s overflowing but not 8s (only the separate form sees inf), fp32 subnormal."""
    rng = np.random.default_rng(seed)
    return {"typical": rng.uniform(0.02, 0.5, 256).astype(np.float32),
            "8s_overflows": np.float32([F32_MAX / 7.5, F32_MAX / 7.2, F32_MAX / 7.01]),
            "ns_overflows": np.float32([F32_MAX / 14, F32_MAX / 12, F32_MAX / 9]),
            "subnormal": np.float32([1e-39, 3e-40, 1.1e-38])}


def models(n: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """What each rounding model gives, as float32 (numpy's float32 arithmetic is IEEE, round to nearest even)."""
    with np.errstate(over="ignore", invalid="ignore"):
        q = n.astype(np.float64) - 8
        eight_s = np.float32(8) * s  # exact unless it overflows
        reference = (q * s.astype(np.float64)).astype(np.float32)  # q*s is exact in fp64: one rounding
        separate = (n.astype(np.float32) * s) - eight_s
        fused = (n.astype(np.float64) * s.astype(np.float64) - eight_s.astype(np.float64)).astype(np.float32)
        f16 = reference.astype(np.float16)
        f16_ftz = np.where(np.abs(f16) < np.float16(2.0 ** -14), np.float16(0) * np.sign(f16), f16)
    return {"reference": reference, "separate": separate, "fma": fused, "f16": f16.astype(np.float32),
            "f16 ftz": f16_ftz.astype(np.float32)}


def classify(got: np.ndarray, model: dict[str, np.ndarray]) -> dict[str, int]:
    """Per model, how many outputs equal it bit for bit (NaN matches NaN)."""
    same = {}
    for name, value in model.items():
        equal = (got.view(np.uint32) == value.view(np.uint32)) | (np.isnan(got) & np.isnan(value))
        same[name] = int(equal.sum())
    return same


def run_kernel(backend_name: str, nibbles: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    from q4gsw.matrix.load import load_matrix
    from q4gsw.webgpu.adapter import select_adapter
    from q4gsw.webgpu.provision import provision

    backend = load_matrix(os.path.join(os.path.dirname(__file__), "..", "matrix.toml")).backend(backend_name)
    os.environ.update(provision(backend))  # the Vulkan loader reads its ICD variables when wgpu first loads it
    adapter, info = select_adapter(backend)
    import wgpu

    device = adapter.request_device_sync()
    usage = wgpu.BufferUsage
    count = len(nibbles)
    out = device.create_buffer(size=len(EXPRESSIONS) * count * 4, usage=usage.STORAGE | usage.COPY_SRC)
    inputs = [device.create_buffer_with_data(data=a.tobytes(), usage=usage.STORAGE) for a in (nibbles, scales)]
    pipeline = device.create_compute_pipeline(layout="auto", compute={
        "module": device.create_shader_module(code=KERNEL), "entry_point": "main"})
    group = device.create_bind_group(layout=pipeline.get_bind_group_layout(0), entries=[
        {"binding": b, "resource": {"buffer": buffer, "offset": 0, "size": buffer.size}}
        for b, buffer in enumerate([out, *inputs])])
    encoder = device.create_command_encoder()
    compute = encoder.begin_compute_pass()
    compute.set_pipeline(pipeline)
    compute.set_bind_group(0, group)
    compute.dispatch_workgroups((count + 63) // 64)
    compute.end()
    device.queue.submit([encoder.finish()])
    words = np.frombuffer(device.queue.read_buffer(out), dtype=np.uint32).reshape(len(EXPRESSIONS), count)
    return words, {"adapter": info.name, "driver": info.driver, "webgpu": info.webgpu, "api": info.api}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="lavapipe", help="a matrix.toml backend (native, native-dawn, ...)")
    parser.add_argument("--json", help="write the counts (and every output word) here")
    args = parser.parse_args()
    classes = scale_classes()
    nib = np.concatenate([np.tile(np.arange(16, dtype=np.uint32), len(s)) for s in classes.values()])
    sc = np.concatenate([np.repeat(s, 16) for s in classes.values()])
    words, adapter = run_kernel(args.backend, nib, sc)
    print(f"{adapter['adapter']} through {adapter['webgpu']} ({adapter['api']}, {adapter['driver']})")
    report: dict[str, Any] = {**adapter, "backend": args.backend, "classes": {}}
    start = 0
    for name, scales in classes.items():
        part = slice(start, start + 16 * len(scales))
        start = part.stop
        model = models(nib[part], sc[part])
        counts = {e: classify(words[k, part].view(np.float32), model) for k, e in enumerate(EXPRESSIONS[:5])}
        with np.errstate(over="ignore"):  # beyond f16's range: inf, as pack2x16float may give
            f16_bits = (model["reference"].astype(np.float16).view(np.uint16).astype(np.uint32) == words[5, part])
        counts["fp16_bits"] = {"f16": int(f16_bits.sum())}
        report["classes"][name] = {"outputs": part.stop - part.start, "matches": counts,
                                   "scales": [float(s) for s in scales]}
        print(f"{name} ({part.stop - part.start} outputs):")
        for expression, same in counts.items():
            print(f"  {expression:14s} " + ", ".join(f"{m} {c}" for m, c in same.items()))
    if args.json:
        report["words"] = {e: words[k].tolist() for k, e in enumerate(EXPRESSIONS)}
        report["inputs"] = {"nibbles": nib.tolist(), "scales": [float(s) for s in sc]}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
