"""Test helpers shared by the test files: synthetic fixtures (no torch), running Cases through the engine,
results.json read back, and a tiny matrix (write_matrix) for the hostile-input tests of issue 14.

Kernels are never run by a test's own child script: a test writes fixtures in the format of q4gsw.export.fixtures
(manifest.json with every file's sha256 and size, weight_packed.npy, scales.npy, golden-<input>.npy), builds
q4gsw.cases.Case objects into a Selection and calls q4gsw.run.stages.run_selection, which provisions the backend,
probes its adapter and runs each config's cases in a child (`python -m q4gsw _child`), as `q4gsw run` does (or,
for the kernel tests' many small shapes, all in one `run --in-process` in a process of its own: run_cases).
"""

from __future__ import annotations

import copyreg
import hashlib
import json
import multiprocessing
import os
import subprocess
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from q4gsw.cases import Case, Selection
from q4gsw.export import fixtures
from q4gsw.matrix.load import Backend, Config, Tolerance, load_matrix
from q4gsw.ops import op_for
from q4gsw.ops.linear_common import mkn
from q4gsw.ops.linear_q4gsw.layout import PackedLinear, pack_int4
from q4gsw.report.result import Result, Shape

if TYPE_CHECKING:
    from q4gsw.run.options import RunOptions

REPO = Path(__file__).resolve().parent.parent
MATRIX = REPO / "matrix.toml"
TEST_TOLERANCE = Tolerance(atol=1e-5, rtol=1e-4, justification="test: fp32 accumulation over small K")


def linear_dims(M: int, K: int, N: int, group_size: int) -> dict[str, int]:
    return {"M": M, "K": K, "N": N, "group_size": group_size}


def make_config(name: str, M: int, K: int, N: int, group_size: int, inputs: Iterable[str] = ("ramp",), *,
                weights: str = "random", weight_seed: int = 0, timeout_s: float = 120.0,
                tolerance: Tolerance = TEST_TOLERANCE, tier: str = "required", suite: str = "test") -> Config:
    return Config(name=name, dims=linear_dims(M, K, N, group_size), tier=tier, suite=suite, inputs=tuple(inputs),
                  weights=weights, weight_seed=weight_seed, timeout_s=timeout_s, tolerance=tolerance)


