// q4gsw GEMV for M == 1 on CPU adapters (SwiftShader, lavapipe) that expose subgroups.
// ExecuTorch q4gsw binding layout (see docs/kernels.md "Kernel interface"). q4gsw_gemv.wgsl (8 output
// columns per invocation, exact nibble decode, fp32 sums in k order; see its header) with the x
// loads shared: x is the same for every invocation, and a load with a non-constant index costs 4
// branchy scalar loads on SwiftShader whatever the addresses, so lane l of each quad of the
// subgroup loads x[k + l] and x[k + 4 + l] and subgroupBroadcast from lanes 0..3 hands every lane
// the 8 values of a k step. Measured ~1.3x q4gsw_gemv on lavapipe at 1x2048x128256, ~1.05x on
// SwiftShader (where the weight loads and the decode dominate).
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

override wg_size: u32 = 64u;
const TN: u32 = 8u;  // output columns per invocation; N % 8 == 0, so blocks are never partial

// (nibble j of each word - 8) * 2^28, for mul = 2^(28 - 4j); see q4gsw_gemv.wgsl's header.
fn nib(w: vec4<u32>, mul: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>((w * mul) & vec4<u32>(0xF0000000u)));
}

fn dq_lo(w: vec4<u32>, s: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(nib(w, 0x10000000u) * s, nib(w, 0x1000000u) * s, nib(w, 0x100000u) * s, nib(w, 0x10000u) * s);
}

fn dq_hi(w: vec4<u32>, s: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(nib(w, 0x1000u) * s, nib(w, 0x100u) * s, nib(w, 0x10u) * s, nib(w, 0x1u) * s);
}

fn w4(i: u32, wpr: u32) -> vec4<u32> {
  return vec4<u32>(t_weight[i], t_weight[i + wpr], t_weight[i + 2u * wpr], t_weight[i + 3u * wpr]) ^ vec4<u32>(0x88888888u);
}

fn s4(i: u32) -> vec4<f32> {
  return vec4<f32>(t_scales[i], t_scales[i + 1u], t_scales[i + 2u], t_scales[i + 3u]) * (1.0 / 268435456.0);
}

// x of lanes 0..3 (each loaded its own k), as 4 consecutive k.
fn bx(v: f32) -> vec4<f32> {
  return vec4<f32>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u));
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
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
  let valid = gid.x * TN < params.N;
  let n0 = min(gid.x * TN, params.N - TN);
  let l = sid & 3u;
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
      let xl = bx(t_input[k + l]);
      let xh = bx(t_input[k + 4u + l]);
      a0 = a0 + dq_lo(wa, sa) * xl + dq_hi(wa, sa) * xh;
      a1 = a1 + dq_lo(wbb, sb) * xl + dq_hi(wbb, sb) * xh;
    }
  }
  if (valid) {
    store(n0, a0);
    store(n0 + 4u, a1);
  }
}
