// q4gsw tiled GEMM for M > 1 on CPU Vulkan adapters (SwiftShader, lavapipe) that expose subgroups.
// ExecuTorch q4gsw binding layout (see docs/kernels.md "Kernel interface"). Same arithmetic as
// q4gsw_tiled.wgsl (exact nibble decode, fp32 sums in k order), different data movement:
// - each invocation computes a 4 (rows) x 16 (columns) output block in four mat4x4 accumulators, one per
//   4-column quarter. On SwiftShader (Subzero) the x values of a k step cost more than the weights and
//   the arithmetic (loads plus broadcasts, below), so the wider the block, the more columns share them:
//   measured per CPU-second, 4x16 ~1.3x 4x4, ahead of 4x8 and level with 4x32; taller blocks (8x8, 8x4) and 2-word
//   unrolled k steps were slower: the extra live values spill;
// - SwiftShader turns every load with a non-constant index into 4 branchy scalar loads (one per
//   SIMD lane), even when all lanes read the same address. x is the same for every column block of
//   a row, so instead of each lane loading all 8 x values of a k step, lane l (of each group of 4
//   lanes of the subgroup) loads x[m, k + l] and x[m, k + 4 + l], and subgroupBroadcast from lanes
//   0..3 hands each lane the 4 consecutive k: one load of 4 useful values instead of 4 loads of one.
//   Measured 2x faster per CPU-second than without the broadcasts at the same 4x4 block;
// - x staged in workgroup memory and read at constant indices (no broadcasts) measured slower.
// Correct for any subgroup size that is a multiple of 4 (WebGPU: a power of two >= 4) as long as
// the 4 lanes of a quad share the workgroup (same rows) and stay active to the end: invocations
// past N compute a copy of the last column block and skip only the stores. N % 8 == 0 but not always
// N % 16 == 0 (edge_partial_tiles: 136): the last block then starts at N - 16 and rewrites the columns
// it shares with the block before with the same values (the same sums in the same order). Needs N >= 16.
// No `enable subgroups;`: the naga in wgpu-native 0.32 rejects it and accepts the builtins with the
// "subgroup" feature.
@group(0) @binding(0) var<storage, read_write> t_out: array<f32>;
@group(0) @binding(1) var<storage, read> t_input: array<f32>;
@group(0) @binding(2) var<storage, read> t_weight: array<u32>;
@group(0) @binding(3) var<storage, read> t_scales: array<f32>;
@group(0) @binding(4) var<storage, read> t_bias: array<f32>;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  K_packed: u32,
  group_size: u32,
  padded_N: u32,
  has_bias: u32,
  _pad: u32,
}
@group(0) @binding(5) var<uniform> params: Params;

override wg_size: u32 = 64u;  // column blocks per workgroup (matrix.toml's dispatch divides by 16 * wg_size)
const TM: u32 = 4u;  // output rows per invocation
const TN: u32 = 16u;  // output columns per invocation, as 4 quarters of 4

// (nibble j of each word - 8) * 2^28, for mul = 2^(28 - 4j); see q4gsw_tiled.wgsl's header.
fn nib(w: vec4<u32>, mul: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>((w * mul) & vec4<u32>(0xF0000000u)));
}

// Dequantized weights of k = 0..3 (matrix columns) for 4 output columns (rows), scaled by s * 2^-28.
fn dq_lo(w: vec4<u32>, s: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(nib(w, 0x10000000u) * s, nib(w, 0x1000000u) * s, nib(w, 0x100000u) * s, nib(w, 0x10000u) * s);
}

fn dq_hi(w: vec4<u32>, s: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(nib(w, 0x1000u) * s, nib(w, 0x100u) * s, nib(w, 0x10u) * s, nib(w, 0x1u) * s);
}

// Word i of 4 consecutive weight rows, nibbles pre-flipped for nib().
fn w4(i: u32, wpr: u32) -> vec4<u32> {
  return vec4<u32>(t_weight[i], t_weight[i + wpr], t_weight[i + 2u * wpr], t_weight[i + 3u * wpr]) ^ vec4<u32>(0x88888888u);
}

