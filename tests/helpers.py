"""Test helpers shared by the GPU tests: synthetic fixtures (no torch) and running Cases through the engine.

Kernels are never run by a test's own child script: a test writes fixtures in the format of q4gsw.export
(manifest.json with every file's sha256 and size, weight_packed.npy, scales.npy, golden-<input>.npy), builds
q4gsw.cases.Case objects into a Selection and calls q4gsw.run.stages.run_selection, which provisions the backend,
probes its adapter and runs each config's cases in a child (`python -m q4gsw _child`), as `q4gsw run` does.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from q4gsw import export, inputs
from q4gsw.cases import Case, Selection
from q4gsw.matrix import Backend, Config, Tolerance
from q4gsw.ops import op_for
from q4gsw.ops.linear_q4gsw.layout import PackedLinear, pack_int4
from q4gsw.result import Result

REPO = Path(__file__).resolve().parent.parent
MATRIX = REPO / "matrix.toml"
TEST_TOLERANCE = Tolerance(atol=1e-5, rtol=1e-4, justification="test: fp32 accumulation over small K")


def make_config(name: str, M: int, K: int, N: int, group_size: int, inputs: Iterable[str] = ("ramp",), *,
                weights: str = "random", weight_seed: int = 0, timeout_s: float = 120.0,
                tolerance: Tolerance = TEST_TOLERANCE, tier: str = "required", suite: str = "test") -> Config:
    return Config(name=name, M=M, K=K, N=N, group_size=group_size, tier=tier, suite=suite, inputs=tuple(inputs),
                  weights=weights, weight_seed=weight_seed, timeout_s=timeout_s, tolerance=tolerance)


def random_packed(N: int, K: int, group_size: int, rng: np.random.Generator, *, scale: tuple[float, float] = (0.5, 2.0),
                  scale_factor: float = 0.01, padded_N: int | None = None, signed_scales: bool = False) -> PackedLinear:
    """Random int4 weights over all 16 nibbles and random per-group scales ([K / group_size, padded_N])."""
    q = rng.integers(-8, 8, size=(N, K))
    scales = (rng.uniform(*scale, size=(K // group_size, padded_N or N)) * scale_factor).astype(np.float32)
    if signed_scales:
        scales *= rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=scales.shape)
    return PackedLinear(weight_packed=pack_int4(q), scales=scales, group_size=group_size)


def write_fixture(folder: Path, config: Config, packed: PackedLinear,
                  goldens: Mapping[str, np.ndarray] | None = None) -> Path:
    """folder/<config.name>: a fixture verify_fixture accepts for `config`, built without torch.

    The golden of each of the config's inputs is the fp64 reference of the input the engine regenerates
    (inputs.make_input(name, M, K, weight_seed)), unless `goldens` gives it (the gate tests use their own)."""
    path = export.find_fixture(folder, config)
    path.mkdir(parents=True)
    op = op_for(config)
    for name, array in op.constants_to_files(packed).items():
        np.save(path / name, array)
    input_sha = {}
    for input_name in config.inputs:
        x = inputs.make_input(input_name, config.M, config.K, config.weight_seed)
        input_sha[input_name] = hashlib.sha256(x.tobytes()).hexdigest()
        g = goldens[input_name] if goldens is not None else op.golden(x, packed)
        np.save(path / export.golden_file(input_name), np.asarray(g, dtype=np.float64))
    files = {p.name: {"sha256": export.sha256_file(p), "size": p.stat().st_size} for p in sorted(path.iterdir())}
    manifest = {"key": f"synthetic-{config.name}", "op": op.name, "operator": op.operator, "files": files,
                "input_sha256": input_sha,
                "config": {"M": config.M, "K": config.K, "N": config.N, "group_size": config.group_size,
                           "weights": config.weights, "weight_seed": config.weight_seed,
                           "inputs": list(config.inputs)}}
    (path / export.MANIFEST).write_text(json.dumps(manifest))
    return path


def run_cases(cases: Iterable[Case], fixtures: Path, cache: Path, *, backend: Backend | None = None,
              matrix_path: Path = MATRIX, root: Path = REPO, workers: int = 1) -> dict[str, Result]:
    """Run the cases through the engine (provision, probe, one child per config); Results by case id.

    With workers > 1 the configs are dealt round-robin (in the order of the cases) to that many runs of
    run_selection in threads: each config still runs in its own child, a few at a time."""
    from q4gsw.run.exporter import FixtureSource
    from q4gsw.run.stages import RunOptions, run_selection

    cases = tuple(cases)
    backend = backend or cases[0].backend
    configs = tuple({c.config.name: c.config for c in cases}.values())
    options = RunOptions(fixtures=FixtureSource(fixtures=fixtures, cache=cache, matrix_path=matrix_path))
    groups = [configs[i::max(1, workers)] for i in range(max(1, min(workers, len(configs))))]

    def run(group: tuple[Config, ...]) -> list[Result]:
        names = {c.name for c in group}
        selection = Selection(backend=backend, configs=group, cases=tuple(c for c in cases if c.config.name in names))
        return run_selection(selection, options, root)

    if len(groups) == 1:
        results = run(groups[0])
    else:
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            results = [r for group in pool.map(run, groups) for r in group]
    by_id: dict[str, Result] = {}
    for result in results:
        by_id.setdefault(result.case_id, result)
    return by_id


def default_workers() -> int:
    """Concurrent engine runs for the big GPU tests: SwiftShader compiles each kernel on one core."""
    return max(1, min(4, (os.cpu_count() or 1)))


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
