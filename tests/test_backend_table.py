"""A backend is one table (offline): a copy of [backend.swiftshader] under another name validates, gets its
sessions and CI jobs, and runs the same kernels; `validate` rejects a backend no kernel is written for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import MATRIX

from q4gsw.cases import build_selection
from q4gsw.commands import ci
from q4gsw.matrix.load import MatrixError, check_runnable, load_matrix
from q4gsw.sessions import accuracy_session


def _with_backend(tmp_path: Path, name: str, table: str) -> Path:
    path = tmp_path / "matrix.toml"
    text = MATRIX.read_text().replace('file = "q4gsw/', f'file = "{MATRIX.parent}/q4gsw/')
    path.write_text(text + f"\n[backend.{name}]\n{table}\n")
    return path


def _swiftshader_table() -> str:
    match = re.search(r"\[backend\.swiftshader\]\n(.*?)\n\n", MATRIX.read_text(), re.S)
    assert match is not None
    return match.group(1)


def test_a_copy_of_swiftshader_runs_the_same_cases(tmp_path):
    matrix = load_matrix(_with_backend(tmp_path, "cpu-vulkan", _swiftshader_table()))
    check_runnable(matrix)  # what `validate` checks
    original = build_selection(matrix, "swiftshader", tiers=("required",))
    copy = build_selection(matrix, "cpu-vulkan", tiers=("required",))
    assert copy.cases and [c.id.replace("@cpu-vulkan", "") for c in copy.cases] == \
        [c.id.replace("@swiftshader", "") for c in original.cases]
    assert not [s for s in copy.skipped if s.status == "unsupported"]
    jobs = ci.build_matrix(matrix, backends=["cpu-vulkan"])["include"]
    required_suites = {c.suite for c in matrix.configs if c.tier == "required"}  # every op's suites
    assert {"llama", "edges"} <= required_suites
    assert {job["session"] for job in jobs} == {accuracy_session("cpu-vulkan", suite) for suite in required_suites}


def test_validate_rejects_a_backend_no_kernel_is_written_for(tiny_matrix):
    text = tiny_matrix.read_text().replace('dispatch = "ceil(N / (8 * wg_size)), ceil(M / 8)"',
                                           'dispatch = "ceil(N / (8 * wg_size)), ceil(M / 8)"\ndevice_type = "GPU"')
    gpu = '[backend.gpu]\napi = "any"\nadapter_name = ".*"\ndevice_type = "GPU"\nprovision = "native"\n'
    tiny_matrix.write_text(text.replace("\n[kernel.gemv]\n", f"\n{gpu}\n[kernel.gemv]\n"))  # tiny_gemm runs somewhere
    with pytest.raises(MatrixError, match=r"\[backend\.swiftshader\]: key 'device_type/adapter_name': required "
                                          r"config 'tiny_gemm' \(linear_q4gsw\) has no kernel written for CPU "
                                          r"adapters named like /SwiftShader/"):
        check_runnable(load_matrix(tiny_matrix))
