// q4gsw GEMV for M == 1 (decode) on GPUs, built for lm_head (K = 2048, N = 128256) with many weight
// loads in flight per invocation and few barriers. ExecuTorch q4gsw binding layout (docs/kernels.md "Kernel
// interface"). Needs the "subgroup" feature (subgroupAdd); no `enable subgroups;` (the naga in
// wgpu-native 0.32 rejects it).
//
// Work split: a workgroup of 32 * teams invocations (override `teams`, 1..8) owns a block of
// R = teams * rpt CONSECUTIVE output rows (override `rpt`, rows per team, 1..4, R <= 32). A team of
// 32 lanes owns rpt rows (named per-row registers: indexed private arrays spill on NVIDIA). K is
// walked in chunks of kc = min(2048, 64 * group_size) elements: one chunk for lm_head's K = 2048 at
// group_size 32, so a block has no per-chunk barrier loop at all. In a chunk lane l reads words
// s * 32 + l (s < kc / 256, at most 8) of each of its rows: every load instruction of a team reads
// 128 contiguous bytes of one row, and a lane has up to 8 * rpt independent loads in flight, all
// issued before the chunk's staging barrier.
//
// Scales are transposed in memory (scale(k, n) at (k / gs) * padded_N + n): per chunk the workgroup
// stages the block's tile sc[g][r] = scales[(g0 + g) * padded_N + n0 + r] (at most 64 groups x R
// rows), read as runs of R consecutive floats with up to 8 independent loads per invocation, so no
// row gathers its scales with stride N. One u32 word is 8 elements of one group (gs >= 8, a power
// of two), so each word's dot is scaled once.
//
// x is staged in workgroup memory pre-multiplied by 16^-j and nibbles are decoded without
// int->float conversion, exactly as in gpu_gemv.wgsl (see there): every intermediate is exact and
// the only roundings are the fp32 products and sums. When K fits one chunk (lm_head) x is staged
// once per workgroup, not once per row block, and the barrier after the last chunk is skipped.
//
// Reduction: where the subgroup is exactly one 32-lane team (NVIDIA), each team sums its rows with
// subgroupAdd and writes them directly, with no workgroup-memory round trip (one barrier, before sc is
// restaged); narrower or wider subgroups (lavapipe) sum per-subgroup partials through workgroup memory
// as gpu_gemv_rows.wgsl does. Measured on an H100: lm_head 0.113 ms (was 0.122 ms), decode shapes
// unchanged (docs/native-h100).
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

override rpt: u32 = 4u;               // rows per team (1..4)
override teams: u32 = 8u;             // teams (of 32 lanes) per workgroup (1..8); teams * rpt <= 32
const TEAM: u32 = 32u;
const KCMAX: u32 = 2048u;             // elements per chunk at most
const CWMAX: u32 = KCMAX / 8u;        // 256 words per row per chunk at most
const GT: u32 = 64u;                  // groups per chunk at most (kc = min(KCMAX, GT * gs))
const RMAX: u32 = 32u;                // rows per block at most
const MAGIC: u32 = 0x4B000000u;       // 2^23 as f32 bits

// xa[w] = x[8w .. 8w+3], xb[w] = x[8w+4 .. 8w+7] of the chunk, pre-scaled by 16^-j (gpu_gemv.wgsl).
var<workgroup> xa: array<vec4<f32>, CWMAX>;
var<workgroup> xb: array<vec4<f32>, CWMAX>;
// sc[g * (R + 1) + r]: scale of chunk group g, block row r (odd stride: conflict-free reads).
var<workgroup> sc: array<f32, GT * (RMAX + 1u)>;
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

fn load4(base: u32, o: vec4<u32>) -> vec4<u32> {
  return vec4<u32>(t_weight[base + o.x], t_weight[base + o.y], t_weight[base + o.z], t_weight[base + o.w]);
}

// One step: chunk word w of this lane for the team's rows (q.x .. q.w), scales at sc[srow + i].
fn step(acc: vec4<f32>, w: u32, srow: u32, q: vec4<u32>) -> vec4<f32> {
  let a = xa[w];
  let b = xb[w];
  var r = acc;
  r.x = r.x + word_dot(q.x, a, b) * sc[srow];
  if (rpt > 1u) {
    r.y = r.y + word_dot(q.y, a, b) * sc[srow + 1u];
  }
  if (rpt > 2u) {
    r.z = r.z + word_dot(q.z, a, b) * sc[srow + 2u];
  }
  if (rpt > 3u) {
    r.w = r.w + word_dot(q.w, a, b) * sc[srow + 3u];
  }
  return r;
}

