// q4gsw's reference kernel for et_vk.apply_rotary_emb (one tensor, [S, heads, head_dim], interleaved pairs):
//   y[2i] = x[2i] * cos[s, i] - x[2i+1] * sin[s, i],  y[2i+1] = x[2i] * sin[s, i] + x[2i+1] * cos[s, i].
// Grid: x over the heads * half_dim pairs of one token, y over tokens (one invocation per pair).
// ExecuTorch's binding layout for the op (RotaryEmbedding.cpp): out, in, freqs_cos, freqs_sin, params.

struct Params {
  n_heads: u32,
  seq: u32,
  head_dim: u32,
  half_dim: u32,
  num_pairs: u32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> cos_rows: array<f32>;
@group(0) @binding(3) var<storage, read> sin_rows: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

override wg_size: u32 = 64u;

@compute @workgroup_size(wg_size)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let token = gid.y;
  let pairs_per_token = p.n_heads * p.half_dim;
  if (gid.x >= pairs_per_token || token >= p.seq) {
    return;
  }
  let head = gid.x / p.half_dim;
  let i = gid.x - head * p.half_dim;
  let at = token * p.n_heads * p.head_dim + head * p.head_dim + 2u * i;
  let c = cos_rows[token * p.half_dim + i];
  let s = sin_rows[token * p.half_dim + i];
  let re = x[at];
  let im = x[at + 1u];
  y[at] = re * c - im * s;
  y[at + 1u] = re * s + im * c;
}
