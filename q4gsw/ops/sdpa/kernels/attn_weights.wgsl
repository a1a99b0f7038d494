// q4gsw's reference sdpa_compute_attn_weights: w[h, s, c] = scale * q[s, h, :] . k_cache[c, h / g, :] for
// c <= input_pos + s, and a large negative number above the causal bound (softmax gives it weight 0). One invocation
// per element of w [Hq, S, context_len]; the dot over D in order. k_cache as u32 words (fp32, or fp16 pairs).
@group(0) @binding(0) var<storage, read_write> w: array<f32>;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
struct Params { S: u32, Hq: u32, Hkv: u32, D: u32, context_len: u32, input_pos: u32, g: u32, scale: f32 }
@group(0) @binding(3) var<uniform> params: Params;

override kv_bits: u32 = 32u;
const MASKED: f32 = -1.0e38;

fn cached(i: u32) -> f32 {
  if (kv_bits == 16u) {
    let pair = unpack2x16float(k_cache[i / 2u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
  }
  return bitcast<f32>(k_cache[i]);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let idx = gid.x + gid.y * groups.x * 64u;
  let ctx = params.context_len;
  if (idx >= params.Hq * params.S * ctx) {
    return;
  }
  let h = idx / (params.S * ctx);
  let s = (idx / ctx) % params.S;
  let c = idx % ctx;
  if (c > s + params.input_pos) {
    w[idx] = MASKED;
    return;
  }
  let q0 = (s * params.Hq + h) * params.D;
  let k0 = (c * params.Hkv + h / params.g) * params.D;
  var acc = 0.0;
  for (var d = 0u; d < params.D; d = d + 1u) {
    acc = acc + q[q0 + d] * cached(k0 + d);
  }
  w[idx] = acc * params.scale;
}
