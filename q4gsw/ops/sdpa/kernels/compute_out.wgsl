// q4gsw's reference sdpa_compute_out: out[s, h, d] = sum over c < context_len of p[h, s, c] * v_cache[c, h / g, d],
// in order of c. One invocation per output element; v_cache as u32 words (fp32, or fp16 pairs).
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> v_cache: array<u32>;
struct Params { S: u32, Hq: u32, Hkv: u32, D: u32, context_len: u32, g: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(3) var<uniform> params: Params;

override kv_bits: u32 = 32u;

fn cached(i: u32) -> f32 {
  if (kv_bits == 16u) {
    let pair = unpack2x16float(v_cache[i / 2u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
  }
  return bitcast<f32>(v_cache[i]);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let idx = gid.x + gid.y * groups.x * 64u;
  if (idx >= params.S * params.Hq * params.D) {
    return;
  }
  let d = idx % params.D;
  let h = (idx / params.D) % params.Hq;
  let s = idx / (params.D * params.Hq);
  let ctx = params.context_len;
  let p0 = (h * params.S + s) * ctx;
  let stride = params.Hkv * params.D;
  let v0 = (h / params.g) * params.D + d;
  var acc = 0.0;
  for (var c = 0u; c < ctx; c = c + 1u) {
    acc = acc + p[p0 + c] * cached(c * stride + v0);
  }
  out[idx] = acc;
}
