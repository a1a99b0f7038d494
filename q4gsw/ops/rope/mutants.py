"""rope's mutation self-test: the reference kernel (kernels/reference.wgsl) and the bugs a rotary-embedding
kernel author makes, each an exact text substitution in the reference: the rotation's sign or direction, the
HuggingFace rotate-half pairing instead of the interleaved one, table rows or columns indexed wrongly (the row of
position 0 for every token, the head as the table row, the next row), heads or tokens strided wrongly, and f16
rounding (core WGSL, no shader-f16).

At start_pos 0 with S = 1 the tables hold cos 1 and sin 0: the rotation is the identity there, and every mutant
that only changes how sin is used survives such a config (decode at position 0 checks the copy, not the rotation).
"""

from __future__ import annotations

from pathlib import Path

from q4gsw.ops.base import Mutant, MutationSuite

REFERENCE = Path(__file__).parent / "kernels" / "reference.wgsl"


def _f16(expr: str) -> str:
    """Round an f32 expression to the nearest f16 with core WGSL (no shader-f16 needed)."""
    return f"unpack2x16float(pack2x16float(vec2<f32>({expr}, 0.0))).x"


CATALOGUE: tuple[Mutant, ...] = (
    Mutant("conjugate", "rotated the wrong way: sin's sign flipped in both outputs (x * e^{-i theta})",
           (("y[at] = re * c - im * s;", "y[at] = re * c + im * s;"),
            ("y[at + 1u] = re * s + im * c;", "y[at + 1u] = -re * s + im * c;"))),
    Mutant("real_sign", "the real part's minus written as a plus (y_r = x_r cos + x_i sin)",
           (("y[at] = re * c - im * s;", "y[at] = re * c + im * s;"),)),
    Mutant("cos_sin_swapped", "freqs_cos and freqs_sin bindings read the other way round",
           (("let c = cos_rows[token * p.half_dim + i];", "let c = sin_rows[token * p.half_dim + i];"),
            ("let s = sin_rows[token * p.half_dim + i];", "let s = cos_rows[token * p.half_dim + i];"))),
    Mutant("rotate_half", "HuggingFace rotate-half pairing (i, i + head_dim/2) instead of interleaved (2i, 2i+1)",
           (("let at = token * p.n_heads * p.head_dim + head * p.head_dim + 2u * i;",
             "let at = token * p.n_heads * p.head_dim + head * p.head_dim + i;"),
            ("let im = x[at + 1u];", "let im = x[at + p.half_dim];"),
            ("y[at + 1u] = re * s + im * c;", "y[at + p.half_dim] = re * s + im * c;"))),
    Mutant("row_of_position_0", "table row 0 for every token (the tables indexed by pair only, as for S = 1)",
           (("let c = cos_rows[token * p.half_dim + i];", "let c = cos_rows[i];"),
            ("let s = sin_rows[token * p.half_dim + i];", "let s = sin_rows[i];"))),
    Mutant("row_by_head", "table row taken from the head index instead of the token",
           (("let c = cos_rows[token * p.half_dim + i];", "let c = cos_rows[head * p.half_dim + i];"),
            ("let s = sin_rows[token * p.half_dim + i];", "let s = sin_rows[head * p.half_dim + i];"))),
    Mutant("freq_column_reversed", "frequency column counted from the other end (half_dim - 1 - i)",
           (("let c = cos_rows[token * p.half_dim + i];",
             "let c = cos_rows[token * p.half_dim + p.half_dim - 1u - i];"),
            ("let s = sin_rows[token * p.half_dim + i];",
             "let s = sin_rows[token * p.half_dim + p.half_dim - 1u - i];"))),
    Mutant("token_stride_head_dim", "tokens strided by head_dim instead of heads * head_dim",
           (("let at = token * p.n_heads * p.head_dim + head * p.head_dim + 2u * i;",
             "let at = token * p.head_dim + head * p.head_dim + 2u * i;"),)),
    Mutant("last_token_skipped", "the token loop bound off by one (token + 1 >= seq returns)",
           (("if (gid.x >= pairs_per_token || token >= p.seq) {",
             "if (gid.x >= pairs_per_token || token + 1u >= p.seq) {"),)),
    Mutant("f16_products", "products rounded to f16 (a half-precision path)",
           (("y[at] = re * c - im * s;", f"y[at] = {_f16('re * c')} - {_f16('im * s')};"),
            ("y[at + 1u] = re * s + im * c;", f"y[at + 1u] = {_f16('re * s')} + {_f16('im * c')};"))),
)

SUITE = MutationSuite(reference=REFERENCE, dispatch="ceil(heads * half_dim / wg_size), seq",
                      overrides={"wg_size": "64"}, mutants=CATALOGUE)