def random_packed(N: int, K: int, group_size: int, rng: np.random.Generator, *, scale: tuple[float, float] = (0.5, 2.0),
                  scale_factor: float = 0.01, padded_N: int | None = None, signed_scales: bool = False) -> PackedLinear:
    """Random int4 weights over all 16 nibbles and random per-group scales ([K / group_size, padded_N])."""
    q = rng.integers(-8, 8, size=(N, K))
    scales = (rng.uniform(*scale, size=(K // group_size, padded_N or N)) * scale_factor).astype(np.float32)
    if signed_scales:
        scales *= rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=scales.shape)
    return PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=group_size)


def write_fixture(folder: Path, config: Config, packed: Any,
                  goldens: Mapping[str, np.ndarray] | None = None) -> Path:
    """folder/<config.name>: a fixture verify_fixture accepts for `config`, built without torch from the op's
    constants `packed` (any op's: a PackedLinear, an embedding table, an op's synthetic_constants).

    The golden of each of the config's inputs is the fp64 reference of the input the engine regenerates
    (op.make_input(name, config)), unless `goldens` gives it (the gate tests use their own)."""
    path = fixtures.find_fixture(folder, config)
    path.mkdir(parents=True)
    op = op_for(config)
    for name, array in op.constants_to_files(packed).items():
        np.save(path / name, array)
    input_sha = {}
    for input_name in config.inputs:
        x = op.make_input(input_name, config)
        input_sha[input_name] = hashlib.sha256(x.tobytes()).hexdigest()
        g = goldens[input_name] if goldens is not None else op.golden(x, packed)
        np.save(path / fixtures.golden_file(input_name), np.asarray(g, dtype=np.float64))
    files = {p.name: {"sha256": fixtures.sha256_file(p), "size": p.stat().st_size} for p in sorted(path.iterdir())}
    manifest = {"key": f"synthetic-{config.name}", "op": op.name, "operator": op.operator, "files": files,
                "input_sha256": input_sha,
                "config": {"dims": dict(config.dims), "weights": config.weights, "weight_seed": config.weight_seed,
                           "inputs": list(config.inputs)}}
    (path / fixtures.MANIFEST).write_text(json.dumps(manifest))
    return path


# Both SwiftShader backends (wgpu-native and Dawn), the header of the ops' small end-to-end matrices.
SWIFTSHADER_BACKENDS = ('[backend.swiftshader]\napi = "Vulkan"\nadapter_name = "SwiftShader"\ndevice_type = "CPU"\n'
                        'provision = "swiftshader"\n\n[backend.swiftshader-dawn]\napi = "Vulkan"\n'
                        'adapter_name = "SwiftShader"\ndevice_type = "CPU"\nprovision = "swiftshader"\n'
                        'webgpu = "dawn"\n')


def run_mutants_on_swiftshader(tmp_path: Path, matrix: Path, op: str, env: Mapping[str, str],
                               *extra: str) -> tuple[Any, dict[str, Any]]:
    """`mutants --op OP` on SwiftShader over a test's matrix and its fixtures (tmp_path/fixtures), results in
    tmp_path/out: (the finished process, mutants.json's payload, {} when none was written)."""
    from conftest import run_cli

    done = run_cli("mutants", "--op", op, *extra, "--matrix", str(matrix), "--backend", "swiftshader", "--fixtures",
                   str(tmp_path / "fixtures"), "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "out"),
                   env=env, timeout=600)
    written = tmp_path / "out" / "mutants.json"
    return done, json.loads(written.read_text()) if written.is_file() else {}


def run_cases(cases: Iterable[Case], fixtures: Path, cache: Path, *, backend: Backend | None = None,
              matrix_path: Path = MATRIX, root: Path = REPO, in_process: bool = False) -> dict[str, Result]:
    """Run the cases through the engine (provision, probe, one child per config); Results by case id.

    With in_process, the run is a `run --in-process` in one fresh process of its own (the ICD's variables never
    reach this one): every config on one device per feature set, so each kernel's pipeline is compiled once, not
    once per config (for the kernel tests, whose many small shapes are not about child processes)."""
    from q4gsw.run.exporter import FixtureSource
    from q4gsw.run.stages import RunOptions

    cases = tuple(cases)
    configs = tuple({c.config.name: c.config for c in cases}.values())
    selection = Selection(backend=backend or cases[0].backend, configs=configs, cases=cases)
    options = RunOptions(fixtures=FixtureSource(fixtures=fixtures, cache=cache, matrix_path=matrix_path),
                         in_process=in_process)
    if in_process:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as process:
            results = process.submit(_run_selection, selection, options, root).result()
    else:
        results = _run_selection(selection, options, root)
    by_id: dict[str, Result] = {}
    for result in results:
        by_id.setdefault(result.case_id, result)
    return by_id


# A Selection and its Results hold read-only mappings (Kernel.overrides, Config.dims): run_cases(in_process=True)
# hands them to its process and back by pickle, which needs this (the process imports this module first).
def _read_only(mapping: dict) -> MappingProxyType:
    return MappingProxyType(mapping)


copyreg.pickle(MappingProxyType, lambda mapping: (_read_only, (dict(mapping),)))


def _run_selection(selection: Selection, options: RunOptions, root: Path) -> list[Result]:
    from q4gsw.run.stages import run_selection

    return run_selection(selection, options, root)


def backend_unavailable(results: Mapping[str, Result]) -> str:
    """The message of a run that stopped at provisioning or probing (every case failed with it), else ''."""
    messages = {r.message for r in results.values()}
    if len(messages) == 1 and all(r.status == "fail" and r.adapter is None for r in results.values()):
        message = next(iter(messages))
        if message.startswith("backend '") and "unavailable" in message:
            return message
    return ""


def require_backend(results: Mapping[str, Result]) -> None:
    """Skip (locally) or fail (in CI, which installs the backends) when the run found no adapter."""
    import pytest

    unavailable = backend_unavailable(results)
    if unavailable:
        if os.environ.get("CI"):
            pytest.fail(unavailable)
        pytest.skip(unavailable)


# ------------------------------------------------------------------------------------------------
# Runs as a user starts them: results.json read back, and a tiny matrix for hostile-input tests (issue 14)
# ------------------------------------------------------------------------------------------------


def results_json(folder: Path) -> tuple[dict, dict[str, list[dict]]]:
    """folder/results.json: the whole payload, and its results by config (in the order written)."""
    payload = json.loads((folder / "results.json").read_text())
    by_config: dict[str, list[dict]] = {}
    for result in payload["results"]:
        by_config.setdefault(result["config"], []).append(result)
    return payload, by_config


def results_of(folder: Path) -> dict[str, list[dict]]:
    """folder/results.json's results by config."""
    return results_json(folder)[1]


def only(results: list[dict]) -> dict:
    """The one result of a config."""
    assert len(results) == 1, results
    return results[0]


DATA = REPO / "tests" / "data"
GOOD_KERNEL = str(DATA / "good.wgsl")
TOLERANCE_TOML = 'tolerance = { atol = 1e-5, rtol = 1e-4, justification = "K=64: fp32 rounding is far below 1e-6." }'

SMALL_MATRIX = '''schema_version = 1

[defaults]
group_size = 32
timeout_s = {timeout_s}
weights = "linear_init"

[backend.swiftshader]
api = "Vulkan"
adapter_name = "SwiftShader"
device_type = "CPU"
provision = "swiftshader"

[kernel.good]
file = "{root}/{kernel}"
when = "{when}"
dispatch = "{dispatch}"
{kernel_extra}
{configs}'''

CONFIGS = {
    "a": 'name = "a"\nM = 3\nK = 64\nN = 16\ntier = "required"',
    "b": 'name = "b"\nM = 1\nK = 64\nN = 16\ntier = "required"',
    "c": 'name = "c"\nM = 2\nK = 64\nN = 16\ntier = "required"',
    "h": 'name = "h"\nM = 1\nK = 64\nN = 8\ntier = "heavy"',
    "o": 'name = "o"\nM = 1\nK = 64\nN = 8\ntier = "optional"\nsuite = "other"',
}


def write_matrix(path: Path, configs: str = "bh", *, when: str = "M >= 1", dispatch: str = "ceil(M * N / 64)",
                 kernel: str = "tests/data/good.wgsl", kernel_extra: str = "", timeout_s: float = 120,
                 replace: tuple[tuple[str, str], ...] = ()) -> Path:
    """A tiny matrix: one kernel (tests/data/good.wgsl, one invocation per output) and the named configs."""
    text = SMALL_MATRIX.format(root=REPO, timeout_s=timeout_s, when=when, dispatch=dispatch, kernel=kernel,
                         kernel_extra=kernel_extra,
                         configs="".join(f"\n[[config]]\n{CONFIGS[c]}\n{TOLERANCE_TOML}\n" for c in configs))
    for old, new in replace:
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text)
    return path


