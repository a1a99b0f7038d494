"""Every malformed matrix.toml gives one line naming the file, the config (or table) and the key, exit 2, and
nothing is exported or run (issue #8).

Each case edits a small valid matrix. The loader is checked in-process (fast, exact fields of MatrixError), the
CLI's `validate` and `run` in-process through cli.main (exit code, one stderr line, no cache or results written),
and a few cases through a real `python -m q4gsw` subprocess.

Also (issue 14, real subprocesses on a tiny matrix from tests/helpers.write_matrix): names that become paths and
arguments (config, suite, kernel, backend, kernel set) are rejected by `validate`, `list` and `run`; `validate`
rejects what can never run (buffers over the binding limit, a `when` that never holds, dispatches out of range,
expressions that divide by zero, limits beyond any adapter, case twins).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, cli_in_process, run_cli
from helpers import assert_clean_usage_error, write_matrix

from q4gsw import cli
from q4gsw.matrix.load import MatrixError, load_matrix
from q4gsw.report import verdict

BASE = f'''schema_version = 1

[defaults]
group_size = 32
timeout_s = 60

[backend.swiftshader]
api = "Vulkan"
adapter_name = "SwiftShader"
device_type = "CPU"
provision = "swiftshader"

[kernel.gemv]
file = "{REPO}/q4gsw/ops/linear_q4gsw/kernels/q4gsw_gemv.wgsl"
when = "M == 1"
dispatch = "min(ceil(N / 4), max_workgroups_per_dimension)"
overrides = {{ wg_size = 64 }}

[[config]]
name = "a"
M = 3
K = 64
N = 16
tier = "required"
tolerance = {{ atol = 1e-5, rtol = 1e-4, justification = "K=64: fp32 rounding is far below 1e-6." }}

[[config]]
name = "b"
M = 1
K = 64
N = 16
tier = "required"
tolerance = {{ atol = 1e-5, rtol = 1e-4, justification = "K=64: fp32 rounding is far below 1e-6." }}
'''

BACKEND = BASE[BASE.index("[backend.swiftshader]"):BASE.index("[kernel.gemv]")]
TOL_A = 'tolerance = { atol = 1e-5, rtol = 1e-4, justification = "K=64: fp32 rounding is far below 1e-6." }'


def line_of(text: str) -> int:
    """1-based line of the first occurrence of `text` in BASE."""
    return BASE[:BASE.index(text)].count("\n") + 1


CONFIGS = BASE[BASE.index("[[config]]"):]
LINE_M, LINE_NAME, LINE_KERNEL = line_of("M = 3"), line_of('name = "a"'), line_of("[kernel.gemv]")


def tol_a(**fields: str) -> str:
    """Config a's tolerance line with some fields replaced (value None drops the field)."""
    values = {"atol": "1e-5", "rtol": "1e-4", "justification": '"K=64: fp32 rounding is far below 1e-6."', **fields}
    inner = ", ".join(f"{k} = {v}" for k, v in values.items() if v is not None)
    return f"tolerance = {{ {inner} }}"


@dataclass(frozen=True)
class Bad:
    id: str
    old: str  # replaced (first occurrence) in BASE ...
    new: str  # ... by this
    where: str  # MatrixError.where must contain this
    key: str  # MatrixError.key must equal this
    says: str  # the message must contain this (regular expression)


