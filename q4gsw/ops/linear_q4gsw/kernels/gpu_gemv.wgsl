// q4gsw GEMV for M == 1 (decode), tuned for GPUs: bandwidth-bound on the packed weights.
// ExecuTorch q4gsw binding layout (see docs/kernels.md "Kernel interface").
//
// Work split: a 256-invocation workgroup owns a block of 128 output rows (n). Invocations form 32
// teams of 8 lanes; a team owns 4 rows (n = block + r * 32 + team, r = 0..3), and each lane reads
// one 32-nibble chunk (4 consecutive u32 words = 16 bytes) per row per step, so a team reads 128
// contiguous bytes of a row per step. Lanes keep fp32 partial sums per row; the 8 partials of a
// row meet in workgroup memory at the end of the block. Blocks are grid-strided, so any N fits
// the per-dimension dispatch limit (lm_head: N = 128256).
//
// x is staged in workgroup memory in chunks of XCHUNK floats and reused by all 128 rows of the
// block; each lane holds its 32 x values in registers across its 4 rows.
//
// Nibble decode without int->float conversions (which run at a fraction of the FMA rate): for a
// nibble at bits 4j..4j+3 (j <= 4) of word w, bitcast<f32>(0x4B000000 | (w & (0xF << 4j))) is
// exactly 2^23 + nib * 16^j, so subtracting (2^23 + 8 * 16^j) gives (nib - 8) * 16^j exactly.
// x is pre-multiplied by 16^-j when it is staged (an exact power-of-two scaling), so the product
// equals (nib - 8) * x exactly as a plain conversion would. Nibbles 5..7 use w >> 20 the same way.
// Every intermediate is exact; the only roundings are the fp32 products and sums, as in any dot.
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

const WG: u32 = 256u;                 // invocations per workgroup
const LANES: u32 = 8u;                // lanes per row team
const TEAMS: u32 = WG / LANES;        // 32
const ROWS: u32 = 4u;                 // rows per team
const BLOCK_ROWS: u32 = TEAMS * ROWS; // 128 rows per workgroup block
const XCHUNK: u32 = 4u * WG;          // x floats staged per step: one vec4 per invocation
const XCHUNKS: u32 = XCHUNK / 32u;    // 32-element chunks per staged x step
const MAGIC: u32 = 0x4B000000u;       // 2^23 as f32 bits
const PAD: u32 = LANES + 1u;          // row stride of the partial sums (bank-conflict padding)

// x_s[i * XCHUNKS + c] holds elements 4i..4i+3 of 32-element chunk c, pre-scaled by 16^-j (see top).
var<workgroup> x_s: array<vec4<f32>, WG>;
var<workgroup> partial: array<f32, BLOCK_ROWS * PAD>;

// 2^23 + 8 * 16^j for the nibble positions of the low vec4 (j = 0..3) and the high one (j = 4 with
// mask 0xF0000, then j = 5..7 as positions 0..2 of w >> 20).
const LO_BIAS = vec4<f32>(8388616.0, 8388736.0, 8390656.0, 8421376.0);
const HI_BIAS = vec4<f32>(8912896.0, 8388616.0, 8388736.0, 8390656.0);
const LO_MASK = vec4<u32>(0xFu, 0xF0u, 0xF00u, 0xF000u);
const HI_MASK = vec4<u32>(0xF0000u, 0xFu, 0xF0u, 0xF00u);
const LO_XSCALE = vec4<f32>(1.0, 0.0625, 0.00390625, 0.000244140625);
const HI_XSCALE = vec4<f32>(0.0000152587890625, 1.0, 0.0625, 0.00390625);

// sum_j (nibble_j - 8) * x_j over the 8 nibbles of w; xa, xb are x[0..3], x[4..7] pre-scaled.
fn word_dot(w: u32, xa: vec4<f32>, xb: vec4<f32>) -> f32 {
  let lo = bitcast<vec4<f32>>(vec4<u32>(MAGIC) | (vec4<u32>(w) & LO_MASK)) - LO_BIAS;
  let h = w >> 20u;
  let hi = bitcast<vec4<f32>>(vec4<u32>(MAGIC) | (vec4<u32>(w, h, h, h) & HI_MASK)) - HI_BIAS;
  return dot(lo, xa) + dot(hi, xb);
}

