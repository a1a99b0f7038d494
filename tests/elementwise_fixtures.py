"""Synthetic fixtures and tiny matrices for the elementwise ops' e2e tests (add, swiglu): no torch, no export."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from q4gsw.export import fixtures
from q4gsw.matrix.load import load_matrix
from q4gsw.ops import op_for

BACKENDS = ('[backend.swiftshader]\napi = "Vulkan"\nadapter_name = "SwiftShader"\ndevice_type = "CPU"\n'
            'provision = "swiftshader"\n\n[backend.swiftshader-dawn]\napi = "Vulkan"\nadapter_name = "SwiftShader"\n'
            'device_type = "CPU"\nprovision = "swiftshader"\nwebgpu = "dawn"\n')


def write_synthetic_fixture(folder: Path, config: Any, constants: Any) -> Path:
    """folder/<config.name>: a fixture verify_fixture accepts, built from the op's constants without torch."""
    op = op_for(config)
    path = folder / config.name
    path.mkdir(parents=True)
    for name, array in op.constants_to_files(constants).items():
        np.save(path / name, array)
    input_sha = {}
    for input_name in config.inputs:
        x = op.make_input(input_name, config)
        input_sha[input_name] = hashlib.sha256(x.tobytes()).hexdigest()
        np.save(path / fixtures.golden_file(input_name), op.golden(x, constants))
    files = {p.name: {"sha256": fixtures.sha256_file(p), "size": p.stat().st_size} for p in sorted(path.iterdir())}
    manifest = {"key": f"synthetic-{config.name}", "op": op.name, "operator": op.operator, "files": files,
                "input_sha256": input_sha,
                "config": {"dims": dict(config.dims), "weights": config.weights, "weight_seed": config.weight_seed,
                           "inputs": list(config.inputs)}}
    (path / fixtures.MANIFEST).write_text(json.dumps(manifest))
    return path


def write_matrix(folder: Path, tables: str, configs: str) -> Path:
    """folder/matrix.toml with both SwiftShader backends, `tables` and `configs`, and every config's synthetic
    fixture under folder/fixtures (the op's synthetic_constants: what its export records, without the export)."""
    path = folder / "matrix.toml"
    path.write_text(f"schema_version = 1\n\n{BACKENDS}\n{tables}\n{configs}")
    matrix = load_matrix(path)
    for config in matrix.configs:
        write_synthetic_fixture(folder / "fixtures", config, op_for(config).synthetic_constants(config, 0))
    return path


def matrix_block(repo: Path, header: str) -> str:
    """The tables of the repository's matrix.toml from `header` up to its first [[config]], q4gsw's kernel files
    made absolute (a test's matrix.toml lives elsewhere)."""
    text = (repo / "matrix.toml").read_text()
    block = text[text.index(header):]
    return "\n" + block[:block.index("[[config]]")].replace('file = "q4gsw/', f'file = "{repo}/q4gsw/')
