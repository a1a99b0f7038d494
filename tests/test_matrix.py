from pathlib import Path

import pytest
from conftest import MATRIX

from q4gsw.matrix import MatrixError, load_matrix, split_dispatch

SEED_CONFIGS = {
    "q_proj": (1, 2048, 2048, "required"), "kv_proj": (1, 2048, 512, "required"),
    "gate_proj": (1, 2048, 8192, "required"), "down_proj": (1, 8192, 2048, "required"),
    "lm_head": (1, 2048, 128256, "heavy"), "q_proj_4k": (4096, 2048, 2048, "required"),
    "kv_proj_4k": (4096, 2048, 512, "required"), "q_proj_8k": (8192, 2048, 2048, "heavy"),
    "kv_proj_8k": (8192, 2048, 512, "heavy"),
}


def test_real_matrix_has_the_seed_suite():
    matrix = load_matrix(MATRIX)
    llama = {c.name: (c.M, c.K, c.N, c.tier) for c in matrix.configs if c.suite == "llama"}
    assert llama == SEED_CONFIGS
    assert all(c.group_size == 32 for c in matrix.configs if c.suite == "llama")
    assert {"swiftshader", "lavapipe", "native"} <= set(matrix.backends)
    assert all(c.tolerance.justification for c in matrix.configs)


def test_selection_by_tier_and_name(tiny_matrix: Path):
    matrix = load_matrix(tiny_matrix)
    assert [c.name for c in matrix.select(tiers=("required",))] == ["tiny_gemv", "tiny_gemm"]
    assert [c.name for c in matrix.select(names=("tiny_heavy",))] == ["tiny_heavy"]
    with pytest.raises(MatrixError, match="did you mean 'tiny_gemv'"):
        matrix.select(names=("tiny_gemw",))


def test_tolerance_precedence_backend_over_kernel_over_config(tmp_path: Path, tiny_matrix: Path):
    text = tiny_matrix.read_text().replace(
        'provision = "swiftshader"',
        'provision = "swiftshader"\ntolerance.tiny_gemm = { atol = 3e-5, rtol = 0.0, justification = "override" }')
    path = tmp_path / "m.toml"
    path.write_text(text)
    matrix = load_matrix(path)
    backend = matrix.backend("swiftshader")
    assert matrix.tolerance_for(matrix.config("tiny_gemm"), backend, None).atol == 3e-5
    assert matrix.tolerance_for(matrix.config("tiny_gemv"), backend, None).atol == 1e-5


def test_error_names_file_config_and_key(tmp_path: Path, tiny_matrix: Path):
    path = tmp_path / "bad.toml"
    path.write_text(tiny_matrix.read_text().replace("N = 40", "N = 42"))
    with pytest.raises(MatrixError) as info:
        load_matrix(path)
    message = str(info.value)
    assert str(path) in message and "config 'tiny_gemm'" in message and "key 'N'" in message
    assert "multiple of 8" in message


def test_split_dispatch_respects_parentheses():
    assert split_dispatch("min(ceil(N / 4), 65535), ceil(M/32), 1") == ("min(ceil(N / 4), 65535)", "ceil(M/32)", "1")
