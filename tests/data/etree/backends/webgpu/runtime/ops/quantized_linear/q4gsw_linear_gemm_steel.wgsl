$if DTYPE == "half":
  enable f16;

// q4gsw test tree (tests/data/etree): a tiny template standing in for ExecuTorch's steel GEMM, written for
// q4gsw's own tests (not ExecuTorch's kernel). The checkout's gen_wgsl_headers.py expands it into the
// variants of q4gsw_linear_gemm_steel.yaml. One 64x64 output tile per workgroup (tiles row-major, 1-D
// dispatch ceil(M / 64) * ceil(N / 64)), 16x16 invocations of 4x4 outputs each.
// DTYPE: x and the dequantized weight (float: f32, half: f16); PWDQ: one scale per BK-deep block of K
// (right only when group_size % BK == 0, which the route checks); ACC: the accumulator; BK: block depth.
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

const BK: u32 = ${BK}u;

fn nibble(n: u32, k: u32) -> i32 {
  let byte_idx = n * params.K_packed + (k >> 1u);
  let b = (t_weight[byte_idx >> 2u] >> ((byte_idx & 3u) * 8u)) & 0xFFu;
  return i32((b >> ((k & 1u) * 4u)) & 0xFu);
}

fn scale(n: u32, k: u32) -> f32 {
  return t_scales[(k / params.group_size) * params.padded_N + n];
}

fn dequant(q: i32, s: f32) -> ${buffer_scalar_type(DTYPE)} {
  $if DTYPE == "half":
    return f16(q - 8) * f16(s);
  $else:
    return f32(q - 8) * s;
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tiles_n = (params.N + 63u) / 64u;
  let row0 = (wid.x / tiles_n) * 64u + lid.y * 4u;
  let col0 = (wid.x % tiles_n) * 64u + lid.x * 4u;
  var acc: array<array<${"f16" if ACC == "half" else "f32"}, 4>, 4>;
  for (var k0 = 0u; k0 < params.K; k0 = k0 + BK) {
    $if PWDQ:
      var s: array<f32, 4>;
      for (var j = 0u; j < 4u; j = j + 1u) {
        s[j] = scale(min(col0 + j, params.N - 1u), k0);
      }
    for (var k = k0; k < min(k0 + BK, params.K); k = k + 1u) {
      var a: array<${buffer_scalar_type(DTYPE)}, 4>;
      for (var i = 0u; i < 4u; i = i + 1u) {
        a[i] = ${buffer_scalar_type(DTYPE)}(t_input[min(row0 + i, params.M - 1u) * params.K + k]);
      }
      for (var j = 0u; j < 4u; j = j + 1u) {
        let n = min(col0 + j, params.N - 1u);
        $if PWDQ:
          let b = dequant(nibble(n, k), s[j]);
        $else:
          let b = dequant(nibble(n, k), scale(n, k));
        for (var i = 0u; i < 4u; i = i + 1u) {
          $if ACC == "half":
            acc[i][j] = fma(a[i], b, acc[i][j]);
          $elif DTYPE == "half":
            acc[i][j] = acc[i][j] + f32(a[i] * b);
          $else:
            acc[i][j] = acc[i][j] + a[i] * b;
        }
      }
    }
  }
  for (var i = 0u; i < 4u; i = i + 1u) {
    for (var j = 0u; j < 4u; j = j + 1u) {
      if (row0 + i < params.M && col0 + j < params.N) {
        t_out[(row0 + i) * params.N + col0 + j] = ${"f32(acc[i][j])" if ACC == "half" else "acc[i][j]"};
      }
    }
  }
}
