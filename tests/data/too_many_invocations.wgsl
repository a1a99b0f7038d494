// Fault: @workgroup_size(1024, 1, 1) exceeds max_invocations_per_workgroup (256 on SwiftShader and most
// adapters), so creating the pipeline fails.
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

// One invocation per output element; correct for any M, N, K (dispatch "ceil(M * N / 64)").
fn reference(idx: u32) -> f32 {
  let m = idx / params.N;
  let n = idx % params.N;
  let words_per_row = params.K_packed / 4u;
  var sum = 0.0;
  for (var w = 0u; w < words_per_row; w = w + 1u) {
    let word = t_weight[n * words_per_row + w];
    for (var j = 0u; j < 8u; j = j + 1u) {
      let k = w * 8u + j;
      let q = f32(i32((word >> (4u * j)) & 0xFu) - 8);
      sum = sum + t_input[m * params.K + k] * q * t_scales[(k / params.group_size) * params.padded_N + n];
    }
  }
  return sum;
}

@compute @workgroup_size(1024, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let idx = gid.x;
  if (idx >= params.M * params.N) {
    return;
  }
  t_out[idx] = reference(idx);
}