CASES = [
    # --- TOML syntax: tomllib's line and column must reach the user
    Bad("toml-syntax", "M = 3", "M = = 3", "TOML syntax", "-", rf"Invalid value \(at line {LINE_M}, column 5\)"),
    Bad("toml-unclosed-string", 'name = "a"', 'name = "a', "TOML syntax", "-", rf"\(at line {LINE_NAME}, column \d+\)"),
    Bad("toml-duplicate-key", "M = 3", "M = 3\nM = 4", "TOML syntax", "-",
        rf"Cannot overwrite a value \(at line {LINE_M + 1}, column \d+\)"),
    Bad("toml-unclosed-table", "[kernel.gemv]", "[kernel.gemv", "TOML syntax", "-",
        rf"\(at line {LINE_KERNEL}, column \d+\)"),
    # --- unknown keys, with a suggestion
    Bad("unknown-config-key", 'tier = "required"', 'teir = "required"', "config 'a'", "teir",
        r"unknown key — did you mean 'tier'\?"),
    Bad("unknown-tolerance-key", TOL_A, tol_a(atol=None, atoll="1e-5"), "config 'a'", "tolerance.atoll",
        r"unknown key — did you mean 'atol'\?"),
    Bad("unknown-top-level-key", "[defaults]", "[defualts]", "top level", "defualts", r"did you mean 'defaults'\?"),
    Bad("unknown-defaults-key", "group_size = 32", "group_sise = 32", "[defaults]", "group_sise",
        r"did you mean 'group_size'\?"),
    Bad("unknown-backend-key", 'adapter_name = "SwiftShader"', 'adapter_name = "SwiftShader"\nadaptor = "x"',
        "[backend.swiftshader]", "adaptor", r"did you mean 'adapter_name'\?"),
    Bad("unknown-kernel-key", 'dispatch = "min', 'dispach = "x"\ndispatch = "min', "[kernel.gemv]", "dispach",
        r"did you mean 'dispatch'\?"),
    # --- justification
    Bad("missing-justification", TOL_A, tol_a(justification=None), "config 'a'", "tolerance.justification",
        r"missing — add a sentence saying why"),
    Bad("empty-justification", TOL_A, tol_a(justification='"   "'), "config 'a'", "tolerance.justification",
        r"is empty"),
    Bad("justification-not-string", TOL_A, tol_a(justification="5"), "config 'a'", "tolerance.justification",
        r"expected a string, got 5"),
    Bad("missing-tolerance", "\n" + TOL_A, "", "config 'a'", "tolerance", r"missing"),
    Bad("tolerance-not-table", TOL_A, "tolerance = 1e-5", "config 'a'", "tolerance", r"expected a table, got float"),
    # --- wrong types
    Bad("M-string", "M = 3", 'M = "3"', "config 'a'", "M", r"expected an integer, got '3' \(str\)"),
    Bad("M-float", "M = 3", "M = 3.0", "config 'a'", "M", r"expected an integer, got 3.0 \(float\)"),
    Bad("M-bool", "M = 3", "M = true", "config 'a'", "M", r"expected an integer, got True \(bool\)"),
    Bad("N-array", "N = 16", "N = [16]", "config 'a'", "N", r"expected an integer"),
    Bad("tier-int", 'tier = "required"', "tier = 1", "config 'a'", "tier", r"expected a string, got 1"),
    Bad("name-int", 'name = "a"', "name = 7", "config #1", "name", r"expected a string, got 7"),
    Bad("atol-string", TOL_A, tol_a(atol='"1e-5"'), "config 'a'", "tolerance.atol", r"expected a number, got '1e-5'"),
    Bad("inputs-not-list", 'tier = "required"', 'tier = "required"\ninputs = 3', "config 'a'", "inputs",
        r"expected a non-empty list"),
    Bad("config-single-table", CONFIGS, '[config]\nname = "a"\nM = 3\nK = 64\nN = 16\ntier = "required"\n' + TOL_A,
        "top level", "config",
        r"single table \(\[config\]\).*\[\[config\]\]"),
    # --- dims
    Bad("M-zero", "M = 3", "M = 0", "config 'a'", "M", r"must be at least 1, got 0"),
    Bad("N-negative", "N = 16", "N = -8", "config 'a'", "N", r"must be at least 1, got -8"),
    Bad("K-negative", "K = 64", "K = -64", "config 'a'", "K", r"must be at least 1, got -64"),
    Bad("group-size-zero", "K = 64", "K = 64\ngroup_size = 0", "config 'a'", "group_size", r"must be at least 1"),
    # a dim is the op's: missing, ill-typed or another op's dim names the key and lists the op's own dims
    Bad("dim-missing", "M = 3\n", "", "config 'a'", "M",
        r"missing — add M = <integer>: op linear_q4gsw has the dims M \(rows of the activation.*group_size \("),
    Bad("dim-a-string", "M = 3", 'M = "3"', "config 'a'", "M",
        r"expected an integer, got '3' \(str\) — write a whole number without quotes: op linear_q4gsw has the dims M"),
    Bad("dim-of-another-op", "M = 3", "M = 3\nvocab = 3", "config 'a'", "vocab",
        r"unknown key — op linear_q4gsw has the dims M, K, N, group_size; the other keys are name, tier"),
    Bad("K-not-multiple-of-group", "K = 64", "K = 48", "config 'a'", "K",
        r"K=48 is not a multiple of group_size=32"),
    Bad("K-not-multiple-of-8", "K = 64", "K = 36\ngroup_size = 4", "config 'a'", "K", r"K=36 is not a multiple of 8"),
    Bad("N-not-multiple-of-8", "N = 16", "N = 12", "config 'a'", "N", r"N=12 is not a multiple of 8"),
    Bad("weight-seed-negative", "M = 3", "M = 3\nweight_seed = -1", "config 'a'", "weight_seed",
        r"must not be negative"),
    # --- unknown names
    Bad("unknown-tier", 'tier = "required"', 'tier = "reqired"', "config 'a'", "tier",
        r"unknown value 'reqired' — did you mean 'required'\?"),
    Bad("unknown-input", 'tier = "required"', 'tier = "required"\ninputs = ["rmap"]', "config 'a'", "inputs",
        r"unknown value 'rmap' — did you mean 'ramp'\?"),
    Bad("unknown-kernel-device-type", "overrides = {", 'device_type = "GPUs"\noverrides = {', "[kernel.gemv]",
        "device_type", r"did you mean 'GPU'\?"),
    Bad("unknown-op", 'tier = "required"', 'tier = "required"\nop = "linear_q4gs"', "config 'a'", "op",
        r"did you mean 'linear_q4gsw'\?"),
    Bad("bad-kernel-adapter-pattern", "overrides = {", 'adapter_name = "("\noverrides = {', "[kernel.gemv]",
        "adapter_name", "not a valid regular expression"),
    Bad("unknown-api", 'api = "Vulkan"', 'api = "vulkan"', "[backend.swiftshader]", "api", r"did you mean 'Vulkan'\?"),
    Bad("unknown-provisioner", 'provision = "swiftshader"', 'provision = "swiftshadr"', "[backend.swiftshader]",
        "provision", r"did you mean 'swiftshader'\?"),
    Bad("duplicate-name", 'name = "b"', 'name = "a"', "config 'a'", "name", r"duplicate name \(also config #1\)"),
    Bad("bad-regex", 'adapter_name = "SwiftShader"', 'adapter_name = "(["', "[backend.swiftshader]", "adapter_name",
        r"not a valid regular expression"),
    # --- tolerances: negative, NaN, inf (TOML has nan and inf literals)
    Bad("atol-negative", TOL_A, tol_a(atol="-1e-5"), "config 'a'", "tolerance.atol", r"must not be negative"),
    Bad("rtol-negative", TOL_A, tol_a(rtol="-1e-4"), "config 'a'", "tolerance.rtol", r"must not be negative"),
    Bad("atol-nan", TOL_A, tol_a(atol="nan"), "config 'a'", "tolerance.atol", r"must be finite, got nan"),
    Bad("rtol-neg-nan", TOL_A, tol_a(rtol="-nan"), "config 'a'", "tolerance.rtol", r"must be finite, got nan"),
    Bad("atol-inf", TOL_A, tol_a(atol="inf"), "config 'a'", "tolerance.atol", r"must be finite, got inf"),
    Bad("rtol-plus-inf", TOL_A, tol_a(rtol="+inf"), "config 'a'", "tolerance.rtol", r"must be finite, got inf"),
    Bad("atol-minus-inf", TOL_A, tol_a(atol="-inf"), "config 'a'", "tolerance.atol", r"must be finite, got -inf"),
    Bad("atol-overflow", TOL_A, tol_a(atol="1e400"), "config 'a'", "tolerance.atol", r"must be finite, got inf"),
    Bad("timeout-zero", "M = 3", "M = 3\ntimeout_s = 0", "config 'a'", "timeout_s", r"must be positive"),
    Bad("timeout-nan", "timeout_s = 60", "timeout_s = nan", "config 'a'", "timeout_s", r"must be finite"),
    # --- kernel expressions (evaluation errors of any kind are the user's)
    Bad("dispatch-syntax", 'dispatch = "min(ceil(N / 4), max_workgroups_per_dimension)"', 'dispatch = "ceil(N /"',
        "[kernel.gemv]", "dispatch", r"bad expression 'ceil\(N /'"),
    Bad("dispatch-unknown-name", 'dispatch = "min(ceil(N / 4), max_workgroups_per_dimension)"',
        'dispatch = "ceil(N / wg)"', "[kernel.gemv]", "dispatch", r"bad expression .*'wg'"),
    Bad("dispatch-index-error", 'dispatch = "min(ceil(N / 4), max_workgroups_per_dimension)"',
        'dispatch = "[1][5]"', "[kernel.gemv]", "dispatch", r"bad expression '\[1\]\[5\]': list index out of range"),
    Bad("dispatch-overflow", 'dispatch = "min(ceil(N / 4), max_workgroups_per_dimension)"',
        'dispatch = "ceil(1e308 * 10)"', "[kernel.gemv]", "dispatch", r"bad expression .*infinity"),
    Bad("dispatch-four-dims", 'dispatch = "min(ceil(N / 4), max_workgroups_per_dimension)"', 'dispatch = "1, 1, 1, 1"',
        "[kernel.gemv]", "dispatch", r"needs 1 to 3 workgroup counts, got 4"),
    Bad("kernel-file-missing", "q4gsw/ops/linear_q4gsw/kernels/q4gsw_gemv.wgsl",
        "q4gsw/ops/linear_q4gsw/kernels/nope.wgsl", "[kernel.gemv]", "file",
        r"nope.wgsl' does not exist"),
    # A `before` on an op that defines no first kernel's buffers: every run of it would fail (issue 29).
    Bad("before-on-an-op-without-chains", "overrides = { wg_size = 64 }\n",
        f'overrides = {{ wg_size = 64 }}\n\n[kernel.gemv.before]\nfile = "{REPO}/tests/data/good.wgsl"\n'
        'when = "1"\ndispatch = "1"\n', "[kernel.gemv]", "before",
        r"op 'linear_q4gsw' runs no kernel before its own \(ops that chain: linear_dq8ca_q4gsw[^)]*\) — remove the "
        r"\[kernel.gemv.before\] table"),
    # --- whole-file problems
    Bad("schema-version", "schema_version = 1", "schema_version = 2", "top level", "schema_version",
        r"unsupported version 2"),
    Bad("no-backends", BACKEND, "", "top level", "backend", r"no backends defined"),
]


