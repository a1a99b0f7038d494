"""Synthetic fixtures and tiny matrices for the elementwise ops' e2e tests (add, swiglu): no torch, no export."""

from __future__ import annotations

from pathlib import Path

from helpers import SWIFTSHADER_BACKENDS, write_fixture

from q4gsw.matrix.load import load_matrix
from q4gsw.ops import op_for


def write_matrix(folder: Path, tables: str, configs: str) -> Path:
    """folder/matrix.toml with both SwiftShader backends, `tables` and `configs`, and every config's synthetic
    fixture under folder/fixtures (the op's synthetic_constants: what its export records, without the export)."""
    path = folder / "matrix.toml"
    path.write_text(f"schema_version = 1\n\n{SWIFTSHADER_BACKENDS}\n{tables}\n{configs}")
    matrix = load_matrix(path)
    for config in matrix.configs:
        write_fixture(folder / "fixtures", config, op_for(config).synthetic_constants(config, 0))
    return path


def matrix_block(repo: Path, header: str) -> str:
    """The tables of the repository's matrix.toml from `header` up to its first [[config]], q4gsw's kernel files
    made absolute (a test's matrix.toml lives elsewhere)."""
    text = (repo / "matrix.toml").read_text()
    block = text[text.index(header):]
    return "\n" + block[:block.index("[[config]]")].replace('file = "q4gsw/', f'file = "{repo}/q4gsw/')
