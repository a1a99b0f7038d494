// q4gsw GEMV for M == 1 (decode). ExecuTorch q4gsw binding layout (see README "Kernel interface").
// Each workgroup owns COLS output columns and splits K across its invocations, so one u32 word of
// packed weights (8 nibbles) is unpacked per step; partial sums meet in a workgroup tree reduction.
// Grid-strided over column blocks so lm_head (N = 128256) fits the per-dimension dispatch limit.
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

override wg_size: u32 = 64u;  // must be a power of two (tree reduction)
const COLS: u32 = 4u;
var<workgroup> partial: array<vec4<f32>, wg_size>;

fn dot_word(word: u32, k0: u32, n: u32) -> f32 {
  // 8 consecutive k share one scale when group_size % 8 == 0; look it up per element otherwise.
  var sum = 0.0;
  for (var j = 0u; j < 8u; j = j + 1u) {
    let k = k0 + j;
    let q = f32(i32((word >> (4u * j)) & 0xFu) - 8);
    sum = sum + t_input[k] * q * t_scales[(k / params.group_size) * params.padded_N + n];
  }
  return sum;
}

@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let words_per_row = params.K_packed / 4u;
  let blocks = (params.N + COLS - 1u) / COLS;
  for (var block = wid.x; block < blocks; block = block + groups.x) {
    let n0 = block * COLS;
    var acc = vec4<f32>(0.0);
    for (var w = lid.x; w < words_per_row; w = w + wg_size) {
      let k0 = w * 8u;
      for (var c = 0u; c < COLS; c = c + 1u) {
        let n = min(n0 + c, params.N - 1u);
        acc[c] = acc[c] + dot_word(t_weight[n * words_per_row + w], k0, n);
      }
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var stride = wg_size / 2u; stride > 0u; stride = stride / 2u) {
      if (lid.x < stride) {
        partial[lid.x] = partial[lid.x] + partial[lid.x + stride];
      }
      workgroupBarrier();
    }
    if (lid.x < COLS && n0 + lid.x < params.N) {
      var v = partial[0][lid.x];
      if (params.has_bias != 0u) {
        v = v + t_bias[n0 + lid.x];
      }
      t_out[n0 + lid.x] = v;
    }
    workgroupBarrier();
  }
}
