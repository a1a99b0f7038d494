// q4gsw GEMV for M == 1 (decode) on GPUs, built for lm_head (K = 2048, N = 128256): row blocks with
// coalesced weight words and coalesced, workgroup-staged scales. ExecuTorch q4gsw binding layout
// (docs/kernels.md "Kernel interface"). Needs the "subgroup" feature (subgroupAdd); gpu_gemv is the
// fallback without it. No `enable subgroups;`: the naga in wgpu-native 0.32 rejects it.
//
// Work split: a 256-invocation workgroup owns a block of R = 8 * rpt CONSECUTIVE output rows
// (override `rpt`, rows per team, 1..4). Invocations form 8 teams of 32 lanes; team t owns rows
// t * rpt .. t * rpt + rpt - 1 of the block (named per-row registers, no arrays: indexed arrays
// spilled to local memory on NVIDIA and ran 3x slower). K is walked in chunks of KC = 1024 elements (128 u32
// words per row); in a chunk lane l reads words s * 32 + l (s = 0..3) of each of its rows, so one
// load instruction of a team reads 128 contiguous bytes of one row, and a lane has 4 * rpt
// independent loads in flight (issued before the chunk's staging barrier). Blocks are grid-strided,
// so any N fits the per-dimension dispatch limit.
//
// Scales are transposed in memory (scale(k, n) at (k / gs) * padded_N + n): per chunk the workgroup
// stages the block's tile sc[g][r] = scales[(g0 + g) * padded_N + n0 + r], read as runs of R
// consecutive floats (whole 32-byte sectors), so no row ever gathers its scales with stride N.
// One u32 word is 8 elements of one group (gs >= 8), so each word's dot is scaled once.
//
// x is staged per chunk in workgroup memory pre-multiplied by 16^-j and the nibbles are decoded
// without int->float conversion, exactly as in gpu_gemv.wgsl (see there): every intermediate is
// exact and the only roundings are the fp32 products and sums.
//
// Reduction: each lane keeps rpt fp32 partial sums; at the end of a block subgroupAdd reduces them
// within each subgroup (one subgroup per team on 32-wide hardware), and the per-subgroup sums meet
// in workgroup memory. Any subgroup size <= 32 works (lavapipe uses 8 or 16); a wider subgroup
// (which would span two teams) falls back to summing all 32 lanes' partials from workgroup memory.
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

override rpt: u32 = 4u;               // rows per team (1..RPT_MAX)
const RPT_MAX: u32 = 4u;
const WG: u32 = 256u;
const TEAM: u32 = 32u;                // lanes per team
const TEAMS: u32 = WG / TEAM;         // 8
const STEPS: u32 = 4u;                // words per lane per row per chunk
const CW: u32 = TEAM * STEPS;         // 128 words = KC / 8 per row per chunk
const KC: u32 = CW * 8u;              // 1024 elements per chunk
const GMAX: u32 = KC / 8u;            // groups per chunk at gs = 8
const RMAX: u32 = TEAMS * RPT_MAX;    // 32 rows per block at most
const MAGIC: u32 = 0x4B000000u;       // 2^23 as f32 bits

// xa[w] = x[8w .. 8w+3], xb[w] = x[8w+4 .. 8w+7] of the chunk, pre-scaled by 16^-j (gpu_gemv.wgsl).
var<workgroup> xa: array<vec4<f32>, CW>;
var<workgroup> xb: array<vec4<f32>, CW>;
// sc[g * (R + 1) + r]: scale of chunk group g, block row r (odd stride: conflict-free reads).
var<workgroup> sc: array<f32, GMAX * (RMAX + 1u)>;
var<workgroup> partial: array<f32, RMAX * (TEAM + 1u)>;

const LO_BIAS = vec4<f32>(8388616.0, 8388736.0, 8390656.0, 8421376.0);
const HI_BIAS = vec4<f32>(8912896.0, 8388616.0, 8388736.0, 8390656.0);
const LO_MASK = vec4<u32>(0xFu, 0xF0u, 0xF00u, 0xF000u);
const HI_MASK = vec4<u32>(0xF0000u, 0xFu, 0xF0u, 0xF00u);
const LO_XSCALE = vec4<f32>(1.0, 0.0625, 0.00390625, 0.000244140625);
const HI_XSCALE = vec4<f32>(0.0000152587890625, 1.0, 0.0625, 0.00390625);