def write_fixtures(folder: Path, matrix: Path, names: str) -> Path:
    """folder/<config>/: fixtures verify_fixture accepts, built with numpy (random int4 weights and scales)."""
    loaded = load_matrix(matrix)
    rng = np.random.default_rng(14)
    for name in names:
        config = loaded.config(name)
        _, K, N, group_size = mkn(config)
        scales = (rng.uniform(0.5, 2.0, size=(K // group_size, N)) * 0.01).astype(np.float32)
        packed = PackedLinear(weight_packed=pack_int4(rng.integers(-8, 8, size=(N, K))), scales=scales,
                              group_size=group_size)
        write_fixture(folder, config, packed)
    return folder


def assert_clean_usage_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, no traceback, and the error names what is wrong."""
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    for needle in needles:
        assert needle in done.stderr, done.stderr


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under folder (links as their target), to show that nothing was removed or changed."""
    if not folder.exists() and not folder.is_symlink():
        return {}
    return {str(p.relative_to(folder)): (f"-> {os.readlink(p)}" if p.is_symlink() else
                                         p.read_bytes() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}


def fake_result(config: str, status: str, tier: str = "required", backend: str = "swiftshader") -> Result:
    return Result(config=config, backend=backend, status=status, message=f"{status} for the test", tier=tier,
                  case_id=f"{config}/k/ramp@{backend}", kernel="k", input="ramp",
                  shape=Shape(linear_dims(1, 64, 16, 32), "1x64x16 gs=32"))

