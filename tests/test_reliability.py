"""Reliability, round two (issue 14): hostile inputs of each class give exit 2 (or a FAIL with its reason), never a
traceback, never exit 0 without a case having run, and never remove a file q4gsw did not write.

One table-driven test per class: names, empty selections, unsupported-only required configs, output locations and
report merges, orphans, races and caches, validate. Matrices are tiny (K=64, N=16) and fixtures are written with
numpy in the format of q4gsw.export (no torch), except for the two-runs-on-a-fresh-cache row, which exports as a
user's first run does. Tests that need a WebGPU adapter are marked e2e (SwiftShader, provisioned once).
docs/reliability.md lists what is tried here and what the user sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import pytest
from helpers import write_fixture

from q4gsw import export
from q4gsw.matrix import load_matrix
from q4gsw.ops.linear_q4gsw.layout import PackedLinear, pack_int4
from q4gsw.paths import OWNED_MARKER, NotOurs
from q4gsw.paths import remove_owned as remove_owned_in
from q4gsw.result import Result, Shape, write_results

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
TOLERANCE = 'tolerance = { atol = 1e-5, rtol = 1e-4, justification = "K=64: fp32 rounding is far below 1e-6." }'

MATRIX = '''schema_version = 1

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
    text = MATRIX.format(root=REPO, timeout_s=timeout_s, when=when, dispatch=dispatch, kernel=kernel,
                         kernel_extra=kernel_extra,
                         configs="".join(f"\n[[config]]\n{CONFIGS[c]}\n{TOLERANCE}\n" for c in configs))
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
        scales = (rng.uniform(0.5, 2.0, size=(config.K // config.group_size, config.N)) * 0.01).astype(np.float32)
        packed = PackedLinear(weight_packed=pack_int4(rng.integers(-8, 8, size=(config.N, config.K))), scales=scales,
                              group_size=config.group_size)
        write_fixture(folder, config, packed)
    return folder


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m q4gsw ARGS` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "q4gsw", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def assert_clean_usage_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, no traceback, and the error names what is wrong."""
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    for needle in needles:
        assert needle in done.stderr, done.stderr


