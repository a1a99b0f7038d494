// q4gsw tiled GEMM for M > 1 (prefill), tuned for GPUs. ExecuTorch q4gsw binding layout (see
// docs/kernels.md "Kernel interface").
//
// A 256-invocation workgroup computes a 64x64 output tile; invocation (tm, tn) of a 16x16 grid
// holds a 4x4 block of outputs (rows tm*4.., columns tn*4..) in four vec4 fp32 accumulators.
// Each K step of BK = 32 stages a 64x32 tile of x and a 32x64 tile of dequantized weights in
// workgroup memory, both stored k-major as vec4 so the inner loop does two 16-byte reads per
// 16 FMAs. The next step's global loads are issued into registers before the current step's
// FMAs (register double buffering). M and N need not be multiples of 64: rows past M read
// zeros, columns past N read nibble 8 (= 0), and neither is written. Needs N % 8 == 0,
// K % 8 == 0, K % group_size == 0 and group_size % 8 == 0 (one scale per packed word).
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

const TILE: u32 = 64u;            // output tile edge (M and N)
const BK: u32 = 32u;              // K step
const WG: u32 = 256u;             // invocations: a 16x16 grid of 4x4 output blocks
const VT: u32 = TILE / 4u;        // vec4 per tile row (16)
const X_LOADS: u32 = TILE * BK / 4u / WG;  // vec4 of x each invocation stages per step (2)

var<workgroup> x_s: array<vec4<f32>, BK * VT>;  // x_s[kk * 16 + i] = x[m0 + 4i .. 4i+3, k0 + kk]
var<workgroup> w_s: array<vec4<f32>, BK * VT>;  // w_s[kk * 16 + j] = w[k0 + kk, n0 + 4j .. 4j+3]

struct Staged {
  x: array<vec4<f32>, X_LOADS>,
  word: u32,
  scale: f32,
}

// Global loads of one K step into registers. Invocation lid stages x vec4s idx = lid + e * WG
// (row idx / 8, k offset 4 * (idx % 8)) and packed word lid % 4 of weight column lid / 4.
fn load_step(k0: u32, m0: u32, n0: u32, lid: u32) -> Staged {
  var s: Staged;
  for (var e = 0u; e < X_LOADS; e = e + 1u) {
    let idx = lid + e * WG;
    let m = m0 + idx / 8u;
    let k = k0 + (idx % 8u) * 4u;
    var v = vec4<f32>(0.0);
    if (m < params.M && k < params.K) {  // K % 8 == 0: k..k+3 are in range together
      let base = m * params.K + k;
      v = vec4<f32>(t_input[base], t_input[base + 1u], t_input[base + 2u], t_input[base + 3u]);
    }
    s.x[e] = v;
  }
  let n = n0 + lid / 4u;
  let words_per_row = params.K_packed / 4u;
  let w = k0 / 8u + lid % 4u;
  s.word = 0x88888888u;  // nibble 8 decodes to 0: padding contributes nothing
  s.scale = 0.0;
  if (n < params.N && w < words_per_row) {
    s.word = t_weight[n * words_per_row + w];
    s.scale = t_scales[((w * 8u) / params.group_size) * params.padded_N + n];
  }
  return s;
}

fn store_step(s: Staged, lid: u32) {
  for (var e = 0u; e < X_LOADS; e = e + 1u) {
    let idx = lid + e * WG;
    let row = idx / 8u;
    let kk = (idx % 8u) * 4u;
    let v = s.x[e];
    x_s[(kk + 0u) * VT + row / 4u][row % 4u] = v.x;
    x_s[(kk + 1u) * VT + row / 4u][row % 4u] = v.y;
    x_s[(kk + 2u) * VT + row / 4u][row % 4u] = v.z;
    x_s[(kk + 3u) * VT + row / 4u][row % 4u] = v.w;
  }
  let col = lid / 4u;
  let kw = (lid % 4u) * 8u;
  for (var j = 0u; j < 8u; j = j + 1u) {
    let q = f32(i32((s.word >> (4u * j)) & 0xFu) - 8);
    w_s[(kw + j) * VT + col / 4u][col % 4u] = q * s.scale;
  }
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let n0 = wid.x * TILE;
  let m0 = wid.y * TILE;
  let tm = lid / VT;
  let tn = lid % VT;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);

  var staged = load_step(0u, m0, n0, lid);
  for (var k0 = 0u; k0 < params.K; k0 = k0 + BK) {
    store_step(staged, lid);
    workgroupBarrier();
    if (k0 + BK < params.K) {
      staged = load_step(k0 + BK, m0, n0, lid);  // in flight during the FMAs below
    }
    for (var kk = 0u; kk < BK; kk = kk + 1u) {
      let a = x_s[kk * VT + tm];
      let b = w_s[kk * VT + tn];
      acc0 = acc0 + a.x * b;
      acc1 = acc1 + a.y * b;
      acc2 = acc2 + a.z * b;
      acc3 = acc3 + a.w * b;
    }
    workgroupBarrier();
  }

  let n = n0 + tn * 4u;
  if (n < params.N) {  // N % 8 == 0: n..n+3 are in range together
    var bias = vec4<f32>(0.0);
    if (params.has_bias != 0u) {
      bias = vec4<f32>(t_bias[n], t_bias[n + 1u], t_bias[n + 2u], t_bias[n + 3u]);
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i = i + 1u) {
      let m = m0 + tm * 4u + i;
      if (m < params.M) {
        let v = acc[i] + bias;
        let base = m * params.N + n;
        t_out[base] = v.x;
        t_out[base + 1u] = v.y;
        t_out[base + 2u] = v.z;
        t_out[base + 3u] = v.w;
      }
    }
  }
}