def _write(tmp_path: Path, case: Bad) -> Path:
    assert case.old in BASE, f"case {case.id}: {case.old!r} is not in the base matrix"
    path = tmp_path / f"bad-{case.id}.toml"
    path.write_text(BASE.replace(case.old, case.new, 1))
    return path


def test_base_matrix_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "matrix.toml"
    path.write_text(BASE)
    matrix = load_matrix(path)
    assert [c.name for c in matrix.configs] == ["a", "b"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_loader_names_file_config_and_key(tmp_path: Path, case: Bad) -> None:
    path = _write(tmp_path, case)
    with pytest.raises(MatrixError) as raised:
        load_matrix(path)
    error = raised.value
    message = str(error)
    assert case.where in error.where, message
    assert error.key == case.key, message
    assert re.search(case.says, message), message
    assert message.startswith(f"{path}: "), message  # names the file
    assert f"key '{case.key}'" in message
    assert "\n" not in message  # one line


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_validate_and_run_exit_2_and_touch_nothing(tmp_path: Path, case: Bad, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, case)
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("Q4GSW_CACHE", str(cache))
    results = tmp_path / "results"
    for argv in (["validate", "--matrix", str(path)],
                 ["run", "--matrix", str(path), "--backend", "swiftshader", "--results", str(results)],
                 ["check", "--matrix", str(path), "--backend", "swiftshader", "--results", str(results),
                  "--kernel", str(REPO / "tests/data/good.wgsl"), "--dispatch", "ceil(M * N / 64)"]):
        assert cli.main(argv) == verdict.USAGE, argv
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, captured.err
        assert lines[0].startswith(f"error: {path}: "), lines[0]
        assert case.where in lines[0] and f"key '{case.key}'" in lines[0]
        assert captured.out == ""
    assert list(cache.iterdir()) == []  # nothing provisioned, exported or cached
    assert not results.exists()  # nothing run


@pytest.mark.parametrize("argv, expected", [
    (["--backend", "swiftshadr"], "{path}: backend 'swiftshadr': key 'backend': no such backend — did you mean "
                                  "'swiftshader'?"),
    # Names on the command line are checked against the matrix by the Selection (q4gsw.cases), before any work.
    (["--backend", "swiftshader", "--config", "aa"], "command line: --config: key '--config': 'aa' names nothing in "
                                                     "{path} — did you mean 'a'? choose from a, b"),
], ids=["unknown-backend", "unknown-config"])
def test_cli_unknown_backend_or_config(tmp_path: Path, argv: list[str], expected: str,
                                       capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "matrix.toml"
    path.write_text(BASE)
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("Q4GSW_CACHE", str(cache))
    assert cli.main(["run", "--matrix", str(path), "--results", str(tmp_path / "results"), *argv]) == verdict.USAGE
    line = capsys.readouterr().err.strip()
    assert "\n" not in line
    assert line.startswith("error: " + expected.format(path=path)), line
    assert list(cache.iterdir()) == [] and not (tmp_path / "results").exists()


def test_unreadable_matrix_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(MatrixError, match="file not found"):
        load_matrix(missing)
    with pytest.raises(MatrixError, match="cannot be read: IsADirectoryError"):
        load_matrix(tmp_path)
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(BASE.replace("far below", "\xe9t\xe9 below").encode("latin-1"))
    with pytest.raises(MatrixError, match="cannot be read: UnicodeDecodeError"):
        load_matrix(latin1)


@pytest.mark.parametrize("case", [c for c in CASES if c.id in ("toml-syntax", "unknown-config-key", "atol-nan")],
                         ids=lambda c: c.id)
def test_real_cli_subprocess(tmp_path: Path, case: Bad) -> None:
    """The same errors through `python -m q4gsw` as a user runs it: stderr is exactly one line, exit 2."""
    path = _write(tmp_path, case)
    cache = tmp_path / "cache"
    cache.mkdir()
    for argv in (["validate", "--matrix", str(path)],
                 ["run", "--matrix", str(path), "--backend", "swiftshader", "--results", str(tmp_path / "r")]):
        done = run_cli(*argv, env={"Q4GSW_CACHE": str(cache)}, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and re.search(case.says, lines[0]), done.stderr
        assert lines[0].startswith(f"error: {path}: ") and f"key '{case.key}'" in lines[0]
    assert list(cache.iterdir()) == [] and not (tmp_path / "r").exists()


def test_nan_and_inf_literals_are_what_toml_gives() -> None:
    """Guard against a TOML library change: the tolerance cases above rely on these literals parsing."""
    import tomllib

    values = tomllib.loads("a = nan\nb = -nan\nc = inf\nd = +inf\ne = -inf\nf = 1e400")
    assert math.isnan(values["a"]) and math.isnan(values["b"])
    assert values["c"] == values["d"] == values["f"] == math.inf and values["e"] == -math.inf


# ------------------------------------------------------------------------------------------------
# Names that become paths and arguments; what can never run (issue 14): `validate`, `list`, `run` exit 2
# ------------------------------------------------------------------------------------------------

NAME_CASES = [  # (id, (old, new) in the matrix text, the key the error names)
    ("config-dotdot", ('name = "b"', 'name = ".."'), "name"),
    ("config-dot", ('name = "b"', 'name = "."'), "name"),
    ("config-slash", ('name = "b"', 'name = "../../etc"'), "name"),
    ("config-option", ('name = "b"', 'name = "-rf"'), "name"),
    ("config-space", ('name = "b"', 'name = "b c"'), "name"),
    ("config-shell", ('name = "b"', 'name = "b;rm"'), "name"),
    ("config-newline", ('name = "b"', 'name = "b\\nc"'), "name"),
    ("config-empty", ('name = "b"', 'name = ""'), "name"),
    ("config-non-ascii", ('name = "b"', 'name = "bé"'), "name"),
    ("config-too-long", ('name = "b"', f'name = "{"b" * 65}"'), "name"),
    ("config-case-twin", ('name = "h"', 'name = "B"'), "name"),
    ("suite-path", ('tier = "required"', 'tier = "required"\nsuite = "../x"'), "suite"),
    ("kernel-name", ("[kernel.good]", '[kernel."../good"]'), "kernel name"),
    ("backend-name", ("[backend.swiftshader]", '[backend."swift shader"]'), "backend name"),
    ("kernel-set-name", ("[kernel.good]", '[kernel_set."x/y"]\nfolder = "f"\ngenerator = "g"\nroute = []\n'
                                          '[kernel_set."x/y".kernel]\n\n[kernel.good]'), "kernel set name"),
]


@pytest.mark.parametrize("edit, key", [c[1:] for c in NAME_CASES], ids=[c[0] for c in NAME_CASES])
def test_names_that_become_paths_or_arguments_are_rejected(tmp_path: Path, edit: tuple[str, str], key: str) -> None:
    matrix = write_matrix(tmp_path / "matrix.toml", replace=(edit,))
    cache = tmp_path / "cache"
    for argv in (["validate"], ["list"], ["run", "--backend", "swiftshader", "--results", str(tmp_path / "r")]):
        done = cli_in_process(*argv, "--matrix", str(matrix), env={"Q4GSW_CACHE": str(cache)})
        assert_clean_usage_error(done, f"key '{key}'")
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not cache.exists() and not (tmp_path / "r").exists()


VALIDATE = [  # (id, write_matrix keyword arguments, the key the error names, text it contains; None: valid)
    ("valid", {}, None, ""),
    ("M-2-to-the-40", {"replace": (("M = 1\n", "M = 1099511627776\n"),)}, "M", "GiB buffer binding"),
    ("K-2-to-the-40", {"replace": (("K = 64\n", "K = 1099511627776\n"),)}, "M", "GiB buffer binding"),
    ("N-2-to-the-33", {"replace": (("N = 16\n", "N = 8589934592\n"),)}, "M", "GiB buffer binding"),
    ("weights-over-2-GiB", {"replace": (("N = 16\n", "N = 536870912\n"),)}, "N", "GiB buffer binding"),
    ("weight-seed-over-64-bits", {"replace": (('tier = "required"', 'tier = "required"\nweight_seed = '
                                                                    '18446744073709551616'),)},
     "weight_seed", "does not fit 64 bits"),
    ("when-never-holds", {"when": "M > 1000"}, "M/K/N/group_size", "`when = M > 1000` does not hold"),
    ("dispatch-zero", {"dispatch": "M - 1"}, "M/K/N/group_size", "dispatch (0,) is outside"),
    ("dispatch-beyond-any-adapter", {"dispatch": "2 ** 40"}, "M/K/N/group_size", "is outside 1.."),
    ("dispatch-divides-by-zero", {"dispatch": "N / (M - 1)"}, "M/K/N/group_size", "ZeroDivisionError"),
    ("when-divides-by-zero", {"when": "N / (M - 1) > 1"}, "M/K/N/group_size", "ZeroDivisionError"),
    ("limit-beyond-any-adapter", {"kernel_extra": "requires_limits = { max_workgroup_storage_size = 4294967296 }"},
     "M/K/N/group_size", "needs max_workgroup_storage_size >= 4294967296"),
    ("kernel-on-no-backend", {"kernel_extra": 'adapter_name = "no such adapter"'}, "M/K/N/group_size",
     "no backend of the matrix"),
    ("bad-name", {"replace": (('name = "b"', 'name = "../b"'),)}, "name", "not usable as a file"),
    ("case-twin-names", {"replace": (('name = "h"', 'name = "B"'),)}, "name", "only in case"),
]


@pytest.mark.parametrize("edits, key, says", [v[1:] for v in VALIDATE], ids=[v[0] for v in VALIDATE])
def test_validate_rejects_what_can_never_run(tmp_path: Path, edits: dict, key: str | None, says: str) -> None:
    matrix = write_matrix(tmp_path / "matrix.toml", configs="bh", **edits)
    done = cli_in_process("validate", "--matrix", str(matrix))
    if key is None:
        assert done.returncode == 0 and "ok" in done.stdout, done.stderr
        return
    assert_clean_usage_error(done, f"key '{key}'", says)
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_empty_route_is_rejected(tmp_path: Path) -> None:
    """route = [] would silently turn the runtime's routing off."""
    kernel_set = ('[kernel_set.x]\ngenerator = "g"\nroute = []\n[kernel_set.x.kernel.v]\nfile = "v.wgsl"\n'
                  'when = "1"\ndispatch = "1"\n\n[kernel.good]')
    matrix = write_matrix(tmp_path / "matrix.toml", replace=(("[kernel.good]", kernel_set),))
    with pytest.raises(MatrixError, match=r"\[kernel_set\.x\]: key 'route': expected a non-empty list"):
        load_matrix(matrix)
