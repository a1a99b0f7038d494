// q4gsw's reference update_cache (sdpa stages update_k, update_v): the step's k or v rows into the cache at
// dst_offset. The cache is bound as u32 words: fp32 elements (kv_bits 32) or fp16 pairs (kv_bits 16, element 2i in
// the low half, written with pack2x16float, so no shader-f16 is needed). One invocation per written word.
@group(0) @binding(0) var<storage, read_write> cache: array<u32>;
@group(0) @binding(1) var<storage, read> value: array<f32>;
struct Params { numel: u32, dst_offset: u32, cache_numel: u32, _pad: u32 }
@group(0) @binding(2) var<uniform> params: Params;

override kv_bits: u32 = 32u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let word = gid.x + gid.y * groups.x * 64u;  // the dispatch folds into y past 65535 workgroups
  if (kv_bits == 16u) {
    let i = 2u * word;  // numel and dst_offset are even: D is a multiple of 4
    if (i >= params.numel) {
      return;
    }
    cache[(params.dst_offset + i) / 2u] = pack2x16float(vec2<f32>(value[i], value[i + 1u]));
  } else {
    if (word >= params.numel) {
      return;
    }
    cache[params.dst_offset + word] = bitcast<u32>(value[word]);
  }
}
