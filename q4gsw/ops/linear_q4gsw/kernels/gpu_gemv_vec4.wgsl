// q4gsw GEMV for M == 1 (decode) on GPUs: gpu_gemv_fast.wgsl with 16-byte weight loads. Needs K % 32 == 0
// (rows start on 16-byte boundaries) and group_size % 32 == 0 (a vec4 of 32 elements lies in one group).
// ExecuTorch q4gsw binding layout, the weight words read as vec4<u32> (docs/kernels.md "Kernel interface").
// Work split, scale tile, x staging, decode and reduction as in gpu_gemv_fast.wgsl (see there); a lane reads
// vec s * 32 + lane (s < 2) of each of its rows per 2048-element chunk: 512 contiguous bytes per team load,
// a quarter of gpu_gemv_fast's load instructions. Measured on an H200 (back to back, after warm-up):
// lm_head 0.094 ms against gpu_gemv_fast's 0.102 and torch int4's 0.094; slower than gpu_gemv_fast at
// down_proj (1x8192x2048: 0.019 against 0.015 ms), level at q_proj and gate_proj (docs/native-h200).
@group(0) @binding(0) var<storage, read_write> t_out: array<f32>;
@group(0) @binding(1) var<storage, read> t_input: array<f32>;
@group(0) @binding(2) var<storage, read> t_weight: array<vec4<u32>>;
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
const GT: u32 = 64u;                  // groups per chunk at most (KCMAX / 32)
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

// One vec4 (4 words = 32 elements = one group, gs % 32 == 0) of each of the team's rows: vec v of the
// chunk, scales at sc[srow + i].
fn vstep(acc: vec4<f32>, v: u32, srow: u32, q0: vec4<u32>, q1: vec4<u32>, q2: vec4<u32>, q3: vec4<u32>) -> vec4<f32> {
  let w = 4u * v;
  let a0 = xa[w];
  let b0 = xb[w];
  let a1 = xa[w + 1u];
  let b1 = xb[w + 1u];
  let a2 = xa[w + 2u];
  let b2 = xb[w + 2u];
  let a3 = xa[w + 3u];
  let b3 = xb[w + 3u];
  var r = acc;
  r.x = r.x + ((word_dot(q0.x, a0, b0) + word_dot(q0.y, a1, b1)) + (word_dot(q0.z, a2, b2) + word_dot(q0.w, a3, b3))) * sc[srow];
  if (rpt > 1u) {
    r.y = r.y + ((word_dot(q1.x, a0, b0) + word_dot(q1.y, a1, b1)) + (word_dot(q1.z, a2, b2) + word_dot(q1.w, a3, b3))) * sc[srow + 1u];
  }
  if (rpt > 2u) {
    r.z = r.z + ((word_dot(q2.x, a0, b0) + word_dot(q2.y, a1, b1)) + (word_dot(q2.z, a2, b2) + word_dot(q2.w, a3, b3))) * sc[srow + 2u];
  }
  if (rpt > 3u) {
    r.w = r.w + ((word_dot(q3.x, a0, b0) + word_dot(q3.y, a1, b1)) + (word_dot(q3.z, a2, b2) + word_dot(q3.w, a3, b3))) * sc[srow + 3u];
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
  let n_groups = K / gs;                 // rows of the scales tensor
  let WGS = teams * TEAM;
  let R = teams * rpt;
  let RP = R + 1u;
  let kc = KCMAX;                        // elements per chunk (gs >= 32: 64 * gs >= 2048)
  let cw = CWMAX;                        // words per row per chunk
  let gpc = kc / gs;                     // groups per full chunk (<= GT)
  let tile = gpc * R;                    // scale tile floats (<= 2048)
  let lane = lid % TEAM;
  let team = lid / TEAM;
  // Chunk-local scale rows (times RP) of this lane's vecs lane and lane + 32.
  let l32 = lane * 32u;
  let gv = vec2<u32>(l32 / gs, (l32 + 1024u) / gs) * RP;
  let vpr = params.K_packed / 16u;       // vecs per row (K % 32 == 0)
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
    let v0 = min(n0 + r0, N - 1u) * vpr;
    let v1 = min(n0 + r0 + 1u, N - 1u) * vpr;
    let v2 = min(n0 + r0 + 2u, N - 1u) * vpr;
    let v3 = min(n0 + r0 + 3u, N - 1u) * vpr;
    var acc = vec4<f32>(0.0);

    for (var k_base = 0u; k_base < K; k_base = k_base + kc) {
      // 1. Issue this chunk's weight loads: vec s * 32 + lane of each row (past a row's end: a clamped
      // in-bounds vec, times x = 0).
      let vb = k_base / 32u + lane;
      let lastv = vpr - 1u;
      let va0 = min(vb, lastv);
      let va1 = min(vb + 32u, lastv);
      let q0a = t_weight[v0 + va0];
      var q1a = vec4<u32>(0u);
      var q1b = vec4<u32>(0u);
      var q2a = vec4<u32>(0u);
      var q2b = vec4<u32>(0u);
      var q3a = vec4<u32>(0u);
      var q3b = vec4<u32>(0u);
      let q0b = t_weight[v0 + va1];
      if (rpt > 1u) {
        q1a = t_weight[v1 + va0];
        q1b = t_weight[v1 + va1];
      }
      if (rpt > 2u) {
        q2a = t_weight[v2 + va0];
        q2b = t_weight[v2 + va1];
      }
      if (rpt > 3u) {
        q3a = t_weight[v3 + va0];
        q3b = t_weight[v3 + va1];
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
      // 3. Dot products: vecs lane and lane + 32 of each row (one group each).
      acc = vstep(acc, lane, gv.x + r0, q0a, q1a, q2a, q3a);
      acc = vstep(acc, lane + 32u, gv.y + r0, q0b, q1b, q2b, q3b);
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
