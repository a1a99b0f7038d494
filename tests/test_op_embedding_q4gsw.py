"""Op embedding_q4gsw (q4gsw/ops/embedding_q4gsw/): ExecuTorch's et_vk.embedding_q4gsw, a gather of int4
group-quantized table rows.

Offline: both nibble packings, the u32 words, the exact fp64 golden, the error model, shape rules, the index
inputs, the bindings in ExecuTorch's layout, the fixture files and every mutant's edits. End to end (e2e): a real
export (constants equal the quantizer's, our golden rounded to fp32 equals the wheel's own golden bit for bit),
the reference kernel and every mutant on SwiftShader through `q4gsw mutants`, and the ExecuTorch kernel set's
declaration through `run --executorch` on a stand-in tree with a planted bug.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import SWIFTSHADER_BACKENDS, write_fixture

from q4gsw.matrix.load import load_matrix
from q4gsw.matrix.values import Config, Tolerance
from q4gsw.ops import op_for, registry
from q4gsw.ops.embedding_q4gsw.golden import error_model, golden
from q4gsw.ops.embedding_q4gsw.indices import make_indices
from q4gsw.ops.embedding_q4gsw.layout import PackedEmbedding, as_u32_words, pack_int4, unpack_int4
from q4gsw.ops.embedding_q4gsw.mutants import CATALOGUE, REFERENCE, SUITE
from q4gsw.ops.error_model import gamma

REPO = Path(__file__).resolve().parent.parent
OP = "embedding_q4gsw"
U = 2.0**-24
TOLERANCE = Tolerance(atol=1.18e-38, rtol=2.4e-7, justification="test: one correctly rounded fp32 product")


def make_config(name: str, M: int, K: int, N: int, group_size: int, inputs: tuple[str, ...] = ("edges",),
                **extra: object) -> Config:
    """A config of M indices into a K x N table (tokens, vocab, dim in the op's words)."""
    return Config(name=name, dims={"tokens": M, "vocab": K, "dim": N, "group_size": group_size}, tier="required",
                  suite="embedding-test",
                  inputs=inputs, weights="torch_embedding", weight_seed=0, timeout_s=300.0, tolerance=TOLERANCE,
                  op=OP, **extra)


def random_table(K: int, N: int, group_size: int, seed: int, is_linear_weight: bool = True) -> PackedEmbedding:
    """Every nibble value and non-power-of-two fp32 scales (so q * s really rounds in fp32)."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-8, 8, size=(K, N))
    scales = rng.uniform(0.05, 0.6, size=(K, N // group_size)).astype(np.float32)
    return PackedEmbedding(weight=pack_int4(q, is_linear_weight), scales=scales, group_size=group_size,
                           is_linear_weight=is_linear_weight)


# ------------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------------


def test_nibble_order_follows_is_linear_weight():
    # byte 0x2F: high nibble 0x2 (-6), low nibble 0xF (7); 0x80: high -8... low 0x0 (-8)
    packed = np.array([[0x2F, 0x80]], dtype=np.uint8)
    assert unpack_int4(packed, False).tolist() == [[-6, 7, 0, -8]]  # the quantizer's: dim 2j in the high nibble
    assert unpack_int4(packed, True).tolist() == [[7, -6, -8, 0]]  # the export's: dim 2j in the low nibble


@pytest.mark.parametrize("is_linear_weight", [False, True])
def test_pack_unpack_round_trip_every_value(is_linear_weight):
    q = np.tile(np.arange(-8, 8), (3, 4))
    assert np.array_equal(unpack_int4(pack_int4(q, is_linear_weight), is_linear_weight), q)
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(np.array([[8, 0]]), is_linear_weight)


def test_the_two_packings_are_each_others_nibble_swap():
    q = np.random.default_rng(1).integers(-8, 8, size=(4, 64))
    state, linear = pack_int4(q, False), pack_int4(q, True)
    assert np.array_equal(linear, ((state & 0xF) << 4) | (state >> 4))


def test_u32_words_are_little_endian_bytes():
    assert as_u32_words(np.array([[1, 2, 3, 4, 5, 6, 7, 8]], dtype=np.uint8)).tolist() == [0x04030201, 0x08070605]


def test_rows_are_the_exact_products_and_round_to_torchs_fp32_dequantization():
    """q * s in fp64 is exact (3 + 24 significant bits); rounded once to fp32 it is what torch's fp32 dequantize
    (the wheel's golden, `unpacked.float() * scales.float()`) computes: IEEE fp32 multiplication is correctly
    rounded."""
    table = random_table(6, 64, 16, seed=2)
    q = unpack_int4(table.weight, True)
    rows = [4, 0, 4]
    expected = np.array([[float(q[r, d]) * float(table.scales[r, d // 16]) for d in range(64)] for r in rows])
    got = table.rows(np.array(rows))
    assert got.dtype == np.float64 and got.tobytes() == expected.tobytes()
    fp32 = q[rows].astype(np.float32) * np.repeat(table.scales[rows], 16, axis=1)
    assert got.astype(np.float32).tobytes() == fp32.tobytes()
    assert not np.array_equal(fp32.astype(np.float64), got)  # the scales really make the fp32 product round


# ------------------------------------------------------------------------------------------------
# Golden, CPU reference and error model
# ------------------------------------------------------------------------------------------------


def test_golden_gathers_in_chunks_with_progress_and_rejects_bad_indices():
    table = random_table(40, 96, 32, seed=3)
    indices = make_indices("edges", 50, 40, 0)
    seen: list[tuple[int, int]] = []
    chunked = golden(indices, table, chunk_bytes=3 * 8 * 96, progress=lambda done, total: seen.append((done, total)))
    assert chunked.tobytes() == table.rows(indices).tobytes() and chunked.shape == (50, 96)
    assert seen[-1] == (50, 50) and len(seen) == 17
    with pytest.raises(ValueError, match=r"\[0, 40\)"):
        golden(np.array([0, 40], dtype=np.int32), table)
    with pytest.raises(ValueError, match="1-D integer"):
        golden(np.zeros((2, 2), dtype=np.int32), table)


def test_cpu_reference_is_the_golden_rounded_to_fp32():
    table = random_table(16, 64, 8, seed=4)
    indices = make_indices("every_row", 20, 16, 0)
    op = op_for(OP)
    assert op.cpu_reference(indices, table).tobytes() == golden(indices, table).astype(np.float32).tobytes()


def test_error_model_is_one_rounding_per_output():
    table = random_table(16, 64, 16, seed=5)
    indices = make_indices("every_row", 16, 16, 0)
    model = error_model(indices, table)
    g = np.abs(golden(indices, table))
    assert model.K == 0 and np.array_equal(model.S, g)
    np.testing.assert_allclose(model.worst, gamma(1) * g, rtol=0, atol=0)
    np.testing.assert_allclose(model.est, model.worst, rtol=1e-12)  # a bounded error: its maximum is the bound
    assert np.array_equal(model.step, np.repeat(table.scales[indices], 16, axis=1).astype(np.float64))
    # The matrix's tolerance keeps the audit's 3x margin over that hard bound, and sees one wrong nibble.
    T = TOLERANCE.atol + TOLERANCE.rtol * g
    assert (model.est <= T / 3).all() and (model.step > T).all()


def test_matrix_tolerances_are_the_one_rounding_bound_with_margin():
    matrix = load_matrix(REPO / "matrix.toml")
    configs = [c for c in matrix.configs if c.op == OP]
    assert {c.suite for c in configs} == {"embedding-llama", "embedding-edges"}
    for config in configs:
        assert 3 * U <= config.tolerance.rtol <= 8 * U, config.name
        assert config.tolerance.atol <= np.finfo(np.float32).tiny * 1.01, config.name
    upstream = {c.name for c in configs if c.upstream_tolerance is not None}
    assert upstream == {"emb_upstream_small", "emb_upstream_1b"}
    llama = {(*(c.dims[k] for k in ("tokens", "vocab", "dim", "group_size")), c.tier) for c in configs
             if c.suite == "embedding-llama"}
    assert {(4096, 4096, 2048, 32, "required"), (4096, 4096, 2048, 64, "required"),
            (128256, 128256, 2048, 32, "heavy")} <= llama
    kernel_set = matrix.kernel_sets["executorch_embedding"]
    assert kernel_set.op == OP and kernel_set.route == ("embedding_q4gsw",)


# ------------------------------------------------------------------------------------------------
# Inputs and shapes
# ------------------------------------------------------------------------------------------------


def test_every_row_is_a_seeded_permutation_tiled_to_m():
    once = make_indices("every_row", 64, 64, 0)
    assert once.dtype == np.int32 and sorted(once.tolist()) == list(range(64))
    assert not np.array_equal(once, np.arange(64))
    tiled = make_indices("every_row", 150, 64, 0)
    assert np.array_equal(tiled[:64], once) and set(tiled[64:128].tolist()) == set(range(64))
    assert not np.array_equal(make_indices("every_row", 64, 64, 1), once)
    # numpy alone regenerates it: the permutations of a Generator seeded [seed, 0xE3B0], one after another.
    rng = np.random.default_rng([0, 0xE3B0])
    assert once.tolist() == rng.permutation(64).tolist() and tiled[64:128].tolist() == rng.permutation(64).tolist()


def test_edges_hit_the_last_first_repeated_and_adjacent_rows():
    K = 1001
    edges = make_indices("edges", 64, K, 0)
    assert edges.dtype == np.int32 and edges.min() >= 0 and edges.max() < K
    assert edges[:3].tolist() == [K - 1, 0, K - 1]
    assert {1, K - 2, 2, 3, K // 2, K // 2 + 1} <= set(edges.tolist())
    assert make_indices("edges", 1, K, 0).tolist() == [K - 1]  # a decode step reads the last row
    assert make_indices("edges", 3, 2, 0).tolist() == [1, 0, 1]


def test_upstream_indices_are_executorchs():
    assert make_indices("upstream", 4, 64, 0).tolist() == [1, 5, 63, 0]
    assert make_indices("upstream", 4, 512, 0).tolist() == [1, 5, 511, 0]


def test_op_make_input_and_shape_text():
    op = registry()[OP]
    config = make_config("c", 4096, 4096, 2048, 32, ("every_row",))
    assert [d.name for d in op.dims] == ["tokens", "vocab", "dim", "group_size"]
    assert op.shape_text(config.dims) == "tokens=4096 vocab=4096 dim=2048 gs=32"
    assert op.output_shape(config) == (4096, 2048)
    assert op.make_input("upstream", make_config("u", 4, 64, 64, 32)).tolist() == [1, 5, 63, 0]
    assert op.input_names == ("every_row", "edges", "upstream") and op.weight_names[0] == "torch_embedding"


@pytest.mark.parametrize(("shape", "key", "needle"), [
    ((4, 64, 48, 16, ("edges",)), "dim", "multiple of 32"),
    ((4, 64, 96, 64, ("edges",)), "group_size", "not a multiple of group_size"),
    ((4, 64, 64, 64, ("edges",)), "group_size", "one scale per row"),
    ((63, 64, 64, 32, ("every_row",)), "tokens", "tokens >= vocab"),
    ((300000, 300000, 2048, 32, ("edges",)), "tokens", "GiB buffer binding"),
])
def test_shape_problems(shape, key, needle):
    M, K, N, gs, inputs = shape
    problems = registry()[OP].shape_problems(make_config("c", M, K, N, gs, inputs))
    assert any(p.key == key and needle in p.problem for p in problems), problems


def test_valid_shapes_have_no_problems():
    op = registry()[OP]
    for M, K, N, gs, inputs in ((4096, 4096, 2048, 32, ("every_row",)), (1, 512, 2048, 32, ("edges",)),
                                (128256, 128256, 2048, 32, ("every_row",)), (64, 1001, 96, 16, ("edges",))):
        assert op.shape_problems(make_config("c", M, K, N, gs, inputs)) == []


# ------------------------------------------------------------------------------------------------
# Bindings and fixture files
# ------------------------------------------------------------------------------------------------


def test_bindings_are_executorchs_layout():
    table = random_table(10, 96, 16, seed=6, is_linear_weight=False)
    indices = make_indices("edges", 7, 10, 0)
    bindings = registry()[OP].bindings(indices, table)
    assert bindings.output_index == 0 and bindings.output_shape == (7, 96)
    by_index = {b.index: b for b in bindings.inputs}
    assert sorted(by_index) == [1, 2, 3, 4]
    assert by_index[1].data.dtype == np.int32 and by_index[1].data.tolist() == indices.tolist()
    assert by_index[2].data.dtype == np.dtype("<u4") and by_index[2].data.size == 10 * 48 // 4
    assert by_index[3].data.dtype == np.float32 and by_index[3].data.shape == (10, 6)
    assert by_index[4].kind == "uniform"
    # {embed_dim, blocks_per_row, num_indices, group_size, groups_per_row, bytes_per_row, total_blocks, is_linear}
    assert by_index[4].data.tolist() == [96, 3, 7, 16, 6, 48, 21, 0]
    assert registry()[OP].bindings(indices, dataclasses.replace(table, is_linear_weight=True)).inputs[3].data[7] == 1


def test_constants_files_round_trip_and_check():
    op = registry()[OP]
    table = random_table(12, 64, 32, seed=7)
    config = make_config("c", 4, 12, 64, 32)
    files = op.constants_to_files(table)
    assert set(files) == set(op.constant_files)
    back = op.constants_from_files(files, config)
    assert back.is_linear_weight is True and np.array_equal(back.weight, table.weight)
    assert np.array_equal(back.scales, table.scales) and back.group_size == 32
    assert op.check_constants(back, config) == ""
    wider = dataclasses.replace(config, dims={**config.dims, "dim": 128})
    assert "config 'c' has tokens=4 vocab=12 dim=128 gs=32" in op.check_constants(back, wider)


def test_synthetic_constants_have_the_exported_packing_and_shape():
    op = registry()[OP]
    config = make_config("c", 4, 20, 64, 16)
    table = op.synthetic_constants(config, 0)
    assert table.is_linear_weight and op.check_constants(table, config) == ""
    x, tiny = op.warm_up_problem()
    assert op.bindings(x, tiny).output_shape == (1, 32)


# ------------------------------------------------------------------------------------------------
# Mutants
# ------------------------------------------------------------------------------------------------


def test_every_mutant_edit_applies_once_and_changes_the_kernel():
    reference = REFERENCE.read_text()
    sources = {m.name: m.source(reference) for m in CATALOGUE}
    assert len(sources) == len(CATALOGUE) >= 14
    assert all(text != reference for text in sources.values())
    assert len(set(sources.values())) == len(sources)
    wanted = {"packing_flag_ignored", "offset_7", "scale_first_of_row", "scale_row_stride", "token_plus_one",
              "next_index", "bytes_per_row_dim", "block_base_bytes", "fp16_output"}
    assert wanted <= set(sources)
    assert registry()[OP].mutation_suite() is SUITE and SUITE.reference == REFERENCE


def test_reference_kernel_declares_executorchs_params():
    text = REFERENCE.read_text()
    fields = ["embed_dim", "blocks_per_row", "num_indices", "group_size", "groups_per_row", "bytes_per_row",
              "total_blocks", "is_linear_weight"]
    body = text[text.index("struct Params {"):text.index("}", text.index("struct Params {"))]
    assert [line.strip().split(":")[0] for line in body.splitlines()[1:] if line.strip()] == fields
    for binding, declaration in enumerate(("t_out: array<f32>", "t_indices: array<i32>", "t_weight: array<u32>",
                                           "t_scales: array<f32>", "params: Params")):
        assert f"@binding({binding})" in text.split(declaration)[0].splitlines()[-1]


# ------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("shape_name", ["small", "llama1b"])
def test_export_equals_the_quantizer_and_the_golden_equals_the_wheels(shape_name):
    """ExecuTorch's own helper (test_embedding_q4gsw.py: same seed, model, quantizer) against q4gsw's recipe.
    The .pte holds the table repacked to the linear nibble order (is_linear_weight true); read in that order it
    is the quantizer's table. Our exact fp64 golden rounded to fp32 equals the wheel's fp32 golden bit for bit
    (one correctly rounded product each), so |ours - wheel's| <= u |ours|."""
    import torch
    from executorch.backends.webgpu.test.ops import test_embedding_q4gsw as upstream

    shape = next(s for s in upstream.SHAPES if s.name == shape_name)
    config = make_config(f"up_{shape_name}", len(shape.indices), shape.vocab, shape.embed, shape.group,
                         ("upstream",))
    op = registry()[OP]
    exported = op.export(config, progress=lambda message: None)
    table = exported.constants
    assert exported.cross_checked and table.is_linear_weight is True
    assert op.constants_from_pte(exported.pte).weight.tobytes() == table.weight.tobytes()

    model = upstream._make_quantized_model(shape)
    weight, scales, group_size = upstream._quant_params(model)
    assert group_size == shape.group and scales.dtype == torch.float32
    assert np.array_equal(unpack_int4(table.weight, True), unpack_int4(weight.numpy(), False))
    assert np.array_equal(table.scales, scales.numpy())

    indices = op.make_input("upstream", config)
    assert indices.tolist() == shape.indices
    ours = op.golden(indices, table)
    theirs = upstream._golden(model, upstream._indices(shape)).numpy()
    assert theirs.dtype == np.float32 and ours.astype(np.float32).tobytes() == theirs.tobytes()
    assert (np.abs(ours - theirs) <= U * np.abs(ours)).all()
    # The wheel's reference run on the .pte's constants in their own packing agrees too.
    from_pte = torch.ops.et_vk.embedding_q4gsw.default(torch.from_numpy(table.weight), torch.from_numpy(table.scales),
                                                        group_size, upstream._indices(shape), True).numpy()
    assert from_pte.tobytes() == theirs.tobytes()


TOLERANCE_TOML = ('tolerance = { atol = 1.18e-38, rtol = 2.4e-7, justification = "one correctly rounded fp32 '
                  'product per output" }')
# name: (M, K, N, group_size, input, is_linear_weight)
GPU_CONFIGS = {"t_rows": (72, 64, 96, 16, "every_row", True), "t_state": (5, 33, 64, 32, "edges", False),
               "t_one": (1, 40, 32, 8, "edges", True)}


REFERENCE_TABLE = (f'\n[kernel.embedding_reference]\nop = "{OP}"\nfile = "{REFERENCE}"\nwhen = "1"\n'
                   f'dispatch = "{SUITE.dispatch}"\noverrides = {{ wg_size = 64 }}\n')


def write_gpu_matrix(folder: Path, kernel_tables: str = "") -> Path:
    """A matrix of GPU_CONFIGS with the reference kernel (and `kernel_tables`), and their synthetic fixtures."""
    configs = "".join(f'\n[[config]]\nname = "{name}"\nop = "{OP}"\nsuite = "embedding-test"\ntokens = {M}\n'
                      f'vocab = {K}\ndim = {N}\ngroup_size = {gs}\ntier = "required"\ninputs = ["{x}"]\n'
                      f'{TOLERANCE_TOML}\n'
                      for name, (M, K, N, gs, x, _) in GPU_CONFIGS.items())
    path = folder / "matrix.toml"
    path.write_text(f'schema_version = 1\n\n{SWIFTSHADER_BACKENDS}{REFERENCE_TABLE}{kernel_tables}{configs}')
    matrix = load_matrix(path)
    for name, (*_, is_linear) in GPU_CONFIGS.items():
        config = matrix.config(name)
        vocab, dim = config.dims["vocab"], config.dims["dim"]
        table = random_table(vocab, dim, config.dims["group_size"], seed=vocab, is_linear_weight=is_linear)
        write_fixture(folder / "fixtures", config, table)
    return path


@pytest.mark.e2e
def test_reference_passes_and_every_mutant_is_killed_on_swiftshader(swiftshader_icd, tmp_path):
    from helpers import run_mutants_on_swiftshader

    matrix = write_gpu_matrix(tmp_path)
    done, payload = run_mutants_on_swiftshader(tmp_path, matrix, OP, swiftshader_icd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = payload["summary"]
    assert summary["survivors"] == [] and summary["killed"] == len(CATALOGUE)
    correct = [r for r in payload["records"] if r["role"] == "correct"]
    assert {r["kernel"] for r in correct} == {"reference", "embedding_reference"}
    assert all(r["status"] == "pass" and r["headroom"] <= 0.25 for r in correct), correct
    killed_by = summary["killed_by"]
    # The state_dict packing (is_linear_weight false) is read as such: ignoring the flag is right only there.
    assert "t_state/edges" not in killed_by["packing_flag_ignored"]
    assert "t_state/edges" in killed_by["nibbles_swapped"]
    assert "t_state/edges" not in killed_by["group_size_32"]  # its group size is 32


# A stand-in for ExecuTorch's kernel, written for this test (not ExecuTorch's): one invocation per 32-dim block
# of one gathered row, ExecuTorch's bindings and Params, the dispatch the kernel set declares.
STAND_IN = '''
@group(0) @binding(0) var<storage, read_write> t_out: array<f32>;
@group(0) @binding(1) var<storage, read> t_indices: array<i32>;
@group(0) @binding(2) var<storage, read> t_weight: array<u32>;
@group(0) @binding(3) var<storage, read> t_scales: array<f32>;
struct Params { embed_dim: u32, blocks_per_row: u32, num_indices: u32, group_size: u32, groups_per_row: u32,
                bytes_per_row: u32, total_blocks: u32, is_linear_weight: u32, }
@group(0) @binding(4) var<uniform> params: Params;
override wg_size: u32 = 64u;
@compute @workgroup_size(wg_size, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x >= params.total_blocks) { return; }
  let i = gid.x / params.blocks_per_row;
  let row = u32(t_indices[i]);
  for (var lane = 0u; lane < 32u; lane = lane + 1u) {
    let dim = (gid.x % params.blocks_per_row) * 32u + lane;
    let byte_index = row * params.bytes_per_row + dim / 2u;
    let byte = (t_weight[byte_index / 4u] >> (8u * (byte_index % 4u))) & 0xFFu;
    let low = (dim % 2u == 0u) == (params.is_linear_weight != 0u);
    let n = select(byte >> 4u, byte & 0xFu, low);
    let s = t_scales[row * params.groups_per_row + dim / params.group_size];
    t_out[i * params.embed_dim + dim] = f32(i32(n) - 8) * s;
  }
}
'''


@pytest.mark.e2e
def test_the_kernel_set_runs_a_tree_and_a_planted_bug_fails(swiftshader_icd, tmp_path):
    from conftest import run_cli

    matrix_text = (REPO / "matrix.toml").read_text()
    block = matrix_text[matrix_text.index("[kernel_set.executorch_embedding]"):]
    tables = "\n" + block[:block.index("[[config]]")]
    matrix = write_gpu_matrix(tmp_path, tables)
    folder = tmp_path / "executorch" / registry()[OP].executorch_folder
    folder.mkdir(parents=True)
    kernel = folder / "embedding_q4gsw.wgsl"
    env = {"Q4GSW_SWIFTSHADER_ICD": swiftshader_icd["Q4GSW_SWIFTSHADER_ICD"]}

    def run(results: str) -> tuple[int, list[dict]]:
        done = run_cli("run", "--executorch", str(tmp_path / "executorch"), "--backend", "swiftshader-dawn",
                       "--matrix", str(matrix), "--op", OP, "--fixtures", str(tmp_path / "fixtures"),
                       "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / results), env=env)
        path = tmp_path / results / "results.json"
        assert path.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
        return done.returncode, [r for r in json.loads(path.read_text())["results"] if r["status"] != "skip"]

    kernel.write_text(STAND_IN)
    code, results = run("good")
    assert code == 0 and {r["config"] for r in results} == set(GPU_CONFIGS), results
    assert all(r["status"] == "pass" and r["kernel"] == "embedding_q4gsw" for r in results)
    assert all(r["workgroups"][0] == math.ceil(GPU_CONFIGS[r["config"]][0] * GPU_CONFIGS[r["config"]][2] / 32 / 64)
               for r in results)

    kernel.write_text(STAND_IN.replace("dim / params.group_size]", "(dim + 1u) / params.group_size]"))
    code, results = run("planted")
    assert code == 1 and all(r["status"] == "fail" for r in results), results
