"""An op declares its dimensions: configs give them by the op's names, expressions see them (and the names the op
derives), and every shape shown is the op's own text (issue 28)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY_MATRIX_HEAD, cli_in_process
from helpers import MATRIX, REPO

from q4gsw.matrix.load import MatrixError, check_runnable, load_matrix
from q4gsw.ops import expression_names, op_for, placeholder_names, registry

EMBEDDING = "embedding_q4gsw"


def test_every_op_declares_its_dims_and_shows_its_shape_in_them():
    for op in registry().values():
        names = [d.name for d in op.dims]
        assert names and len(set(names)) == len(names) and all(d.meaning and d.minimum >= 0 for d in op.dims), op.name
    dims = {"tokens": 1, "vocab": 128256, "dim": 2048, "group_size": 32}
    assert op_for(EMBEDDING).shape_text(dims) == "tokens=1 vocab=128256 dim=2048 gs=32"
    assert op_for("linear_q4gsw").shape_text({"M": 1, "K": 2048, "N": 512, "group_size": 32}) == "1x2048x512 gs=32"


def test_a_config_holds_its_ops_dims_read_only():
    matrix = load_matrix(MATRIX)
    embedding = matrix.config("emb_llama_vocab")
    assert dict(embedding.dims) == {"tokens": 128256, "vocab": 128256, "dim": 2048, "group_size": 32}
    with pytest.raises(TypeError):
        embedding.dims["tokens"] = 1  # type: ignore[index]
    assert dict(matrix.config("q_proj").dims) == {"M": 1, "K": 2048, "N": 2048, "group_size": 32}


def test_expressions_see_the_dims_and_only_the_derived_names_the_op_gives():
    matrix = load_matrix(MATRIX)
    linear = expression_names(matrix.config("q_proj"))
    assert linear == {"M": 1, "K": 2048, "N": 2048, "group_size": 32, "K_packed": 1024, "f16_accumulate_gemm": 0}
    embedding = expression_names(matrix.config("emb_llama_gs32"))
    assert set(embedding) == {"tokens", "vocab", "dim", "group_size", "f16_accumulate_gemm"}  # no K_packed
    assert set(placeholder_names(EMBEDDING)) == set(embedding)


EMBEDDING_TABLES = '''
[kernel.emb]
op = "embedding_q4gsw"
file = "{root}/q4gsw/ops/embedding_q4gsw/kernels/reference.wgsl"
when = "{when}"
dispatch = "ceil(tokens * dim / 64)"

[[config]]
name = "e"
op = "embedding_q4gsw"
suite = "embedding-test"
tier = "optional"
inputs = ["edges"]
{dims}
tolerance = {{ atol = 1.18e-38, rtol = 2.4e-7, justification = "one correctly rounded fp32 product" }}
'''
DIMS = "tokens = 4\nvocab = 64\ndim = 64\ngroup_size = 32"



def _embedding_matrix(tmp_path: Path, when: str = "dim % 32 == 0", dims: str = DIMS) -> Path:
    """A matrix of one embedding kernel and config ([defaults] hold a linear's group_size)."""
    path = tmp_path / "matrix.toml"
    path.write_text(TINY_MATRIX_HEAD + EMBEDDING_TABLES.format(root=REPO, when=when, dims=dims))
    return path


def test_an_embedding_config_in_its_own_dims_loads_and_takes_a_default_dim(tmp_path):
    config = load_matrix(_embedding_matrix(tmp_path, dims=DIMS.replace("group_size = 32", ""))).config("e")
    assert dict(config.dims) == {"tokens": 4, "vocab": 64, "dim": 64, "group_size": 32}  # [defaults] group_size


@pytest.mark.parametrize("dims, key, says", [
    (DIMS.replace("vocab = 64", "K = 64"), "K", "unknown key — op embedding_q4gsw has the dims tokens, vocab, dim, "
                                               "group_size"),
    (DIMS.replace("vocab = 64\n", ""), "vocab", "missing — add vocab = <integer>: op embedding_q4gsw has the dims "
                                                "tokens (indices gathered"),
    (DIMS.replace("dim = 64", 'dim = "64"'), "dim", "expected an integer, got '64' (str)"),
    (DIMS.replace("tokens = 4", "tokens = 0"), "tokens", "must be at least 1, got 0"),
])
def test_a_bad_dim_names_the_file_config_and_key_and_lists_the_ops_dims(tmp_path, dims, key, says):
    with pytest.raises(MatrixError) as raised:
        load_matrix(_embedding_matrix(tmp_path, dims=dims))
    assert raised.value.where == "config 'e'" and raised.value.key == key and says in str(raised.value)
    assert str(tmp_path / "matrix.toml") in str(raised.value)


def test_no_kernel_can_run_names_the_ops_own_dims(tmp_path):
    matrix = load_matrix(_embedding_matrix(tmp_path, when="dim > 100000"))
    with pytest.raises(MatrixError) as raised:
        check_runnable(matrix)
    assert raised.value.key == "tokens/vocab/dim/group_size"
    assert "no kernel can run tokens=4 vocab=64 dim=64 gs=32 on any backend" in str(raised.value)
    assert "M/K/N" not in str(raised.value)


def test_an_expression_that_fails_says_the_shape_in_the_ops_names(tmp_path):
    dims = DIMS.replace("dim = 64", "dim = 96")  # expressions are first checked with every dim 64
    matrix = load_matrix(_embedding_matrix(tmp_path, when="vocab // (dim - 96) > 0", dims=dims))
    with pytest.raises(MatrixError) as raised:
        check_runnable(matrix)
    assert "cannot be evaluated for tokens=4, vocab=64, dim=96, group_size=32" in str(raised.value)


def test_list_shows_an_embedding_config_in_its_own_dims():
    done = cli_in_process("list", "--matrix", str(MATRIX), env={"COLUMNS": "250"})
    assert done.returncode == 0, done.stderr
    row = done.stdout[done.stdout.index("emb_llama_vocab"):].split("\n")[:3]  # the shape cell may wrap
    assert "tokens=128256" in row[0] and "vocab=128256" in "".join(row) and "dim=2048" in "".join(row), row
    assert "MxKxN" not in done.stdout and "1x2048x2048" in done.stdout


def test_expressions_see_the_configs_f16_accumulate_gemm():
    """Hostile pass (issue 28, a surviving mutant): the runtime option is the config's (0 or 1), not always 0."""
    config = next(c for c in load_matrix(MATRIX).configs if c.f16_accumulate_gemm)
    assert expression_names(config)["f16_accumulate_gemm"] == 1
    assert expression_names(next(c for c in load_matrix(MATRIX).configs if c.op == config.op
                                 and not c.f16_accumulate_gemm))["f16_accumulate_gemm"] == 0
