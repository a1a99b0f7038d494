// q4gsw test tree (tests/data/etree): a small stand-in for ExecuTorch's 32x32 shared-memory GEMM, written
// for q4gsw's own tests (not ExecuTorch's kernel). One 32x32 output tile per workgroup (tiles row-major,
// 1-D dispatch ceil(M / 32) * ceil(N / 32)); 8x8 invocations of 4x4 outputs each; x is staged through
// workgroup memory 16 columns of K at a time; any K.
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
const TK: u32 = 16u;
var<workgroup> x_tile: array<f32, 512>;  // 32 rows x TK

fn weight(n: u32, k: u32) -> f32 {
  let byte_idx = n * params.K_packed + (k >> 1u);
  let b = (t_weight[byte_idx >> 2u] >> ((byte_idx & 3u) * 8u)) & 0xFFu;
  let nib = (b >> ((k & 1u) * 4u)) & 0xFu;
  return f32(i32(nib) - 8) * t_scales[(k / params.group_size) * params.padded_N + n];
}

@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let tiles_n = (params.N + 31u) / 32u;
  let tile_m0 = (wid.x / tiles_n) * 32u;
  let m0 = tile_m0 + (lid / 8u) * 4u;
  let n0 = (wid.x % tiles_n) * 32u + (lid % 8u) * 4u;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < params.K; k0 = k0 + TK) {
    for (var e = lid; e < 32u * TK; e = e + wg_size) {
      let m = tile_m0 + e / TK;
      let k = k0 + e % TK;
      var v = 0.0;
      if (m < params.M && k < params.K) {
        v = t_input[m * params.K + k];
      }
      x_tile[e] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk = kk + 1u) {
      let k = k0 + kk;
      if (k < params.K) {
        for (var j = 0u; j < 4u; j = j + 1u) {
          let w = weight(min(n0 + j, params.N - 1u), k);
          for (var i = 0u; i < 4u; i = i + 1u) {
            acc[i][j] = acc[i][j] + x_tile[((lid / 8u) * 4u + i) * TK + kk] * w;
          }
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i = i + 1u) {
    for (var j = 0u; j < 4u; j = j + 1u) {
      if (m0 + i < params.M && n0 + j < params.N) {
        t_out[(m0 + i) * params.N + n0 + j] = acc[i][j];
      }
    }
  }
}
