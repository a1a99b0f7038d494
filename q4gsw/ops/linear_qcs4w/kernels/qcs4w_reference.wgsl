// linear_qcs4w reference kernel: deliberately simple, one invocation per output y[m, n], sequential fp32
// accumulation over k in element order. It is both the matrix's kernel for the op and the mutation
// self-test's reference (q4gsw/ops/linear_qcs4w/mutants.py derives every mutant from this text by exact
// substitution of the lines tagged MUT below, so keep those lines unique when editing).
// ExecuTorch's binding layout for et_vk.linear_qcs4w: b0 y f32 [M, N], b1 x f32 [M, K], b2 the weight
// bytes uint8 [N, K_packed] read as little-endian u32 words, b3 per-channel scales f32 [N], b4 Params.
// Dispatch: "ceil(N / wg_size), M".
@group(0) @binding(0) var<storage, read_write> t_out: array<f32>;
@group(0) @binding(1) var<storage, read> t_input: array<f32>;
@group(0) @binding(2) var<storage, read> t_weight: array<u32>;
@group(0) @binding(3) var<storage, read> t_scales: array<f32>;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  K_packed: u32,  // bytes per weight row, ceil(K / 2): rows need not start on a word boundary
}
@group(0) @binding(4) var<uniform> params: Params;

override wg_size: u32 = 64u;

fn load_x(m: u32, k: u32) -> f32 {
  let row = m;  // MUT:row
  let v = t_input[row * params.K + k];  // MUT:x_index
  return v;
}

// The byte holding weight (n, k): rows are K_packed bytes long, packed back to back.
fn weight_byte(n: u32, k: u32) -> u32 {
  let row_start = n * params.K_packed;  // MUT:row_stride
  let byte_index = row_start + k / 2u;
  let word = t_weight[byte_index / 4u];
  let byte_shift = 8u * (byte_index % 4u);  // MUT:byte_order
  return (word >> byte_shift) & 0xFFu;
}

// Even k sits in the high nibble, odd k in the low one; the stored nibble is q + 8.
fn weight_q(n: u32, k: u32) -> i32 {
  let nibble_shift = 4u * (1u - k % 2u);  // MUT:nibble_order
  let nibble = (weight_byte(n, k) >> nibble_shift) & 0xFu;
  return i32(nibble) - 8;  // MUT:offset
}

fn scale(n: u32, k: u32) -> f32 {
  return t_scales[n];  // MUT:scale_index
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
  let k_end = params.K;  // MUT:k_end
  var acc = 0.0;
  for (var k = 0u; k < k_end; k = k + 1u) {
    // q * scale rounded to f32 first, as the op's dequantize_per_channel does; then the product with x.
    let w = f32(weight_q(n, k)) * scale(n, k);
    acc = accumulate(acc, load_x(m, k) * w);
  }
  t_out[m * params.N + n] = acc;  // MUT:store
}
