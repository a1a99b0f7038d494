// q4gsw reference kernel for the mutation self-test (python -m q4gsw mutants): deliberately simple,
// one invocation per output y[m, n], sequential fp32 accumulation over K in element order.
// ExecuTorch q4gsw binding layout (docs/kernels.md "Kernel interface"). Dispatch: "ceil(N / wg_size), M".
// q4gsw/ops/linear_q4gsw/mutants.py derives every mutant from this text by exact substitution of the lines tagged
// below, so keep those lines unique when editing.
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

fn load_x(m: u32, k: u32) -> f32 {
  let row = m;  // MUT:row
  let v = t_input[row * params.K + k];
  return v;  // MUT:clamp
}

fn nibble(word: u32, j: u32) -> f32 {
  let shift = 4u * j;  // MUT:shift
  let q = i32((word >> shift) & 0xFu) - 8;  // MUT:offset
  return f32(q);
}

fn scale(k: u32, n: u32) -> f32 {
  let g = k / params.group_size;  // MUT:group
  return t_scales[g * params.padded_N + n];  // MUT:scale_index
}

fn accumulate(acc: f32, term: f32) -> f32 {
  return acc + term;  // MUT:acc
}

@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  let m = gid.y;
  let n_end = params.N;  // MUT:n_end
  if (n >= n_end || m >= params.M) {
    return;
  }
  let words_per_row = params.K_packed / 4u;
  let words = words_per_row;  // MUT:words
  var acc = 0.0;
  for (var w = 0u; w < words; w = w + 1u) {
    let word = t_weight[n * words_per_row + w];
    for (var j = 0u; j < 8u; j = j + 1u) {
      let k = w * 8u + j;
      acc = accumulate(acc, load_x(m, k) * (nibble(word, j) * scale(k, n)));
    }
  }
  if (params.has_bias != 0u) {
    acc = acc + t_bias[n];
  }
  t_out[m * params.N + n] = acc;  // MUT:store
}
