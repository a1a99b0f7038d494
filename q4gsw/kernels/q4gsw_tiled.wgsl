// q4gsw tiled GEMM for M > 1 (prefill). ExecuTorch q4gsw binding layout (see README "Kernel interface").
// A 64-invocation workgroup computes a 32x32 output tile, 4x4 outputs per invocation held in
// registers. Each K step stages a 32x32 tile of x and of dequantized weights in workgroup memory,
// so every weight word is unpacked once per tile instead of once per output row.
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

const TILE: u32 = 32u;   // output tile edge (M and N)
const BK: u32 = 32u;     // K step; 4 packed words per weight row
const TR: u32 = 4u;      // outputs per invocation along M and along N
const THREADS: u32 = 64u;

var<workgroup> x_tile: array<array<f32, BK>, TILE>;  // [m][k]
var<workgroup> w_tile: array<array<f32, TILE>, BK>;  // [k][n], dequantized

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let n_base = wid.x * TILE;
  let m_base = wid.y * TILE;
  let tm = (lid / 8u) * TR;  // this invocation's rows within the tile
  let tn = (lid % 8u) * TR;  // and columns
  let words_per_row = params.K_packed / 4u;

  var acc: array<array<f32, TR>, TR>;
  for (var i = 0u; i < TR; i = i + 1u) {
    for (var j = 0u; j < TR; j = j + 1u) {
      acc[i][j] = 0.0;
    }
  }

  for (var k_base = 0u; k_base < params.K; k_base = k_base + BK) {
    // Stage x: 32x32 floats, 16 per invocation; rows past M and k past K read as zero.
    for (var e = lid; e < TILE * BK; e = e + THREADS) {
      let r = e / BK;
      let c = e % BK;
      let m = m_base + r;
      let k = k_base + c;
      var v = 0.0;
      if (m < params.M && k < params.K) {
        v = t_input[m * params.K + k];
      }
      x_tile[r][c] = v;
    }
    // Stage weights: 32 columns x 4 words, 2 words per invocation, each unpacked to 8 values.
    for (var e = lid; e < TILE * (BK / 8u); e = e + THREADS) {
      let col = e / (BK / 8u);
      let wi = e % (BK / 8u);
      let n = n_base + col;
      let k0 = k_base + wi * 8u;
      var word = 0x88888888u;  // nibble 8 decodes to 0: padding contributes nothing
      if (n < params.N && k0 < params.K) {
        word = t_weight[n * words_per_row + k0 / 8u];
      }
      let n_scale = min(n, params.N - 1u);
      for (var j = 0u; j < 8u; j = j + 1u) {
        let k = min(k0 + j, params.K - 1u);
        let q = f32(i32((word >> (4u * j)) & 0xFu) - 8);
        w_tile[wi * 8u + j][col] = q * t_scales[(k / params.group_size) * params.padded_N + n_scale];
      }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk = kk + 1u) {
      var a: array<f32, TR>;
      var b: array<f32, TR>;
      for (var i = 0u; i < TR; i = i + 1u) {
        a[i] = x_tile[tm + i][kk];
        b[i] = w_tile[kk][tn + i];
      }
      for (var i = 0u; i < TR; i = i + 1u) {
        for (var j = 0u; j < TR; j = j + 1u) {
          acc[i][j] = acc[i][j] + a[i] * b[j];
        }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < TR; i = i + 1u) {
    let m = m_base + tm + i;
    for (var j = 0u; j < TR; j = j + 1u) {
      let n = n_base + tn + j;
      if (m < params.M && n < params.N) {
        var v = acc[i][j];
        if (params.has_bias != 0u) {
          v = v + t_bias[n];
        }
        t_out[m * params.N + n] = v;
      }
    }
  }
}
