// linear_dq8ca_q4gsw reference kernel (q4gsw's own): deliberately simple, one invocation per output y[m, n],
// sequential fp32 accumulation over K in element order, given the per-row activation qparams in b2/b3.
//   y[m, n] = s[m] * sum_k (clamp(round(x[m, k] / s[m]) + z[m], -128, 127) - z[m]) * q[n, k] * scales[k / gs, n]
// ExecuTorch's binding layout for et_vk.linear_dq8ca_q4gsw: b0 out, b1 x, b2 input_scale f32[M], b3 input_zp
// (int8[M], 4 per u32 word, row r in byte r % 4), b4 packed int4 weights (linear_q4gsw's), b5 scales
// [K / group_size, padded_N], b6 bias, b7 Params. Dispatch: "ceil(N / wg_size), M".
// q4gsw/ops/linear_dq8ca_q4gsw/mutants.py derives mutants from this text by exact substitution of the lines
// tagged MUT, so keep those lines unique when editing.
@group(0) @binding(0) var<storage, read_write> t_out: array<f32>;
@group(0) @binding(1) var<storage, read> t_input: array<f32>;
@group(0) @binding(2) var<storage, read> t_input_scale: array<f32>;
@group(0) @binding(3) var<storage, read> t_input_zp: array<u32>;
@group(0) @binding(4) var<storage, read> t_weight: array<u32>;
@group(0) @binding(5) var<storage, read> t_scales: array<f32>;
@group(0) @binding(6) var<storage, read> t_bias: array<f32>;

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
@group(0) @binding(7) var<uniform> params: Params;

override wg_size: u32 = 64u;

// The int8 zero point of row m: byte m % 4 of word m / 4, sign-extended.
fn row_zero_point(m: u32) -> i32 {
  let byte = (t_input_zp[m / 4u] >> (8u * (m % 4u))) & 0xFFu;  // MUT:zp_byte
  return bitcast<i32>(byte << 24u) >> 24u;  // MUT:zp_sign_extend
}

// xq - z with xq = clamp(round(x / s) + z, -128, 127) (round: half to even, as torch.round).
fn centered_code(x: f32, s: f32, z: i32) -> f32 {
  let xq = clamp(i32(round(x / s)) + z, -128, 127);  // MUT:quantize
  return f32(xq - z);
}

fn weight(n: u32, k: u32) -> f32 {
  let word = t_weight[n * (params.K_packed / 4u) + k / 8u];
  let q = i32((word >> (4u * (k % 8u))) & 0xFu) - 8;
  let g = k / params.group_size;  // MUT:group
  return f32(q) * t_scales[g * params.padded_N + n];
}

@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  let m = gid.y;
  if (n >= params.N || m >= params.M) {
    return;
  }
  let s = t_input_scale[m];  // MUT:row_scale
  let z = row_zero_point(m);
  var acc = 0.0;
  for (var k = 0u; k < params.K; k = k + 1u) {
    acc = acc + centered_code(t_input[m * params.K + k], s, z) * weight(n, k);
  }
  var y = s * acc;  // MUT:output_scale
  if (params.has_bias != 0u) {
    y = y + t_bias[n];
  }
  t_out[m * params.N + n] = y;
}
