// q4gsw test tree (tests/data/etree): a small stand-in for ExecuTorch's M == 1 GEMV, written for q4gsw's
// own tests (not ExecuTorch's kernel). Two output columns per workgroup, grid-strided over column pairs;
// the lanes split each row's u32 words (8 nibbles each) and reduce through workgroup memory.
// Needs M == 1 and K % 8 == 0 (the route's `when`). Dispatch: min(ceil(N / 2), max workgroups per dim).
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

const wg_size: u32 = 64u;
var<workgroup> partial: array<vec2<f32>, 64>;

// One u32 word (k = 8w .. 8w + 7) of row n, dotted with x.
fn word_dot(n: u32, w: u32) -> f32 {
  let word = t_weight[n * (params.K_packed / 4u) + w];
  var sum = 0.0;
  for (var j = 0u; j < 8u; j = j + 1u) {
    let k = 8u * w + j;
    let q = f32(i32((word >> (4u * j)) & 0xFu) - 8);
    sum = sum + t_input[k] * q * t_scales[(k / params.group_size) * params.padded_N + n];
  }
  return sum;
}

@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
  let num_pairs = (params.N + 1u) / 2u;
  let words = params.K_packed / 4u;
  for (var p = wid.x; p < num_pairs; p = p + groups.x) {
    let n0 = 2u * p;
    let n1 = min(n0 + 1u, params.N - 1u);
    var acc = vec2<f32>(0.0, 0.0);
    for (var w = lid.x; w < words; w = w + wg_size) {
      acc = acc + vec2<f32>(word_dot(n0, w), word_dot(n1, w));
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var s = wg_size / 2u; s > 0u; s = s / 2u) {
      if (lid.x < s) {
        partial[lid.x] = partial[lid.x] + partial[lid.x + s];
      }
      workgroupBarrier();
    }
    if (lid.x == 0u) {
      t_out[n0] = partial[0].x;
      if (n0 + 1u < params.N) {
        t_out[n0 + 1u] = partial[0].y;
      }
    }
    workgroupBarrier();
  }
}