// sum_j (nibble_j - 8) * x_j over the 8 nibbles of w; a, b are x[0..3], x[4..7] pre-scaled.
fn word_dot(w: u32, a: vec4<f32>, b: vec4<f32>) -> f32 {
  let lo = bitcast<vec4<f32>>(vec4<u32>(MAGIC) | (vec4<u32>(w) & LO_MASK)) - LO_BIAS;
  let h = w >> 20u;
  let hi = bitcast<vec4<f32>>(vec4<u32>(MAGIC) | (vec4<u32>(w, h, h, h) & HI_MASK)) - HI_BIAS;
  return dot(lo, a) + dot(hi, b);
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_size) sg: u32, @builtin(subgroup_invocation_id) sgid: u32) {
  let N = params.N;
  let K = params.K;
  let gs = params.group_size;
  let padded_N = params.padded_N;
  let wpr = params.K_packed / 4u;        // words per row (K % 8 == 0)
  let n_groups = K / gs;                 // rows of the scales tensor
  let R = TEAMS * rpt;
  let RP = R + 1u;
  let gpc = KC / gs;                     // groups per full chunk (gs divides KC)
  let lane = lid % TEAM;
  let team = lid / TEAM;
  let blocks = (N + R - 1u) / R;
  // Chunk-local scale row of each of this lane's words (the same in every chunk: gs divides KC).
  let sg_row = vec4<u32>(lane * 8u / gs, (TEAM + lane) * 8u / gs, (2u * TEAM + lane) * 8u / gs,
                         (3u * TEAM + lane) * 8u / gs) * RP;
  // x staging: invocation lid stages vec4 (lid % CW) of half lid / CW (0: xa, 1: xb).
  let stage_w = lid % CW;
  let stage_hi = lid / CW;
  let stage_scale = select(LO_XSCALE, HI_XSCALE, stage_hi == 1u);
  // Subgroups of at most 32 lanes lie within a team (subgroups are contiguous ranges of lid).
  let sg_ok = sg <= TEAM;
  let per_team = select(TEAM, TEAM / sg, sg_ok);  // partial sums per row after the subgroup step

  for (var block = wid.x; block < blocks; block = block + groups.x) {
    let n0 = block * R;
    let r0 = team * rpt;  // first block row of this team
    // Rows past N read a copy of row N-1 and are not written. Rows i >= rpt are dead code.
    let b0 = min(n0 + r0, N - 1u) * wpr;
    let b1 = min(n0 + r0 + 1u, N - 1u) * wpr;
    let b2 = min(n0 + r0 + 2u, N - 1u) * wpr;
    let b3 = min(n0 + r0 + 3u, N - 1u) * wpr;
    var acc = vec4<f32>(0.0);

    for (var k_base = 0u; k_base < K; k_base = k_base + KC) {
      // 1. This chunk's weight words (past the row's end: a clamped in-bounds word, times x = 0).
      let wb = k_base / 8u + lane;
      let o = vec4<u32>(min(wb, wpr - 1u), min(wb + TEAM, wpr - 1u), min(wb + 2u * TEAM, wpr - 1u),
                        min(wb + 3u * TEAM, wpr - 1u));
      let w0 = vec4<u32>(t_weight[b0 + o.x], t_weight[b0 + o.y], t_weight[b0 + o.z], t_weight[b0 + o.w]);
      var w1 = vec4<u32>(0u);
      var w2 = vec4<u32>(0u);
      var w3 = vec4<u32>(0u);
      if (rpt > 1u) {
        w1 = vec4<u32>(t_weight[b1 + o.x], t_weight[b1 + o.y], t_weight[b1 + o.z], t_weight[b1 + o.w]);
      }
      if (rpt > 2u) {
        w2 = vec4<u32>(t_weight[b2 + o.x], t_weight[b2 + o.y], t_weight[b2 + o.z], t_weight[b2 + o.w]);
      }
      if (rpt > 3u) {
        w3 = vec4<u32>(t_weight[b3 + o.x], t_weight[b3 + o.y], t_weight[b3 + o.z], t_weight[b3 + o.w]);
      }
      // 2. Stage x (zero past K) and the block's scale tile (zero past the last group / row N-1).
      let k = k_base + stage_w * 8u + stage_hi * 4u;
      var xv = vec4<f32>(0.0);
      if (k < K) {  // K % 8 == 0: k..k+3 all in range
        xv = vec4<f32>(t_input[k], t_input[k + 1u], t_input[k + 2u], t_input[k + 3u]);
      }
      if (stage_hi == 0u) {
        xa[stage_w] = xv * stage_scale;
      } else {
        xb[stage_w] = xv * stage_scale;
      }
      let g0 = k_base / gs;
      let tile = gpc * R;
      for (var idx = lid; idx < tile; idx = idx + WG) {
        let g = idx / R;
        let r = idx - g * R;
        var v = 0.0;
        if (g0 + g < n_groups && n0 + r < N) {
          v = t_scales[(g0 + g) * padded_N + n0 + r];
        }
        sc[g * RP + r] = v;
      }
      workgroupBarrier();
      // 3. Dot products: word s * 32 + lane of each row.
      for (var s = 0u; s < STEPS; s = s + 1u) {
        let w = s * TEAM + lane;
        let a = xa[w];
        let b = xb[w];
        let srow = sg_row[s] + r0;
        acc.x = acc.x + word_dot(w0[s], a, b) * sc[srow];
        if (rpt > 1u) {
          acc.y = acc.y + word_dot(w1[s], a, b) * sc[srow + 1u];
        }
        if (rpt > 2u) {
          acc.z = acc.z + word_dot(w2[s], a, b) * sc[srow + 2u];
        }
        if (rpt > 3u) {
          acc.w = acc.w + word_dot(w3[s], a, b) * sc[srow + 3u];
        }
      }
      workgroupBarrier();
    }

    // Reduce the 32 lanes of each row: subgroupAdd, then the per-subgroup sums via workgroup memory.
    let total = vec4<f32>(subgroupAdd(acc.x), subgroupAdd(acc.y), subgroupAdd(acc.z), subgroupAdd(acc.w));
    for (var i = 0u; i < rpt; i = i + 1u) {
      let r = r0 + i;
      if (sg_ok) {
        if (sgid == 0u) {
          partial[r * (TEAM + 1u) + lane / sg] = total[i];
        }
      } else {
        partial[r * (TEAM + 1u) + lane] = acc[i];
      }
    }
    workgroupBarrier();
    if (lid < R) {
      let n = n0 + lid;
      if (n < N) {
        var v = 0.0;
        for (var j = 0u; j < per_team; j = j + 1u) {
          v = v + partial[lid * (TEAM + 1u) + j];
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
