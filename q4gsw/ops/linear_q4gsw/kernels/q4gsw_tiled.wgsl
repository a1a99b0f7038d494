// q4gsw tiled GEMM for M > 1 (prefill). ExecuTorch q4gsw binding layout (see docs/kernels.md "Kernel interface").
// Each invocation computes an 8 (rows) x 8 (columns) output block held in four mat4x4 accumulators
// (column r of a matrix = 4 output columns of one row); a workgroup is wg_size column blocks of
// the same 8 rows, so the invocations of a SIMD group read the same x addresses (cache-hot).
// No workgroup memory and no barriers: on SwiftShader a barrier turns every subgroup into a
// coroutine and workgroup loads are gathers as well, which measured slower than this.
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

override wg_size: u32 = 64u;  // column blocks per workgroup (matrix.toml's dispatch divides by 8 * wg_size)
const TM: u32 = 8u;  // output rows per invocation
const TN: u32 = 8u;  // output columns per invocation; N % 8 == 0, so column blocks are never partial

// (nibble j of each word - 8) * 2^28, for mul = 2^(28 - 4j); see the header.
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

fn x4(i: u32) -> vec4<f32> {
  return vec4<f32>(t_input[i], t_input[i + 1u], t_input[i + 2u], t_input[i + 3u]);
}

// Rows i/K .. i/K + 3 of x at column i % K, as a 4 (k) x 4 (rows) matrix.
fn xm(i: u32, K: u32) -> mat4x4<f32> {
  return mat4x4<f32>(x4(i), x4(i + K), x4(i + 2u * K), x4(i + 3u * K));
}

// Word i of 4 consecutive weight rows, nibbles pre-flipped for nib().
fn w4(i: u32, wpr: u32) -> vec4<u32> {
  return vec4<u32>(t_weight[i], t_weight[i + wpr], t_weight[i + 2u * wpr], t_weight[i + 3u * wpr]) ^ vec4<u32>(0x88888888u);
}

fn s4(i: u32) -> vec4<f32> {
  return vec4<f32>(t_scales[i], t_scales[i + 1u], t_scales[i + 2u], t_scales[i + 3u]) * (1.0 / 268435456.0);
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
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n0 = gid.x * TN;
  let m0 = gid.y * TM;
  if (n0 >= params.N) { return; }
  let K = params.K;
  let wpr = params.K_packed / 4u;
  // Rows past M re-read row M-1 (never stored): the row loads stay branch-free.
  let x0 = min(m0, params.M - 1u) * K;
  let x1 = min(m0 + 4u, params.M - 1u) * K;
  let wb = n0 * wpr;
  let wpg = params.group_size / 8u;
  var a00 = mat4x4<f32>();
  var a01 = mat4x4<f32>();
  var a10 = mat4x4<f32>();
  var a11 = mat4x4<f32>();
  for (var g = 0u; g < K / params.group_size; g = g + 1u) {
    let sa = s4(g * params.padded_N + n0);
    let sb = s4(g * params.padded_N + n0 + 4u);
    for (var wi = g * wpg; wi < (g + 1u) * wpg; wi = wi + 1u) {
      let k = wi * 8u;
      let wa = w4(wb + wi, wpr);
      let wbb = w4(wb + 4u * wpr + wi, wpr);
      let x0l = xm(x0 + k, K);
      let x0h = xm(x0 + k + 4u, K);
      let x1l = xm(x1 + k, K);
      let x1h = xm(x1 + k + 4u, K);
      let qal = dq_lo(wa, sa);
      let qah = dq_hi(wa, sa);
      let qbl = dq_lo(wbb, sb);
      let qbh = dq_hi(wbb, sb);
      a00 = a00 + qal * x0l + qah * x0h;
      a01 = a01 + qal * x1l + qah * x1h;
      a10 = a10 + qbl * x0l + qbh * x0h;
      a11 = a11 + qbl * x1l + qbh * x1h;
    }
  }
  store(m0, n0, a00[0]); store(m0 + 1u, n0, a00[1]); store(m0 + 2u, n0, a00[2]); store(m0 + 3u, n0, a00[3]);
  store(m0 + 4u, n0, a01[0]); store(m0 + 5u, n0, a01[1]); store(m0 + 6u, n0, a01[2]); store(m0 + 7u, n0, a01[3]);
  store(m0, n0 + 4u, a10[0]); store(m0 + 1u, n0 + 4u, a10[1]); store(m0 + 2u, n0 + 4u, a10[2]); store(m0 + 3u, n0 + 4u, a10[3]);
  store(m0 + 4u, n0 + 4u, a11[0]); store(m0 + 5u, n0 + 4u, a11[1]); store(m0 + 6u, n0 + 4u, a11[2]); store(m0 + 7u, n0 + 4u, a11[3]);
}