// Scale tile element idx (group-major over R rows) of the chunk starting at group g0; 0 outside.
fn scale_at(idx: u32, tile: u32, R: u32, g0: u32, n0: u32, n_groups: u32, N: u32) -> f32 {
  let g = idx / R;
  let r = idx - g * R;
  var v = 0.0;
  if (idx < tile && g0 + g < n_groups && n0 + r < N) {
    v = t_scales[(g0 + g) * params.padded_N + n0 + r];
  }
  return v;
}

fn stage_x(k_base: u32, cw: u32, lid: u32, WGS: u32, K: u32) {
  for (var w = lid; w < cw; w = w + WGS) {
    let k = k_base + w * 8u;
    var va = vec4<f32>(0.0);
    var vb = vec4<f32>(0.0);
    if (k < K) {  // K % 8 == 0: k..k+7 all in range
      va = vec4<f32>(t_input[k], t_input[k + 1u], t_input[k + 2u], t_input[k + 3u]);
      vb = vec4<f32>(t_input[k + 4u], t_input[k + 5u], t_input[k + 6u], t_input[k + 7u]);
    }
    xa[w] = va * LO_XSCALE;
    xb[w] = vb * HI_XSCALE;
  }
}

fn scale_put(idx: u32, tile: u32, R: u32, v: f32) {
  if (idx < tile) {
    let g = idx / R;
    sc[g * (R + 1u) + idx - g * R] = v;
  }
}

