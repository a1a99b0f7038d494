// q4gsw tiled GEMM for M > 1 on lavapipe (llvmpipe's LLVM codegen keeps 8x8 blocks in registers).
// ExecuTorch q4gsw binding layout (see docs/kernels.md "Kernel interface"). q4gsw_tiled.wgsl's 8x8 blocks and
// arithmetic (exact nibble decode, fp32 sums in k order) with cpu_tiled.wgsl's x sharing: lane l of
// each quad of the subgroup loads x[m, k + l] and x[m, k + 4 + l] and subgroupBroadcast from lanes
// 0..3 hands every lane the 4 consecutive k. On lavapipe at 256x2048x2048 this measured ~1.5x
// cpu_tiled's 4x4 blocks per CPU-second and ~2x q4gsw_tiled; on SwiftShader (Subzero) the 4x4
// blocks of cpu_tiled win, so matrix.toml gives each CPU backend its own kernel.
// Correct for any subgroup size that is a multiple of 4 as long as every invocation stays active
// to the end: invocations past N compute a copy of the last column block and skip only the stores.
// No `enable subgroups;`: the naga in wgpu-native 0.32 rejects it (the "subgroup" feature suffices).
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

override wg_size: u32 = 64u;  // column blocks per workgroup (matrix.toml's dispatch divides by 8 * wg_size)
const TM: u32 = 8u;  // output rows per invocation
const TN: u32 = 8u;  // output columns per invocation; N % 8 == 0, so column blocks are never partial

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

@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
  let valid = gid.x * TN < params.N;
  let n0 = min(gid.x * TN, params.N - TN);
  let m0 = gid.y * TM;
  let K = params.K;
  let wpr = params.K_packed / 4u;
  let M1 = params.M - 1u;
  let l = sid & 3u;
  let r0 = min(m0 + 0u, M1) * K + l;
  let r1 = min(m0 + 1u, M1) * K + l;
  let r2 = min(m0 + 2u, M1) * K + l;
  let r3 = min(m0 + 3u, M1) * K + l;
  let r4 = min(m0 + 4u, M1) * K + l;
  let r5 = min(m0 + 5u, M1) * K + l;
  let r6 = min(m0 + 6u, M1) * K + l;
  let r7 = min(m0 + 7u, M1) * K + l;
  let wb = n0 * wpr;
  let wpg = params.group_size / 8u;
  var a0_0 = mat4x4<f32>();
  var a0_1 = mat4x4<f32>();
  var a1_0 = mat4x4<f32>();
  var a1_1 = mat4x4<f32>();
  for (var g = 0u; g < K / params.group_size; g = g + 1u) {
    let s0 = s4(g * params.padded_N + n0 + 0u);
    let s1 = s4(g * params.padded_N + n0 + 4u);
    for (var wi = g * wpg; wi < (g + 1u) * wpg; wi = wi + 1u) {
      let k = wi * 8u;
      let w0 = w4(wb + 0u * wpr + wi, wpr);
      let w1 = w4(wb + 4u * wpr + wi, wpr);
      let x0l = mat4x4<f32>(bx(t_input[r0 + k]), bx(t_input[r1 + k]), bx(t_input[r2 + k]), bx(t_input[r3 + k]));
      let x0h = mat4x4<f32>(bx(t_input[r0 + k + 4u]), bx(t_input[r1 + k + 4u]), bx(t_input[r2 + k + 4u]), bx(t_input[r3 + k + 4u]));
      let x1l = mat4x4<f32>(bx(t_input[r4 + k]), bx(t_input[r5 + k]), bx(t_input[r6 + k]), bx(t_input[r7 + k]));
      let x1h = mat4x4<f32>(bx(t_input[r4 + k + 4u]), bx(t_input[r5 + k + 4u]), bx(t_input[r6 + k + 4u]), bx(t_input[r7 + k + 4u]));
      let q0l = dq_lo(w0, s0);
      let q0h = dq_hi(w0, s0);
      a0_0 = a0_0 + q0l * x0l + q0h * x0h;
      a0_1 = a0_1 + q0l * x1l + q0h * x1h;
      let q1l = dq_lo(w1, s1);
      let q1h = dq_hi(w1, s1);
      a1_0 = a1_0 + q1l * x0l + q1h * x0h;
      a1_1 = a1_1 + q1l * x1l + q1h * x1h;
    }
  }
  if (valid) {
    store(m0 + 0u, n0 + 0u, a0_0[0]);
    store(m0 + 1u, n0 + 0u, a0_0[1]);
    store(m0 + 2u, n0 + 0u, a0_0[2]);
    store(m0 + 3u, n0 + 0u, a0_0[3]);
    store(m0 + 4u, n0 + 0u, a0_1[0]);
    store(m0 + 5u, n0 + 0u, a0_1[1]);
    store(m0 + 6u, n0 + 0u, a0_1[2]);
    store(m0 + 7u, n0 + 0u, a0_1[3]);
    store(m0 + 0u, n0 + 4u, a1_0[0]);
    store(m0 + 1u, n0 + 4u, a1_0[1]);
    store(m0 + 2u, n0 + 4u, a1_0[2]);
    store(m0 + 3u, n0 + 4u, a1_0[3]);
    store(m0 + 4u, n0 + 4u, a1_1[0]);
    store(m0 + 5u, n0 + 4u, a1_1[1]);
    store(m0 + 6u, n0 + 4u, a1_1[2]);
    store(m0 + 7u, n0 + 4u, a1_1[3]);
  }
}
