"""The matrix loader (q4gsw.matrix.load):
the real matrix's seed suite, selection, tolerance precedence, errors that name
the file, config and key, dispatch splitting; and the loader's properties (hypothesis, issue #8): random valid
configs round-trip exactly; random values anywhere in the document give MatrixError (or load, when the value
happens to be valid), never another exception; values that are clearly invalid for a key always give MatrixError
naming that key."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MATRIX, REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from q4gsw.matrix.load import TIERS, MatrixError, Tolerance, load_matrix, split_dispatch
from q4gsw.ops.inputs import INPUTS, WEIGHTS
from q4gsw.ops.linear_q4gsw import MAX_BINDING_BYTES

SEED_CONFIGS = {
    "q_proj": (1, 2048, 2048, "required"), "kv_proj": (1, 2048, 512, "required"),
    "gate_proj": (1, 2048, 8192, "required"), "down_proj": (1, 8192, 2048, "required"),
    "lm_head": (1, 2048, 128256, "heavy"), "q_proj_4k": (4096, 2048, 2048, "required"),
    "kv_proj_4k": (4096, 2048, 512, "required"), "q_proj_8k": (8192, 2048, 2048, "heavy"),
    "kv_proj_8k": (8192, 2048, 512, "heavy"),
}


def test_real_matrix_has_the_seed_suite():
    matrix = load_matrix(MATRIX)
    llama = {c.name: (c.dims["M"], c.dims["K"], c.dims["N"], c.tier) for c in matrix.configs if c.suite == "llama"}
    assert llama == SEED_CONFIGS
    assert all(c.dims["group_size"] == 32 for c in matrix.configs if c.suite == "llama")
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


# ------------------------------------------------------------------------------------------------
# Properties of the loader (hypothesis, issue #8), with a tiny TOML writer (no tomli_w in the environment):
# every key quoted, every table inline.
# ------------------------------------------------------------------------------------------------

def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are TOML basic-string escapes; TOML also forbids a raw DEL.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(data: dict[str, Any]) -> str:
    return "\n".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in data.items()) + "\n"


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="q4gsw-props-") as folder:
        yield Path(folder) / "matrix.toml"


def load_text(path: Path, data: dict[str, Any]):
    path.write_text(toml_document(data), encoding="utf-8")
    return load_matrix(path)


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", fullmatch=True).filter(lambda s: ".." not in s)


finite_non_negative = st.floats(min_value=0.0, max_value=1e300, allow_nan=False, allow_infinity=False)


any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)


# Unique case-insensitively, as the matrix requires (it rejects 'W' beside 'w': one folder on a case-insensitive
# file system): unique=True let hypothesis draw such a pair, a flaky failure its database then replayed (issue 22).
def unique_names(elements: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(elements, min_size=1, max_size=4, unique_by=str.lower)


config_name_lists = unique_names(names)


@st.composite
def valid_configs(draw: st.DrawFn) -> list[dict[str, Any]]:
    config_names = draw(config_name_lists)
    configs = []
    for name in config_names:
        group_size = draw(st.integers(1, 256))
        step = math.lcm(group_size, 8)
        K = step * draw(st.integers(1, 64))
        # Every buffer binding (x: 4*M*K, y: 4*M*N, weights: N*K/2 bytes) within MAX_BINDING_BYTES.
        M = draw(st.integers(1, min(1 << 20, MAX_BINDING_BYTES // (4 * K))))
        N = 8 * draw(st.integers(1, min(20000, MAX_BINDING_BYTES // (4 * M) // 8, 2 * MAX_BINDING_BYTES // K // 8)))
        configs.append({
            "name": name,
            "M": M,
            "K": K,
            "N": N,
            "group_size": group_size,
            "tier": draw(st.sampled_from(TIERS)),
            "suite": draw(names),
            "inputs": draw(st.lists(st.sampled_from(sorted(INPUTS)), min_size=1, max_size=3)),
            "weights": draw(st.sampled_from(sorted(WEIGHTS))),
            "weight_seed": draw(st.integers(0, (1 << 63) - 1)),
            "timeout_s": draw(st.one_of(st.integers(1, 10**6),
                                        st.floats(min_value=1e-3, max_value=1e9, allow_nan=False))),
            "tolerance": {"atol": draw(finite_non_negative), "rtol": draw(finite_non_negative),
                          "justification": draw(any_text.filter(lambda s: s.strip()))},
        })
    return configs


def test_valid_config_names_never_differ_only_in_case() -> None:
    """The strategy draws only what the loader accepts: never two names differing only in case."""
    from hypothesis import find
    from hypothesis.errors import NoSuchExample

    # Drawn from the two names of the flaky failure: random names almost never collide, these always would.
    with pytest.raises(NoSuchExample):
        find(unique_names(st.sampled_from(["W", "w"])), lambda found: len(found) == 2,
             settings=settings(max_examples=200, database=None, deadline=None))


def test_the_hypothesis_database_is_not_committed() -> None:
    """A failure hypothesis saved in .hypothesis/ replays on every run; it must never reach git."""
    assert ".hypothesis/" in (REPO / ".gitignore").read_text().split()


def document(configs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "defaults": {"group_size": 32},
        "backend": {"swiftshader": {"api": "Vulkan", "adapter_name": "SwiftShader", "device_type": "CPU",
                                    "provision": "swiftshader"}},
        "kernel": {"gemv": {"file": str(REPO / "q4gsw/ops/linear_q4gsw/kernels/q4gsw_gemv.wgsl"), "when": "M == 1",
                            "dispatch": "min(ceil(N / 4), max_workgroups_per_dimension)",
                            "overrides": {"wg_size": "min(64, max_invocations_per_workgroup)"},
                            "requires_limits": {"max_invocations_per_workgroup": 64}}},
        "config": configs,
    }


toml_scalars = st.one_of(st.integers(-(1 << 63), (1 << 63) - 1), st.floats(), st.booleans(), any_text,
                         st.sampled_from(["ramp", "required", "Vulkan", "M == 1", "ceil(N / 0)", "[1][9]", "(["]))


toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(any_text, inner, max_size=3)), max_leaves=6)


@settings(max_examples=60, deadline=None)
@given(configs=valid_configs())
def test_valid_configs_round_trip(scratch: Path, configs: list[dict[str, Any]]) -> None:
    matrix = load_text(scratch, document(configs))
    assert [c.name for c in matrix.configs] == [c["name"] for c in configs]
    for loaded, raw in zip(matrix.configs, configs, strict=True):
        assert dict(loaded.dims) == {key: raw[key] for key in ("M", "K", "N", "group_size")}
        for key in ("tier", "suite", "weights", "weight_seed"):
            assert getattr(loaded, key) == raw[key], key
        assert loaded.inputs == tuple(raw["inputs"])
        assert loaded.timeout_s == float(raw["timeout_s"])
        assert loaded.tolerance == Tolerance(atol=raw["tolerance"]["atol"], rtol=raw["tolerance"]["rtol"],
                                             justification=raw["tolerance"]["justification"].strip())


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every (nested) key path in a document, list indices included."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield (*prefix, index)
            yield from _paths(inner, (*prefix, index))


@settings(max_examples=125, deadline=None)
@given(configs=valid_configs(), data=st.data())
def test_any_value_anywhere_is_matrix_error_or_loads(scratch: Path, configs: list[dict[str, Any]],
                                                     data: st.DataObject) -> None:
    doc = document(configs)
    path = data.draw(st.sampled_from(list(_paths(doc))), label="path")
    action = data.draw(st.sampled_from(["set", "delete", "add"]), label="action")
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if action == "delete":
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[data.draw(any_text, label="new key")] = data.draw(toml_values, label="new value")
    else:
        parent[path[-1]] = data.draw(toml_values, label="value")
    try:
        load_text(scratch, doc)
    except MatrixError as error:
        message = str(error)
        assert "\n" not in message
        assert message.startswith(f"{scratch}: "), message
        assert error.where


INTEGER_KEYS = ("M", "K", "N", "group_size")


@settings(max_examples=100, deadline=None)
@given(configs=valid_configs(), data=st.data())
def test_clearly_invalid_config_values_name_their_key(scratch: Path, configs: list[dict[str, Any]],
                                                      data: st.DataObject) -> None:
    key = data.draw(st.sampled_from([*INTEGER_KEYS, "weight_seed", "timeout_s", "atol", "rtol", "tier",
                                     "inputs", "justification"]), label="key")
    target = configs[0]
    if key in INTEGER_KEYS:  # not a positive integer
        bad = data.draw(st.one_of(st.integers(max_value=0), st.floats(), st.booleans(), any_text,
                                  st.lists(st.integers(), max_size=2)))
    elif key == "weight_seed":
        bad = data.draw(st.one_of(st.integers(max_value=-1), st.floats(), st.booleans(), any_text))
    elif key == "timeout_s":
        bad = data.draw(st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf), st.booleans(),
                                  any_text, st.integers(max_value=0)))
    elif key in ("atol", "rtol"):
        bad = data.draw(st.one_of(st.floats(max_value=-1e-300), st.just(math.nan), st.just(math.inf),
                                  st.just(-math.inf), st.booleans(), any_text, st.lists(st.floats(), max_size=2)))
    elif key == "tier":
        bad = data.draw(st.one_of(any_text.filter(lambda s: s not in TIERS), st.integers(), st.booleans()))
    elif key == "inputs":
        bad = data.draw(st.one_of(st.just([]), st.lists(any_text.filter(lambda s: s not in INPUTS), min_size=1,
                                                        max_size=2), st.integers(), st.dictionaries(any_text,
                                                                                                     st.integers())))
    else:  # justification
        bad = data.draw(st.one_of(st.text(" \t\n", max_size=4), st.integers(), st.floats(), st.booleans()))
    if key in ("atol", "rtol", "justification"):
        target["tolerance"][key] = bad
        expected_key = f"tolerance.{key}"
    else:
        target[key] = bad
        expected_key = key
    with pytest.raises(MatrixError) as raised:
        load_text(scratch, document(configs))
    assert raised.value.key == expected_key, str(raised.value)
    assert f"config '{target['name']}'" in raised.value.where


@settings(max_examples=100, deadline=None)
@given(configs=valid_configs(), K=st.integers(1, 4096), N=st.integers(1, 4096), group_size=st.integers(1, 256))
def test_divisibility_is_enforced_exactly(scratch: Path, configs: list[dict[str, Any]], K: int, N: int,
                                          group_size: int) -> None:
    configs[0].update(K=K, N=N, group_size=group_size, M=min(configs[0]["M"], MAX_BINDING_BYTES // (4 * 4096)))
    valid = K % group_size == 0 and K % 8 == 0 and N % 8 == 0
    if valid:
        assert load_text(scratch, document(configs)).configs[0].dims["K"] == K
        return
    with pytest.raises(MatrixError) as raised:
        load_text(scratch, document(configs))
    assert raised.value.key == ("K" if K % group_size or K % 8 else "N")
    assert "not a multiple of" in raised.value.problem
