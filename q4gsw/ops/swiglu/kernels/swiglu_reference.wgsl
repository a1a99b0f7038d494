// q4gsw reference kernel of swiglu, deliberately simple: one invocation per output element,
// out[i] = gate[i] * up[i] * sigmoid(gate[i]), the sigmoid as 1 / (1 + exp(-g)). ExecuTorch's binding layout
// (runtime/passes/SwiGLU.cpp's add_silu_mul_fused_dispatch): b0 gate, b1 up, b2 out, b3 the uniform
// {num_elements, 3 x pad}. Dispatch: T = ceil(num_elements / wg_size) workgroups folded onto two dimensions,
// "min(T, max_workgroups_per_dimension), ceil(T / min(T, max_workgroups_per_dimension))".
// q4gsw/ops/swiglu/mutants.py derives every mutant from this text by exact substitution, so keep the tagged lines
// unique when editing.
@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

struct Params {
  num_elements: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}
@group(0) @binding(3) var<uniform> params: Params;

override wg_size: u32 = 64u;

fn sigmoid(g: f32) -> f32 {
  let e = exp(-g);  // MUT:exp
  return 1.0 / (1.0 + e);  // MUT:reciprocal
}

@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = gid.x + gid.y * groups.x * wg_size;  // MUT:fold
  if (i >= params.num_elements) {  // MUT:bound
    return;
  }
  let g = gate[i];  // MUT:gate
  let u = up[i];  // MUT:up
  out[i] = g * sigmoid(g) * u;  // MUT:product
}
