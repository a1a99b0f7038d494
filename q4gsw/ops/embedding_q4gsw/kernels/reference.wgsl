// q4gsw reference kernel of embedding_q4gsw, deliberately simple: one invocation per output out[i, d].
// ExecuTorch's binding layout and Params (backends/webgpu/runtime/ops/embedding_q4gsw/EmbeddingQ4gsw.cpp's
// EmbeddingParams). Dispatch: T = ceil(M * N / wg_size) workgroups folded onto two dimensions,
// "min(T, max_workgroups_per_dimension), ceil(T / min(T, max_workgroups_per_dimension))": the full-vocab
// gather needs 4M workgroups. q4gsw/ops/embedding_q4gsw/mutants.py derives every mutant from this text by exact
// substitution of the lines tagged below, so keep those lines unique when editing.
@group(0) @binding(0) var<storage, read_write> t_out: array<f32>;
@group(0) @binding(1) var<storage, read> t_indices: array<i32>;
@group(0) @binding(2) var<storage, read> t_weight: array<u32>;
@group(0) @binding(3) var<storage, read> t_scales: array<f32>;

struct Params {
  embed_dim: u32,
  blocks_per_row: u32,
  num_indices: u32,
  group_size: u32,
  groups_per_row: u32,
  bytes_per_row: u32,
  total_blocks: u32,
  is_linear_weight: u32,
}
@group(0) @binding(4) var<uniform> params: Params;

override wg_size: u32 = 64u;

fn table_row(i: u32) -> u32 {
  let token = u32(t_indices[i]);  // MUT:token
  return token;
}

// The dim's nibble: byte dim / 2 of the row; with is_linear_weight the even dim is the low nibble, without it
// the high one.
fn nibble(row: u32, dim: u32) -> u32 {
  let byte_index = row * params.bytes_per_row + dim / 2u;  // MUT:row_stride
  let word = t_weight[byte_index / 4u];
  let byte = (word >> (8u * (byte_index % 4u))) & 0xFFu;  // MUT:byte_in_word
  let even_in_low = params.is_linear_weight != 0u;  // MUT:packing
  if ((dim % 2u == 0u) == even_in_low) {
    return byte & 0xFu;
  }
  return byte >> 4u;
}

fn scale(row: u32, dim: u32) -> f32 {
  let g = dim / params.group_size;  // MUT:group
  return t_scales[row * params.groups_per_row + g];  // MUT:scale_index
}

fn dequantize(n: u32, s: f32) -> f32 {
  let q = f32(i32(n) - 8);  // MUT:offset
  return q * s;  // MUT:product
}

@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let element = gid.x + gid.y * groups.x * wg_size;
  let total = params.num_indices * params.embed_dim;  // MUT:total
  if (element >= total) {
    return;
  }
  let i = element / params.embed_dim;
  let within = element % params.embed_dim;
  // ExecuTorch's kernel walks a row in blocks of 32 dims; the same decomposition, one dim per invocation.
  let block = within / 32u;
  let dim = block * 32u + within % 32u;  // MUT:block_base
  let row = table_row(i);
  t_out[i * params.embed_dim + dim] = dequantize(nibble(row, dim), scale(row, dim));  // MUT:store
}