fn load_word(row_base: u32, w: u32, words_per_row: u32) -> u32 {
  // Past the end of a row (K not a multiple of 32) read nibble 8 = 0 from an in-bounds word.
  let v = t_weight[row_base + min(w, words_per_row - 1u)];
  return select(0x88888888u, v, w < words_per_row);
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let N = params.N;
  let K = params.K;
  let gs = params.group_size;
  let words_per_row = params.K_packed / 4u;
  let scale_per_chunk = (gs % 32u) == 0u;  // a 32-aligned chunk then lies in one group
  let lane = lid % LANES;
  let team = lid / LANES;
  // Staging: invocation lid loads vec4 i = lid / XCHUNKS of chunk c = lid % XCHUNKS, so the
  // workgroup-memory writes are consecutive and each lane's reads (fixed c, i = 0..7) are too.
  let stage_c = lid % XCHUNKS;
  let stage_i = lid / XCHUNKS;
  let stage_scale = select(HI_XSCALE, LO_XSCALE, (stage_i % 2u) == 0u);
  let blocks = (N + BLOCK_ROWS - 1u) / BLOCK_ROWS;

  for (var block = wid.x; block < blocks; block = block + groups.x) {
    let n_block = block * BLOCK_ROWS;
    var row_base: array<u32, ROWS>;
    for (var r = 0u; r < ROWS; r = r + 1u) {
      let n = min(n_block + r * TEAMS + team, N - 1u);  // rows past N compute row N-1, unwritten
      row_base[r] = n * words_per_row;
    }
    var acc = vec4<f32>(0.0);

    for (var k_base = 0u; k_base < K; k_base = k_base + XCHUNK) {
      let k = k_base + stage_c * 32u + stage_i * 4u;
      var xv = vec4<f32>(0.0);
      if (k < K) {  // K % 8 == 0, so k..k+3 are all in range
        xv = vec4<f32>(t_input[k], t_input[k + 1u], t_input[k + 2u], t_input[k + 3u]);
      }
      x_s[lid] = xv * stage_scale;
      workgroupBarrier();

      for (var c = lane; c < XCHUNKS; c = c + LANES) {
        let k0 = k_base + c * 32u;
        if (k0 < K) {
          var x: array<vec4<f32>, 8>;
          for (var i = 0u; i < 8u; i = i + 1u) {
            x[i] = x_s[i * XCHUNKS + c];
          }
          let w0 = k0 / 8u;
          for (var r = 0u; r < ROWS; r = r + 1u) {
            let n = min(n_block + r * TEAMS + team, N - 1u);
            let a = load_word(row_base[r], w0, words_per_row);
            let b = load_word(row_base[r], w0 + 1u, words_per_row);
            let cw = load_word(row_base[r], w0 + 2u, words_per_row);
            let d = load_word(row_base[r], w0 + 3u, words_per_row);
            let da = word_dot(a, x[0], x[1]);
            let db = word_dot(b, x[2], x[3]);
            let dc = word_dot(cw, x[4], x[5]);
            let dd = word_dot(d, x[6], x[7]);
            let s_index = (k0 / gs) * params.padded_N + n;
            if (scale_per_chunk) {
              acc[r] = acc[r] + ((da + db) + (dc + dd)) * t_scales[s_index];
            } else {
              // group_size 8 or 16: one scale per word (k0 + 8j); last group index stays < K / gs.
              let g_stride = params.padded_N;
              let s0 = t_scales[s_index];
              let s1 = t_scales[((min(k0 + 8u, K - 8u)) / gs) * g_stride + n];
              let s2 = t_scales[((min(k0 + 16u, K - 8u)) / gs) * g_stride + n];
              let s3 = t_scales[((min(k0 + 24u, K - 8u)) / gs) * g_stride + n];
              acc[r] = acc[r] + (da * s0 + db * s1) + (dc * s2 + dd * s3);
            }
          }
        }
      }
      workgroupBarrier();
    }

    for (var r = 0u; r < ROWS; r = r + 1u) {
      partial[(r * TEAMS + team) * PAD + lane] = acc[r];
    }
    workgroupBarrier();
    if (lid < BLOCK_ROWS) {
      let n = n_block + lid;
      if (n < N) {
        var v = 0.0;
        for (var l = 0u; l < LANES; l = l + 1u) {
          v = v + partial[lid * PAD + l];
        }
        if (params.has_bias != 0u) {
          v = v + t_bias[n];
        }
        t_out[n] = v;
      }
    }
    workgroupBarrier();
  }
}
