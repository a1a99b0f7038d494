// torchao.choose_qparams_affine reference kernel (q4gsw's own) for the 8da4w path: per-row asymmetric int8 qparams,
// exactly torchao 0.18's algorithm (no thresholds, no zero-point heuristics), one invocation per block of 4 rows,
// each reducing its rows sequentially. For row r:
//   lo = min(min(x), 0), hi = max(max(x), 0), scale = max((hi - lo) / (qmax - qmin), eps),
//   zp = clamp(qmin - round(lo / scale), qmin, qmax), eps = 2^-126 (torch.finfo(float32).smallest_normal).
// ExecuTorch's binding layout for its choose_qparams_affine: b0 x (read), b1 scales f32[M], b2 zero points
// (int8[M], 4 per u32 word, row r in byte r % 4: the block's word is written whole by its one invocation),
// b3 Params {num_rows, reduce_size, quant_min, quant_max}. Dispatch: "ceil(M / 4)".
// q4gsw/ops/linear_dq8ca_q4gsw/mutants.py derives mutants from this text by exact substitution of the lines
// tagged MUT, so keep those lines unique when editing.
@group(0) @binding(0) var<storage, read> t_input: array<f32>;
@group(0) @binding(1) var<storage, read_write> t_scales_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> t_zps_out: array<u32>;

struct Params {
  num_rows: u32,
  reduce_size: u32,
  quant_min: i32,
  quant_max: i32,
}
@group(0) @binding(3) var<uniform> params: Params;

const EPS: f32 = 1.17549435e-38;

@compute @workgroup_size(1, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let block = gid.x;
  let row0 = block * 4u;
  if (row0 >= params.num_rows) {
    return;
  }
  var word = 0u;
  for (var r = 0u; r < 4u; r = r + 1u) {
    let row = row0 + r;
    if (row >= params.num_rows) {
      break;
    }
    let base = row * params.reduce_size;
    var lo = 0.0;  // MUT:lo
    var hi = 0.0;  // MUT:hi
    for (var k = 0u; k < params.reduce_size; k = k + 1u) {
      lo = min(lo, t_input[base + k]);
      hi = max(hi, t_input[base + k]);
    }
    let levels = f32(params.quant_max - params.quant_min);  // MUT:levels
    let scale = max((hi - lo) / levels, EPS);  // MUT:scale
    let zp = params.quant_min - i32(round(lo / scale));  // MUT:zp
    let nudged = clamp(zp, params.quant_min, params.quant_max);  // MUT:zp_clamp
    t_scales_out[row] = scale;
    word = word | ((bitcast<u32>(nudged) & 0xFFu) << (8u * r));  // MUT:pack
  }
  t_zps_out[block] = word;
}