fn s4(i: u32) -> vec4<f32> {
  return vec4<f32>(t_scales[i], t_scales[i + 1u], t_scales[i + 2u], t_scales[i + 3u]) * (1.0 / 268435456.0);
}

// x of lanes 0..3 (each loaded its own k), as the 4 consecutive k of one row.
fn bx(v: f32) -> vec4<f32> {
  return vec4<f32>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u));
}

// One quarter's k step: word i of its 4 rows against the 4 x rows' 8 k, added to acc in k order.
fn step(acc: mat4x4<f32>, i: u32, wpr: u32, s: vec4<f32>, xl: mat4x4<f32>, xh: mat4x4<f32>) -> mat4x4<f32> {
  let w = w4(i, wpr);
  return acc + dq_lo(w, s) * xl + dq_hi(w, s) * xh;
}

fn store(m: u32, n: u32, v: vec4<f32>) {
  if (m < params.M) {
    var y = v;
    if (params.has_bias != 0u) {
      y = y + vec4<f32>(t_bias[n], t_bias[n + 1u], t_bias[n + 2u], t_bias[n + 3u]);
    }
    let o = m * params.N + n;
    t_out[o] = y.x;
    t_out[o + 1u] = y.y;
    t_out[o + 2u] = y.z;
    t_out[o + 3u] = y.w;
  }
}

fn store_rows(m0: u32, n: u32, acc: mat4x4<f32>) {
  store(m0, n, acc[0]);
  store(m0 + 1u, n, acc[1]);
  store(m0 + 2u, n, acc[2]);
  store(m0 + 3u, n, acc[3]);
}

@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
  let valid = gid.x * TN < params.N;
  let n0 = min(gid.x * TN, params.N - TN);
  let m0 = gid.y * TM;
  let K = params.K;
  let wpr = params.K_packed / 4u;
  // Rows past M re-read row M-1 (never stored). Lane l of each quad reads k + l (and k + 4 + l).
  let M1 = params.M - 1u;
  let l = sid & 3u;
  let r0 = min(m0, M1) * K + l;
  let r1 = min(m0 + 1u, M1) * K + l;
  let r2 = min(m0 + 2u, M1) * K + l;
  let r3 = min(m0 + 3u, M1) * K + l;
  let wb = n0 * wpr;  // quarter q's rows start at wb + 4 * q * wpr
  let wpg = params.group_size / 8u;
  var a0 = mat4x4<f32>();
  var a1 = mat4x4<f32>();
  var a2 = mat4x4<f32>();
  var a3 = mat4x4<f32>();
  for (var g = 0u; g < K / params.group_size; g = g + 1u) {
    let sb = g * params.padded_N + n0;
    let s0 = s4(sb);
    let s1 = s4(sb + 4u);
    let s2 = s4(sb + 8u);
    let s3 = s4(sb + 12u);
    for (var wi = g * wpg; wi < (g + 1u) * wpg; wi = wi + 1u) {
      let k = wi * 8u;
      let xl = mat4x4<f32>(bx(t_input[r0 + k]), bx(t_input[r1 + k]), bx(t_input[r2 + k]), bx(t_input[r3 + k]));
      let xh = mat4x4<f32>(bx(t_input[r0 + k + 4u]), bx(t_input[r1 + k + 4u]), bx(t_input[r2 + k + 4u]), bx(t_input[r3 + k + 4u]));
      a0 = step(a0, wb + wi, wpr, s0, xl, xh);
      a1 = step(a1, wb + 4u * wpr + wi, wpr, s1, xl, xh);
      a2 = step(a2, wb + 8u * wpr + wi, wpr, s2, xl, xh);
      a3 = step(a3, wb + 12u * wpr + wi, wpr, s3, xl, xh);
    }
  }
  if (valid) {
    store_rows(m0, n0, a0);
    store_rows(m0, n0 + 4u, a1);
    store_rows(m0, n0 + 8u, a2);
    store_rows(m0, n0 + 12u, a3);
  }
}