def results_of(folder: Path) -> dict[str, list[dict]]:
    by_config: dict[str, list[dict]] = {}
    for r in json.loads((folder / "results.json").read_text())["results"]:
        by_config.setdefault(r["config"], []).append(r)
    return by_config


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under folder (links as their target), to show that nothing was removed or changed."""
    if not folder.exists() and not folder.is_symlink():
        return {}
    return {str(p.relative_to(folder)): (f"-> {os.readlink(p)}" if p.is_symlink() else
                                         p.read_bytes() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def icd() -> dict[str, str]:
    """Child environment pointing q4gsw at a provisioned SwiftShader ICD (provisioned once, into $Q4GSW_CACHE or the
    default cache), so tests with their own caches do not download it again."""
    from q4gsw.webgpu.adapter import BackendUnavailable
    from q4gsw.webgpu.provision import provision

    try:
        env = provision(load_matrix(REPO / "matrix.toml").backend("swiftshader"))
    except BackendUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"SwiftShader unavailable: {exc}")
    return {"Q4GSW_SWIFTSHADER_ICD": env["VK_ICD_FILENAMES"]}


# ------------------------------------------------------------------------------------------------
# 1. Names that become paths and arguments; the one delete
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
        done = cli(*argv, "--matrix", str(matrix), env={"Q4GSW_CACHE": str(cache)}, timeout=60)
        assert_clean_usage_error(done, f"key '{key}'")
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not cache.exists() and not (tmp_path / "r").exists()


def _user_folder(at: Path) -> None:
    at.mkdir(parents=True)
    (at / "notes.txt").write_text("the user's own file")


def _fixture_plus_user_file(at: Path) -> None:
    write_fixtures(at.parent, at.parent.parent / "matrix.toml", at.name)
    (at / "notes.txt").write_text("the user's own file, put beside a fixture")


def _link_to(target: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(at: Path) -> None:
        elsewhere = at.parent.parent / "elsewhere"
        target(elsewhere)
        at.parent.mkdir(parents=True, exist_ok=True)
        at.symlink_to(elsewhere, target_is_directory=True)
    return make


def _file(at: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    at.write_text("the user's file")


DESTINATIONS = [  # (id, what is at DIR/<config> before `export --out DIR`)
    ("user-folder", _user_folder),
    ("user-file", _file),
    ("symlink-to-user-folder", _link_to(_user_folder)),
    ("symlink-to-a-fixture", _link_to(lambda at: write_fixtures(at.parent, at.parent / "matrix.toml", "b")
                                      and (at.parent / "b").rename(at))),
    ("broken-symlink", lambda at: (at.parent.mkdir(parents=True), at.symlink_to(at.parent / "nowhere"))),
    ("fixture-plus-user-file", _fixture_plus_user_file),
]


@pytest.mark.parametrize("make", [d[1] for d in DESTINATIONS], ids=[d[0] for d in DESTINATIONS])
def test_export_out_never_replaces_what_q4gsw_did_not_write(tmp_path: Path, make: Callable[[Path], None]) -> None:
    matrix = write_matrix(tmp_path / "matrix.toml")
    out = tmp_path / "out"
    make(out / "b")
    before = snapshot(tmp_path)
    cache = tmp_path / "cache"
    done = cli("export", "--matrix", str(matrix), "--config", "b", "--out", str(out), "--cache", str(cache),
               env={"Q4GSW_CACHE": str(cache)}, timeout=120)
    assert_clean_usage_error(done, "config 'b'", "key '--out'", "is not a fixture q4gsw wrote")
    assert "nothing was exported or removed" in done.stderr
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("cache")} == before  # nothing removed or changed
    assert not cache.exists() or list(cache.iterdir()) == []  # checked before any export


OWNERSHIP = [  # (id, build the path under `parent`, is it q4gsw's to delete?, refused whatever says it is ours?)
    ("complete-fixture", lambda p: write_fixtures(p, p / "matrix.toml", "b") / "b", True, False),
    ("partial-folder", lambda p: (p / "x").mkdir() or (p / "x" / OWNED_MARKER).write_text("") or p / "x", True,
     False),
    ("user-folder", lambda p: _user_folder(p / "x") or p / "x", False, False),
    ("user-file", lambda p: _file(p / "x") or p / "x", False, True),
    ("fixture-plus-user-file", lambda p: _fixture_plus_user_file(p / "b") or p / "b", False, False),
    ("symlink-to-fixture", lambda p: (write_fixtures(p / "real", p / "matrix.toml", "b"),
                                      (p / "x").symlink_to(p / "real" / "b"))[0] and p / "x", False, True),
    ("dotdot", lambda p: (p / "sub").mkdir() or p / "sub" / "..", False, True),
]


@pytest.mark.parametrize("build, ours, never", [o[1:] for o in OWNERSHIP], ids=[o[0] for o in OWNERSHIP])
def test_the_one_delete_removes_only_what_q4gsw_wrote(tmp_path: Path, build: Callable[[Path], Path], ours: bool,
                                                      never: bool) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    write_matrix(parent / "matrix.toml")
    write_matrix(tmp_path / "matrix.toml")
    path = build(parent)
    before = snapshot(tmp_path)
    if ours:
        export.remove_owned(path)
        assert not path.exists()
        return
    with pytest.raises(NotOurs):
        export.remove_owned(path)
    if never:  # a link, a file or '..' is refused even by a lax ownership rule
        with pytest.raises(NotOurs):
            remove_owned_in(path, path.parent, lambda p: True)
    assert snapshot(tmp_path) == before


def test_the_one_delete_never_leaves_its_parent(tmp_path: Path) -> None:
    inside = tmp_path / "a" / "x"
    inside.mkdir(parents=True)
    (inside / OWNED_MARKER).write_text("")
    with pytest.raises(NotOurs, match="not a folder directly inside"):
        remove_owned_in(inside, tmp_path)  # a marked folder, but not where the caller said it would be
    assert inside.exists()


# ------------------------------------------------------------------------------------------------
# 2. Empty selections and options naming nothing in the matrix
# ------------------------------------------------------------------------------------------------

KERNEL = str(DATA / "good.wgsl")
EMPTY_SELECTIONS = [  # (id, argv after the command's --matrix, text the error must contain)
    ("run-suite-typo", ["run", "--backend", "swiftshader", "--suite", "edgse"], "'edgse' names nothing"),
    ("check-suite-typo", ["check", "--kernel", KERNEL, "--dispatch", "1", "--backend", "swiftshader", "--suite",
                          "lama"], "'lama' names nothing"),
    ("run-unknown-config", ["run", "--backend", "swiftshader", "--config", "nope"], "--config"),
    ("run-tier-with-no-config", ["run", "--backend", "swiftshader", "--tier", "optional"], "key '--suite/--tier'"),
    ("run-suite-without-that-tier", ["run", "--backend", "swiftshader", "--suite", "other"], "key '--suite/--tier'"),
    ("run-unknown-tier", ["run", "--backend", "swiftshader", "--tier", "requried"], "--tier"),
    ("run-unknown-backend", ["run", "--backend", "swiftshadr", "--suite", "llama"], "key 'backend'"),
    ("export-suite-typo", ["export", "--suite", "lama"], "'lama' names nothing"),
    ("mutants-suite-typo", ["mutants", "--backend", "swiftshader", "--suite", "lama"], "'lama' names nothing"),
    ("audit-suite-typo", ["audit", "--suite", "lama"], "'lama' names nothing"),
    ("audit-tier-with-no-config", ["audit", "--tier", "optional", "--suite", "llama"], "selects no config"),
    ("ci-matrix-suite-typo", ["ci-matrix", "--suite", "lama"], "lama"),
    ("bench-unknown-backend", ["bench", "--backend", "swiftshadr"], "key 'backend'"),
]


@pytest.mark.parametrize("argv, says", [e[1:] for e in EMPTY_SELECTIONS], ids=[e[0] for e in EMPTY_SELECTIONS])
def test_a_selection_matching_nothing_is_a_usage_error(tmp_path: Path, argv: list[str], says: str) -> None:
    matrix = write_matrix(tmp_path / "matrix.toml", configs="bho")
    outputs = {"run": ["--results", str(tmp_path / "r")], "check": ["--results", str(tmp_path / "r")],
               "mutants": ["--results", str(tmp_path / "r")], "audit": ["--json", str(tmp_path / "r" / "a.json")],
               "bench": ["--json", str(tmp_path / "r" / "b.json")]}.get(argv[0], [])
    cache = tmp_path / "cache"
    done = cli(*argv, "--matrix", str(matrix), *outputs, env={"Q4GSW_CACHE": str(cache)}, timeout=120)
    assert_clean_usage_error(done, says)
    assert not (tmp_path / "r").exists() and not cache.exists()  # nothing run, provisioned or written


# ------------------------------------------------------------------------------------------------
# 3. A required config none of whose cases can run fails, with the reason; report --strict agrees
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unrunnable:
    id: str
    matrix: dict[str, str] = field(default_factory=dict)  # write_matrix keyword arguments
    check_dispatch: str = ""  # run `check --kernel good.wgsl --dispatch THIS` instead of `run`
    says: str = ""  # the failing result's message contains this


UNRUNNABLE = [
    Unrunnable("when-never-holds", {"when": "M > 1000"}, says="no kernel applies to 1x64x16"),
    Unrunnable("missing-feature", {"kernel_extra": 'requires_features = ["no-such-feature"]'},
               says="needs adapter features ['no-such-feature']"),
    Unrunnable("missing-limit", {"kernel_extra": "requires_limits = { max_workgroup_storage_size = 1000000000 }"},
               says="needs max_workgroup_storage_size >= 1000000000"),
    Unrunnable("dispatch-zero-at-run-time", {"dispatch": "M - 1"}, says="dispatch (0,) is outside"),
    Unrunnable("dispatch-negative-at-run-time", {"dispatch": "N - 100"}, says="dispatch (-84,) is outside"),
    Unrunnable("dispatch-over-the-adapter-limit", {"dispatch": "max_workgroups_per_dimension + 1"},
               says="is outside 1.."),
    Unrunnable("dispatch-divides-by-zero-at-run-time", {"dispatch": "N / (M - 1)"}, says="ZeroDivisionError"),
    Unrunnable("check-dispatch-zero", check_dispatch="M - 1", says="dispatch (0,) is outside"),
]


@pytest.mark.e2e
@pytest.mark.parametrize("case", UNRUNNABLE, ids=[u.id for u in UNRUNNABLE])
def test_a_required_config_with_no_executed_case_fails(tmp_path: Path, icd: dict[str, str],
                                                       case: Unrunnable) -> None:
    matrix = write_matrix(tmp_path / "matrix.toml", configs="b", **case.matrix)  # type: ignore[arg-type]
    fixtures = write_fixtures(tmp_path / "fixtures", matrix, "b")
    results = tmp_path / "results"
    common = ["--matrix", str(matrix), "--backend", "swiftshader", "--fixtures", str(fixtures), "--results",
              str(results)]
    if case.check_dispatch:
        done = cli("check", "--kernel", KERNEL, "--dispatch", case.check_dispatch, *common, env=icd)
    else:
        done = cli("run", *common, env=icd)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    rows = results_of(results)["b"]
    assert not any(r["status"] == "pass" for r in rows)
    failures = [r for r in rows if r["status"] == "fail"]
    assert failures and any(case.says in r["message"] for r in failures), rows
    if not case.check_dispatch:
        assert any(r["message"].startswith("required config 'b' ran no case on 'swiftshader'") for r in failures)
    strict = cli("report", str(results), "--out", str(tmp_path / "report"), "--strict", "--quiet",
                 "--no-step-summary")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert cli("report", str(results), "--out", str(tmp_path / "report"), "--quiet",
               "--no-step-summary").returncode == 0  # without --strict a report is not a verdict


def _result(config: str, status: str, tier: str = "required", backend: str = "swiftshader") -> Result:
    return Result(config=config, backend=backend, status=status, message=f"{status} for the test", tier=tier,
                  case_id=f"{config}/k/ramp@{backend}", kernel="k", input="ramp", shape=Shape(1, 64, 16, 32))


STRICT = [  # (id, results, run's meta, does report --strict pass?)
    ("all-passed", [_result("b", "pass"), _result("h", "skip", "heavy")], {}, True),
    ("one-failed", [_result("b", "pass"), _result("a", "fail")], {}, False),
    ("nothing-ran", [_result("h", "skip", "heavy"), _result("o", "unsupported", "optional")], {}, False),
    ("required-only-unsupported", [_result("b", "pass"), _result("a", "unsupported")], {}, False),
    ("required-only-unsupported-on-one-backend",
     [_result("b", "pass"), _result("b", "unsupported", backend="lavapipe")], {}, False),
    ("required-skipped-by-tier-on-another-backend",  # a heavy-only job there: run does not fail it either
     [_result("b", "pass"), _result("h", "pass", "heavy", "lavapipe"), _result("b", "skip", backend="lavapipe")], {},
     True),
    ("interrupted", [_result("b", "pass")], {"interrupted": True}, False),
    ("empty", [], {}, False),
]


@pytest.mark.parametrize("results, meta, passes", [s[1:] for s in STRICT], ids=[s[0] for s in STRICT])
def test_report_strict_agrees_with_run(tmp_path: Path, results: list[Result], meta: dict, passes: bool) -> None:
    from q4gsw import report_cli

    write_results(tmp_path / "in" / "results.json", results, meta)
    code = report_cli.main([str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--strict", "--quiet",
                            "--no-step-summary"])
    assert code == (0 if passes else 1)


# ------------------------------------------------------------------------------------------------
# 4. Output locations are checked before any work; a merge never overwrites an input
# ------------------------------------------------------------------------------------------------


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder that exists but cannot be written (for root, whom permission bits do not stop: sysfs)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").write_text("")
    except OSError:
        return folder
    (folder / "probe").unlink()
    for candidate in (Path("/sys/kernel"), Path("/proc/self")):
        try:
            (candidate / "q4gsw-probe").write_text("")
        except OSError:
            return candidate
    pytest.skip("no read-only folder available to this user")


OUTPUTS = [  # (id, argv (with {file}, {under_file}, {read_only}), the option the error names)
    ("run-results-is-a-file", ["run", "--backend", "swiftshader", "--results", "{file}"], "--results"),
    ("run-results-under-a-file", ["run", "--backend", "swiftshader", "--results", "{under_file}"], "--results"),
    ("run-results-read-only", ["run", "--backend", "swiftshader", "--results", "{read_only}"], "--results"),
    ("check-results-is-a-file", ["check", "--kernel", KERNEL, "--dispatch", "1", "--backend", "swiftshader",
                                 "--results", "{file}"], "--results"),
    ("export-out-is-a-file", ["export", "--out", "{file}"], "--out"),
    ("export-out-read-only", ["export", "--out", "{read_only}"], "--out"),
    ("mutants-results-is-a-file", ["mutants", "--backend", "swiftshader", "--results", "{file}"], "--results"),
    ("bench-json-is-a-folder", ["bench", "--backend", "swiftshader", "--json", "{read_only}"], "--json"),
    ("bench-json-under-a-file", ["bench", "--backend", "swiftshader", "--json", "{under_file}"], "--json"),
    ("audit-json-under-a-file", ["audit", "--json", "{under_file}"], "--json"),
]


@pytest.mark.parametrize("argv, option", [o[1:] for o in OUTPUTS], ids=[o[0] for o in OUTPUTS])
def test_output_locations_are_checked_before_any_work(tmp_path: Path, argv: list[str], option: str) -> None:
    matrix = write_matrix(tmp_path / "matrix.toml")
    file = tmp_path / "a-file"
    file.write_text("the user's file")
    places = {"{file}": str(file), "{under_file}": str(file / "sub"), "{read_only}": str(_read_only_folder(tmp_path))}
    argv = [places.get(a, a) for a in argv]
    cache = tmp_path / "cache"
    started = time.monotonic()
    done = cli(*argv, "--matrix", str(matrix), env={"Q4GSW_CACHE": str(cache)}, timeout=120)
    assert_clean_usage_error(done, option)
    assert time.monotonic() - started < 60
    assert file.read_text() == "the user's file"
    assert not cache.exists()  # nothing provisioned or exported: no work was done


def _run_folder(folder: Path, config: str) -> Path:
    write_results(folder / "results.json", [_result(config, "pass")], {"backend": "swiftshader"})
    return folder


MERGES = [  # (id, sources, --out or None, exit code); paths relative to tmp_path, runs in a/ and tree/b/
    ("out-is-an-input-folder", ["a", "tree/b"], "a", 2),
    ("out-is-an-input-file-folder", ["a/results.json", "tree/b"], "a", 2),
    ("out-is-a-folder-found-in-a-source", ["tree", "a"], "tree/b", 2),
    ("out-is-an-input-file", ["a", "tree/b"], "a/results.json", 2),
    ("out-is-a-file", ["a", "tree/b"], "a-file", 2),
    ("merge-elsewhere", ["a", "tree/b"], "merged", 0),
    ("one-folder-in-place", ["a"], None, 0),
    ("one-folder-into-itself", ["a"], "a", 0),
]


@pytest.mark.parametrize("sources, out, code", [m[1:] for m in MERGES], ids=[m[0] for m in MERGES])
def test_report_merge_never_overwrites_an_input(tmp_path: Path, sources: list[str], out: str | None,
                                                code: int) -> None:
    from q4gsw import report_cli

    _run_folder(tmp_path / "a", "a")
    _run_folder(tmp_path / "tree" / "b", "b")
    (tmp_path / "a-file").write_text("the user's file")
    inputs_before = {p: p.read_bytes() for p in (tmp_path / "a" / "results.json", tmp_path / "tree/b/results.json",
                                                 tmp_path / "a-file")}
    argv = [str(tmp_path / s) for s in sources] + (["--out", str(tmp_path / out)] if out else [])
    assert report_cli.main([*argv, "--quiet", "--no-step-summary"]) == code
    assert {p: p.read_bytes() for p in inputs_before} == inputs_before


# ------------------------------------------------------------------------------------------------
# 5. Orphans: no child outlives the run
# ------------------------------------------------------------------------------------------------


def _descendants_named(pid: int, command: str) -> list[psutil.Process]:
    """The run's `python -m q4gsw COMMAND ...` descendants (COMMAND as an argument, not part of a path), or all of
    its q4gsw children (_child, _export, _probe, _warm, ...) for command="*"."""

    def matches(argv: list[str]) -> bool:
        at = argv.index("q4gsw") + 1 if "q4gsw" in argv[:-1] else -1
        return at > 0 and (argv[at] == command or (command == "*" and argv[at].startswith("_")))

    def argv(process: psutil.Process) -> list[str]:
        try:
            return process.cmdline()
        except psutil.Error:  # gone between listing and asking (the probe, a finished _warm): not a match
            return []

    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if matches(argv(p))]
    except psutil.Error:  # the run itself is gone
        return []


def _gone(procs: list[psutil.Process], within_s: float) -> list[psutil.Process]:
    """Those of procs still running (not zombies) after within_s."""
    deadline = time.monotonic() + within_s
    while True:
        alive = []
        for p in procs:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _kill_parent_during(tmp_path: Path, icd: dict[str, str], stage: str, busy_s: float) -> None:
    """Start a run, wait until its `stage` child (_child hung in its kernel, or _export importing torch) has been busy
    for busy_s, SIGKILL only the run's own process, and check that the child dies with it, well before its
    timeout_s. In the `_child` stage, the warm children of configs b and c (started while a runs, waiting for
    their fixtures) must die too."""
    timeout_s = 60
    configs = "abc" if stage == "_child" else "a"
    matrix = write_matrix(tmp_path / "matrix.toml", configs=configs, kernel="tests/data/hang.wgsl",
                          timeout_s=timeout_s)
    argv = [sys.executable, "-m", "q4gsw", "run", "--matrix", str(matrix), "--backend", "swiftshader", "--results",
            str(tmp_path / "r"), "--cache", str(tmp_path / "cache")]
    if stage == "_child":
        argv += ["--fixtures", str(write_fixtures(tmp_path / "fixtures", matrix, configs))]
    proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **icd}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while not children and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            children = _descendants_named(proc.pid, stage)
        assert children, f"the run never started its {stage} process"
        time.sleep(busy_s)
        named = _descendants_named(proc.pid, stage)
        assert len(named) == len(configs), [c.cmdline() for c in named]  # _child: a (hung), b and c (warm)
        children = _descendants_named(proc.pid, "*")  # all of the run's children, whatever their stage
        assert proc.poll() is None and _gone(children, 0), f"{stage} finished before the test killed its run"
        started = time.monotonic()
        proc.kill()  # SIGKILL to the parent only: its children are in their own sessions and get no signal from it
        proc.wait()
        alive = _gone(children, timeout_s)
        assert alive == [], f"orphans left running: {alive}"
        assert time.monotonic() - started < timeout_s / 2  # they died with the parent, not at their own deadline
    finally:
        for p in children:
            with contextlib.suppress(psutil.Error):
                p.kill()
        if proc.poll() is None:
            proc.kill()


def _child_job(tmp_path: Path, deadline_s: float) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a `_child` whose kernel hangs (config a, M=3), as the engine starts it."""
    from q4gsw.cases import build_selection, to_plain
    from q4gsw.run.procs import child_env
    from q4gsw.webgpu.provision import provision

    matrix = write_matrix(tmp_path / "matrix.toml", configs="a", kernel="tests/data/hang.wgsl")
    loaded = load_matrix(matrix)
    selection = build_selection(loaded, "swiftshader")
    fixture = write_fixtures(tmp_path / "fixtures", matrix, "a") / "a"
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"cases": [to_plain(c) for c in selection.cases], "fixture": str(fixture),
                               "seed": None, "out": str(tmp_path / "out.json"), "repeats": 1,
                               "deadline_s": deadline_s, "root": str(REPO)}))
    env = child_env(provision(loaded.backend("swiftshader")))
    return [sys.executable, "-m", "q4gsw", "_child", str(job)], env


