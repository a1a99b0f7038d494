// q4gsw's reference sdpa_softmax: each row of w [num_rows, row_width] through a max-shifted softmax. One invocation
// per row: its max, the sum of exp(x - max) in order, then exp(x - max) / sum.
@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
struct Params { num_rows: u32, row_width: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let row = gid.x + gid.y * groups.x * 64u;
  if (row >= params.num_rows) {
    return;
  }
  let base = row * params.row_width;
  var top = w[base];
  for (var i = 1u; i < params.row_width; i = i + 1u) {
    top = max(top, w[base + i]);
  }
  var total = 0.0;
  for (var i = 0u; i < params.row_width; i = i + 1u) {
    total = total + exp(w[base + i] - top);
  }
  for (var i = 0u; i < params.row_width; i = i + 1u) {
    p[base + i] = exp(w[base + i] - top) / total;
  }
}
