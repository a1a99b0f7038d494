// q4gsw reference kernel of add, deliberately simple: one invocation per output element,
// out[i] = a[i'] + alpha * b[i''], where i' and i'' are i's coordinates (peeled off the last dim first) with
// every size-1 dim of that operand held at 0: PyTorch's broadcast. ExecuTorch's binding layout
// (backends/webgpu/runtime/ops/add/BinaryOp.cpp): b0 a, b1 b, b2 out, b3..b5 the TensorMeta uniforms of out, a
// and b (ndim, numel, sizes and strides of 8 dims, the operands right-aligned into out's rank). Dispatch:
// T = ceil(numel / wg_size) workgroups folded onto two dimensions,
// "min(T, max_workgroups_per_dimension), ceil(T / min(T, max_workgroups_per_dimension))".
// q4gsw/ops/add/mutants.py derives every mutant from this text by exact substitution, so keep the tagged
// lines unique when editing.
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

struct TensorMeta {
  ndim: u32,
  numel: u32,
  sizes: array<vec4<u32>, 2>,
  strides: array<vec4<u32>, 2>,
}
@group(0) @binding(3) var<uniform> out_meta: TensorMeta;
@group(0) @binding(4) var<uniform> a_meta: TensorMeta;
@group(0) @binding(5) var<uniform> b_meta: TensorMeta;

override wg_size: u32 = 64u;
override alpha: f32 = 1.0;

fn size_of(sizes: array<vec4<u32>, 2>, d: u32) -> u32 {
  return sizes[d / 4u][d % 4u];
}

@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = gid.x + gid.y * groups.x * wg_size;  // MUT:fold
  if (i >= out_meta.numel) {  // MUT:bound
    return;
  }
  // Walk the dims from the last: each operand's index grows by its own running stride, a size-1 dim adds 0.
  var rest = i;
  var ia = 0u;
  var ib = 0u;
  var stride_a = 1u;
  var stride_b = 1u;
  for (var k = 0u; k < out_meta.ndim; k = k + 1u) {
    let d = out_meta.ndim - 1u - k;
    let n = size_of(out_meta.sizes, d);
    let coord = rest % n;
    rest = rest / n;
    let na = size_of(a_meta.sizes, d);
    let nb = size_of(b_meta.sizes, d);
    ia = ia + select(coord, 0u, na == 1u) * stride_a;
    ib = ib + select(coord, 0u, nb == 1u) * stride_b;  // MUT:b_coord
    stride_a = stride_a * na;
    stride_b = stride_b * nb;  // MUT:b_stride
  }
  out[i] = a[ia] + alpha * b[ib];  // MUT:sum
}