def _own_deadline(tmp_path: Path, icd: dict[str, str]) -> None:
    """A `_child` whose parent (this test) never kills it stops itself at its deadline, even inside the driver."""
    command, env = _child_job(tmp_path, deadline_s=4)
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert proc.wait(timeout=60) == -signal.SIGALRM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 4 <= time.monotonic() - started < 60


def _parent_gone_before_start(tmp_path: Path, icd: dict[str, str]) -> None:
    """The parent dies while the child's interpreter is still starting (before PR_SET_PDEATHSIG): the child sees
    that its parent is no longer the run and exits at once, instead of running a hung kernel to its deadline."""
    command, env = _child_job(tmp_path, deadline_s=120)
    starter = (f"import json, subprocess, sys; from q4gsw.run.procs import child_env; "
               f"p = subprocess.Popen({command!r}, env=child_env(json.loads(sys.argv[1])), start_new_session=True, "
               f"stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)")
    done = subprocess.run([sys.executable, "-c", starter, json.dumps(env)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    try:
        orphan = psutil.Process(int(done.stdout.strip()))
    except psutil.NoSuchProcess:
        return  # already gone
    try:
        assert _gone([orphan], 30) == [], "the orphan kept running"
    finally:
        with contextlib.suppress(psutil.Error):
            orphan.kill()


ORPHANS: list[tuple[str, Callable[[Path, dict[str, str]], object]]] = [
    ("parent-sigkilled-during-a-hung-kernel", lambda t, e: _kill_parent_during(t, e, "_child", busy_s=5)),
    ("parent-sigkilled-during-an-export", lambda t, e: _kill_parent_during(t, e, "_export", busy_s=1.5)),
    ("child-stops-at-its-own-deadline", _own_deadline),
    ("parent-gone-before-the-child-started", _parent_gone_before_start),
]


@pytest.mark.e2e
@pytest.mark.parametrize("scenario", [o[1] for o in ORPHANS], ids=[o[0] for o in ORPHANS])
def test_no_q4gsw_process_outlives_its_run(tmp_path: Path, icd: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                           scenario: Callable[[Path, dict[str, str]], object]) -> None:
    for key, value in icd.items():  # provision() in this process finds the ICD too
        monkeypatch.setenv(key, value)
    scenario(tmp_path, icd)


# ------------------------------------------------------------------------------------------------
# 6. Races and caches
# ------------------------------------------------------------------------------------------------

CACHES = [  # (id, (Q4GSW_CACHE, --cache) with {file} / {read_only} / {tmp}, use --fixtures, ICD given, message)
    ("cache-env-is-a-file", ("{file}", None), False, True, "{file}/fixtures is not a folder ({file} is a file)"),
    ("cache-option-is-a-file", ("{tmp}/c", "{file}"), False, True, "the q4gsw cache {file} is not a folder"),
    ("cache-under-a-file", ("{file}/sub", None), False, True, "is not a folder ({file} is a file)"),
    ("cache-read-only", ("{tmp}/c", "{read_only}"), False, True, "the q4gsw cache {read_only} is not writable"),
    ("swiftshader-cache-is-a-file", ("{file}", None), True, False,
     "backend 'swiftshader' unavailable: the q4gsw cache {file} is not a folder"),
]


@pytest.mark.parametrize("caches, with_fixtures, with_icd, says", [c[1:] for c in CACHES], ids=[c[0] for c in CACHES])
def test_an_unusable_cache_fails_every_selected_config_and_keeps_the_results(
        tmp_path: Path, caches: tuple[str, str | None], with_fixtures: bool, with_icd: bool, says: str) -> None:
    matrix = write_matrix(tmp_path / "matrix.toml", configs="abh")
    file = tmp_path / "a-file"
    file.write_text("the user's file")
    places = {"{file}": str(file), "{tmp}": str(tmp_path)}
    if "{read_only}" in str(caches):
        places["{read_only}"] = str(_read_only_folder(tmp_path))

    def fill(text: str) -> str:
        for key, value in places.items():
            text = text.replace(key, value)
        return text

    env_cache, option_cache = caches
    # An ICD that would fail if it were used: these runs stop before provisioning. '' is no ICD (provision it).
    env = {"Q4GSW_CACHE": fill(env_cache),
           "Q4GSW_SWIFTSHADER_ICD": str(tmp_path / "never-read-icd.json") if with_icd else ""}
    argv = ["run", "--matrix", str(matrix), "--backend", "swiftshader", "--results", str(tmp_path / "r")]
    argv += ["--cache", fill(option_cache)] if option_cache else []
    argv += ["--fixtures", str(write_fixtures(tmp_path / "fixtures", matrix, "ab"))] if with_fixtures else []
    done = cli(*argv, env=env, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    results = results_of(tmp_path / "r")
    messages = {r["message"] for c in "ab" for r in results[c]}
    assert len(messages) == 1, messages  # one clear message, the same for every selected config
    assert fill(says) in messages.pop()
    assert all(r["status"] == "fail" for c in "ab" for r in results[c])
    assert [r["status"] for r in results["h"]] == ["skip"]  # configs not selected are still reported as skipped
    assert file.read_text() == "the user's file"
    # export writes into the cache: there, an unusable one is a usage error before any work
    cache_option = ["--cache", fill(option_cache)] if option_cache else []
    assert_clean_usage_error(cli("export", "--matrix", str(matrix), "--config", "b", *cache_option, env=env,
                                 timeout=120), "Q4GSW_CACHE / --cache")


@pytest.mark.e2e
def test_two_runs_on_a_fresh_cache_started_together_both_succeed(tmp_path: Path) -> None:
    """Both provision SwiftShader (download + unpack) and export the fixture into the same fresh cache: the file
    locks make the second wait and take the first one's work."""
    matrix = write_matrix(tmp_path / "matrix.toml", configs="b")
    cache = tmp_path / "fresh-cache"
    env = {k: v for k, v in os.environ.items() if k not in ("Q4GSW_SWIFTSHADER_ICD", "VK_ICD_FILENAMES")}
    env["Q4GSW_CACHE"] = str(cache)
    procs = [subprocess.Popen([sys.executable, "-m", "q4gsw", "run", "--matrix", str(matrix), "--backend",
                               "swiftshader", "--results", str(tmp_path / f"r{i}")], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    if "apt-get download chromium-common` failed" in "".join(outputs) and not os.environ.get("CI"):
        pytest.skip("SwiftShader cannot be downloaded here")
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum("provisioning SwiftShader" in out for out in outputs) == 1, outputs  # the second waited and reused
    assert sum("export b: quantize" in out for out in outputs) == 1, outputs
    for i in range(2):
        assert [r["status"] for r in results_of(tmp_path / f"r{i}")["b"]] == ["pass"]
    leftovers = [p.name for p in (cache / "swiftshader").iterdir() if p.name.startswith(".download-")]
    assert leftovers == []


# ------------------------------------------------------------------------------------------------
# 7. validate rejects what can never run
# ------------------------------------------------------------------------------------------------

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
    done = cli("validate", "--matrix", str(matrix), timeout=60)
    if key is None:
        assert done.returncode == 0 and "ok" in done.stdout, done.stderr
        return
    assert_clean_usage_error(done, f"key '{key}'", says)
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_expression_that_fails_for_a_shape_is_a_usage_error_in_run(tmp_path: Path) -> None:
    """`when` is evaluated while selecting: an expression that raises for a config's shape is exit 2, naming the
    kernel and the key, not a traceback."""
    matrix = write_matrix(tmp_path / "matrix.toml", when="N / (M - 1) > 1")
    done = cli("run", "--matrix", str(matrix), "--backend", "swiftshader", "--results", str(tmp_path / "r"),
               env={"Q4GSW_CACHE": str(tmp_path / "cache")}, timeout=60)
    assert_clean_usage_error(done, "[kernel.good] with config 'b'", "key 'when'", "ZeroDivisionError")
    assert not (tmp_path / "cache").exists()
