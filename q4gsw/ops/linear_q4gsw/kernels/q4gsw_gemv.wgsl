// q4gsw GEMV for M == 1 (decode). ExecuTorch q4gsw binding layout (see docs/kernels.md "Kernel interface").
// Each invocation owns 8 output columns and walks all of K, one packed word (8 k) per step; the
// 8 x values of a step are shared by the 8 columns. Invocations never cooperate (no reduction,
// no barrier), so any N works with ceil(N / (8 * wg_size)) workgroups (lm_head: 251 at 64).
//
// Why it looks like this (CPU Vulkan adapters, SwiftShader especially, run each invocation as one
// lane of a 4-wide SIMD "subgroup" and compile with Subzero):
// - every load with a per-invocation index is an emulated gather (4 branchy scalar loads), so each
//   loaded x value and weight word is reused across as many outputs as the registers allow;
// - no dynamically indexed private arrays and no variable shifts (both are scalarised/spilled):
//   accumulators are mat4x4/vec4 values, and nibble j is moved to the top of the word with a
//   multiply by the constant 2^(28-4j) instead of a shift;
// - nibble decode is exact: w ^ 0x88888888 turns each nibble n into two's-complement (n - 8) in
//   its top 4 bits, so f32(i32(bits & 0xF0000000)) == (n - 8) * 2^28, and 2^-28 is folded into
//   the scale (a power-of-two multiply, exact);
// - the k-sum stays a plain fp32 dot product: acc += sum of 4 products (mat4x4 * vec4/mat4x4),
//   in k order, so the rounding error grows like a dot product (see docs/error-model.md).
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

override wg_size: u32 = 64u;
const TN: u32 = 8u;  // output columns per invocation; N % 8 == 0, so blocks are never partial

// (nibble j of each word - 8) * 2^28, for mul = 2^(28 - 4j); see the header.
fn nib(w: vec4<u32>, mul: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>((w * mul) & vec4<u32>(0xF0000000u)));
}

fn dq_lo(w: vec4<u32>, s: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(nib(w, 0x10000000u) * s, nib(w, 0x1000000u) * s, nib(w, 0x100000u) * s, nib(w, 0x10000u) * s);
}

fn dq_hi(w: vec4<u32>, s: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(nib(w, 0x1000u) * s, nib(w, 0x100u) * s, nib(w, 0x10u) * s, nib(w, 0x1u) * s);
}

fn x4(i: u32) -> vec4<f32> {
  return vec4<f32>(t_input[i], t_input[i + 1u], t_input[i + 2u], t_input[i + 3u]);
}

fn w4(i: u32, wpr: u32) -> vec4<u32> {
  return vec4<u32>(t_weight[i], t_weight[i + wpr], t_weight[i + 2u * wpr], t_weight[i + 3u * wpr]) ^ vec4<u32>(0x88888888u);
}

fn s4(i: u32) -> vec4<f32> {
  return vec4<f32>(t_scales[i], t_scales[i + 1u], t_scales[i + 2u], t_scales[i + 3u]) * (1.0 / 268435456.0);
}

fn store(n: u32, v: vec4<f32>) {
  var y = v;
  if (params.has_bias != 0u) {
    y = y + vec4<f32>(t_bias[n], t_bias[n + 1u], t_bias[n + 2u], t_bias[n + 3u]);
  }
  t_out[n] = y.x;
  t_out[n + 1u] = y.y;
  t_out[n + 2u] = y.z;
  t_out[n + 3u] = y.w;
}

@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n0 = gid.x * TN;
  if (n0 >= params.N) { return; }
  let wpr = params.K_packed / 4u;
  let wb = n0 * wpr;
  let wpg = params.group_size / 8u;
  var a0 = vec4<f32>();
  var a1 = vec4<f32>();
  for (var g = 0u; g < params.K / params.group_size; g = g + 1u) {
    let sa = s4(g * params.padded_N + n0);
    let sb = s4(g * params.padded_N + n0 + 4u);
    for (var wi = g * wpg; wi < (g + 1u) * wpg; wi = wi + 1u) {
      let k = wi * 8u;
      let wa = w4(wb + wi, wpr);
      let wbb = w4(wb + 4u * wpr + wi, wpr);
      let xl = x4(k);
      let xh = x4(k + 4u);
      a0 = a0 + dq_lo(wa, sa) * xl + dq_hi(wa, sa) * xh;
      a1 = a1 + dq_lo(wbb, sb) * xl + dq_hi(wbb, sb) * xh;
    }
  }
  store(n0, a0);
  store(n0 + 4u, a1);
}
