// q4gsw test tree (tests/data/etree): a small stand-in for ExecuTorch's register-tiled fallback, written
// for q4gsw's own tests (not ExecuTorch's kernel). One invocation per 4x4 output block, blocks in
// row-major order; any M, K, N. Dispatch: ceil(ceil(M / 4) * ceil(N / 4) / wg_size), wg_size = 64.
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

// The dequantized weight w[n, k]: byte n * K_packed + k / 2, low nibble for even k.
fn weight(n: u32, k: u32) -> f32 {
  let byte_idx = n * params.K_packed + (k >> 1u);
  let b = (t_weight[byte_idx >> 2u] >> ((byte_idx & 3u) * 8u)) & 0xFFu;
  let nib = (b >> ((k & 1u) * 4u)) & 0xFu;
  return f32(i32(nib) - 8) * t_scales[(k / params.group_size) * params.padded_N + n];
}

@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let tiles_n = (params.N + 3u) / 4u;
  let tiles_m = (params.M + 3u) / 4u;
  if (gid.x >= tiles_m * tiles_n) {
    return;
  }
  let m0 = (gid.x / tiles_n) * 4u;
  let n0 = (gid.x % tiles_n) * 4u;
  var acc: array<array<f32, 4>, 4>;
  for (var k = 0u; k < params.K; k = k + 1u) {
    for (var j = 0u; j < 4u; j = j + 1u) {
      let w = weight(min(n0 + j, params.N - 1u), k);
      for (var i = 0u; i < 4u; i = i + 1u) {
        acc[i][j] = acc[i][j] + t_input[min(m0 + i, params.M - 1u) * params.K + k] * w;
      }
    }
  }
  for (var i = 0u; i < 4u; i = i + 1u) {
    for (var j = 0u; j < 4u; j = j + 1u) {
      if (m0 + i < params.M && n0 + j < params.N) {
        t_out[(m0 + i) * params.N + n0 + j] = acc[i][j];
      }
    }
  }
}