@compute @workgroup_size(teams * 32u, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_size) sg: u32, @builtin(subgroup_invocation_id) sgid: u32) {
  let N = params.N;
  let K = params.K;
  let gs = params.group_size;
  let wpr = params.K_packed / 4u;        // words per row (K % 8 == 0)
  let n_groups = K / gs;                 // rows of the scales tensor
  let WGS = teams * TEAM;
  let R = teams * rpt;
  let RP = R + 1u;
  let kc = min(KCMAX, GT * gs);          // elements per chunk (gs divides kc)
  let cw = kc / 8u;                      // words per row per chunk: 64, 128 or 256
  let steps = cw / TEAM;                 // 2, 4 or 8
  let gpc = kc / gs;                     // groups per full chunk (<= GT)
  let tile = gpc * R;                    // scale tile floats (<= 2048)
  let lane = lid % TEAM;
  let team = lid / TEAM;
  // Chunk-local scale rows (times RP) of this lane's words s * 32 + lane, s = 0..7.
  let l8 = lane * 8u;
  let ga = vec4<u32>(l8 / gs, (l8 + 256u) / gs, (l8 + 512u) / gs, (l8 + 768u) / gs) * RP;
  let gb = vec4<u32>((l8 + 1024u) / gs, (l8 + 1280u) / gs, (l8 + 1536u) / gs, (l8 + 1792u) / gs) * RP;
  let sg_ok = sg <= TEAM;
  let per_team = select(TEAM, TEAM / sg, sg_ok);
  let blocks = (N + R - 1u) / R;
  let single = kc >= K;                  // one chunk: x is staged once for all blocks
  let fast = sg == TEAM;                 // one subgroup per team: no workgroup-memory reduction
  if (single) {
    stage_x(0u, cw, lid, WGS, K);
  }

  for (var block = wid.x; block < blocks; block = block + groups.x) {
    let n0 = block * R;
    let r0 = team * rpt;
    // Rows past N read a copy of row N-1 and are not written. Rows i >= rpt are dead code.
    let b0 = min(n0 + r0, N - 1u) * wpr;
    let b1 = min(n0 + r0 + 1u, N - 1u) * wpr;
    let b2 = min(n0 + r0 + 2u, N - 1u) * wpr;
    let b3 = min(n0 + r0 + 3u, N - 1u) * wpr;
    var acc = vec4<f32>(0.0);

    for (var k_base = 0u; k_base < K; k_base = k_base + kc) {
      // 1. Issue this chunk's weight loads (past a row's end: a clamped in-bounds word, times x = 0).
      let wb = k_base / 8u + lane;
      let last = wpr - 1u;
      let oa = min(vec4<u32>(wb, wb + 32u, wb + 64u, wb + 96u), vec4<u32>(last));
      let ob = min(vec4<u32>(wb + 128u, wb + 160u, wb + 192u, wb + 224u), vec4<u32>(last));
      let big = steps > 4u;
      let w0a = load4(b0, oa);
      var w0b = vec4<u32>(0u);
      var w1a = vec4<u32>(0u);
      var w1b = vec4<u32>(0u);
      var w2a = vec4<u32>(0u);
      var w2b = vec4<u32>(0u);
      var w3a = vec4<u32>(0u);
      var w3b = vec4<u32>(0u);
      if (big) {
        w0b = load4(b0, ob);
      }
      if (rpt > 1u) {
        w1a = load4(b1, oa);
        if (big) {
          w1b = load4(b1, ob);
        }
      }
      if (rpt > 2u) {
        w2a = load4(b2, oa);
        if (big) {
          w2b = load4(b2, ob);
        }
      }
      if (rpt > 3u) {
        w3a = load4(b3, oa);
        if (big) {
          w3b = load4(b3, ob);
        }
      }
      // 2. Stage x (zero past K) and the block's scale tile (zero past the last group / row N-1).
      if (!single) {
        stage_x(k_base, cw, lid, WGS, K);
      }
      let g0 = k_base / gs;
      for (var i0 = lid; i0 < tile; i0 = i0 + 8u * WGS) {
        let s0 = scale_at(i0, tile, R, g0, n0, n_groups, N);
        let s1 = scale_at(i0 + WGS, tile, R, g0, n0, n_groups, N);
        let s2 = scale_at(i0 + 2u * WGS, tile, R, g0, n0, n_groups, N);
        let s3 = scale_at(i0 + 3u * WGS, tile, R, g0, n0, n_groups, N);
        let s4 = scale_at(i0 + 4u * WGS, tile, R, g0, n0, n_groups, N);
        let s5 = scale_at(i0 + 5u * WGS, tile, R, g0, n0, n_groups, N);
        let s6 = scale_at(i0 + 6u * WGS, tile, R, g0, n0, n_groups, N);
        let s7 = scale_at(i0 + 7u * WGS, tile, R, g0, n0, n_groups, N);
        scale_put(i0, tile, R, s0);
        scale_put(i0 + WGS, tile, R, s1);
        scale_put(i0 + 2u * WGS, tile, R, s2);
        scale_put(i0 + 3u * WGS, tile, R, s3);
        scale_put(i0 + 4u * WGS, tile, R, s4);
        scale_put(i0 + 5u * WGS, tile, R, s5);
        scale_put(i0 + 6u * WGS, tile, R, s6);
        scale_put(i0 + 7u * WGS, tile, R, s7);
      }
      workgroupBarrier();
      // 3. Dot products: word s * 32 + lane of each row, s < steps.
      acc = step(acc, lane, ga.x + r0, vec4<u32>(w0a.x, w1a.x, w2a.x, w3a.x));
      acc = step(acc, lane + 32u, ga.y + r0, vec4<u32>(w0a.y, w1a.y, w2a.y, w3a.y));
      if (steps > 2u) {
        acc = step(acc, lane + 64u, ga.z + r0, vec4<u32>(w0a.z, w1a.z, w2a.z, w3a.z));
        acc = step(acc, lane + 96u, ga.w + r0, vec4<u32>(w0a.w, w1a.w, w2a.w, w3a.w));
      }
      if (big) {
        acc = step(acc, lane + 128u, gb.x + r0, vec4<u32>(w0b.x, w1b.x, w2b.x, w3b.x));
        acc = step(acc, lane + 160u, gb.y + r0, vec4<u32>(w0b.y, w1b.y, w2b.y, w3b.y));
        acc = step(acc, lane + 192u, gb.z + r0, vec4<u32>(w0b.z, w1b.z, w2b.z, w3b.z));
        acc = step(acc, lane + 224u, gb.w + r0, vec4<u32>(w0b.w, w1b.w, w2b.w, w3b.w));
      }
      if (!single) {
        workgroupBarrier();  // x is restaged by the next chunk
      }
    }

    // Reduce the 32 lanes of each row: subgroupAdd; a team that is one subgroup writes its rows
    // directly (no workgroup-memory round trip), else the per-subgroup sums go through workgroup memory.
    // Either way one barrier ends the block: the next block restages sc.
    let total = vec4<f32>(subgroupAdd(acc.x), subgroupAdd(acc.y), subgroupAdd(acc.z), subgroupAdd(acc.w));
    if (fast) {
      if (sgid < rpt) {
        let n = n0 + r0 + sgid;
        if (n < N) {
          var v = total[sgid];
          if (params.has_bias != 0u) {
            v = v + t_bias[n];
          }
          t_out[n] = v;
        }
      }
      workgroupBarrier();  // sc is restaged by the next block
    } else {
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
}
