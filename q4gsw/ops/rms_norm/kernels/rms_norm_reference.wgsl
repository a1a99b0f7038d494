// q4gsw's reference rms_norm: y[r, i] = x[r, i] * inverseSqrt(sum_i x[r, i]^2 / width + eps) * weight[i].
// ExecuTorch's binding layout (b0 y, b1 x, b2 weight, b3 Params). One workgroup per row: invocation t sums its
// own contiguous chunk of the row in order, then invocation 0 adds the wg_size partial sums in order (no tree),
// and every invocation scales its chunk. Simple on purpose: the op's kernel in matrix.toml and the mutation
// self-test's reference (q4gsw/ops/rms_norm/mutants.py edits this text).
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
struct Params { rows: u32, width: u32, eps: f32, _pad: u32 }
@group(0) @binding(3) var<uniform> params: Params;

override wg_size: u32 = 64u;
var<workgroup> partial: array<f32, wg_size>;
var<workgroup> row_scale: f32;

@compute @workgroup_size(wg_size)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = wid.x;  // one row per workgroup: uniform, so the barriers below are in uniform control flow
  if (row >= params.rows) {
    return;
  }
  let width = params.width;
  let chunk = (width + wg_size - 1u) / wg_size;
  let start = min(t * chunk, width);
  let end = min(start + chunk, width);
  let base = row * width;

  var squares = 0.0;
  for (var i = start; i < end; i = i + 1u) {
    let v = x[base + i];
    squares = squares + v * v;
  }
  partial[t] = squares;
  workgroupBarrier();
  if (t == 0u) {
    var total = 0.0;
    for (var j = 0u; j < wg_size; j = j + 1u) {
      total = total + partial[j];
    }
    row_scale = inverseSqrt(total / f32(width) + params.eps);
  }
  workgroupBarrier();
  let scale = row_scale;
  for (var k = start; k < end; k = k + 1u) {
    y[base + k] = x[base + k] * scale * weight[k];
  }
}
