"""Where q4gsw keeps its things (q4gsw.paths): the cache root, and folders checked before any work; the one delete
(remove_owned, used by `export --out`) removes only what q4gsw wrote; every command checks its output locations
and caches before any work (issue 14: hostile locations give exit 2, or a FAIL of each selected config with the
reason, never a traceback, and never remove a file q4gsw did not write)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import cli_in_process
from helpers import (
    GOOD_KERNEL,
    assert_clean_usage_error,
    results_of,
    snapshot,
    write_fixtures,
    write_matrix,
)

from q4gsw import paths
from q4gsw.export import fixtures
from q4gsw.paths import OWNED_MARKER, CacheError, NotOurs, usable_directory
from q4gsw.paths import remove_owned as remove_owned_in


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.cache_root() == tmp_path / "home" / ".cache" / "q4gsw"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_root() == tmp_path / "xdg" / "q4gsw"
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "mine"))
    assert paths.cache_root() == tmp_path / "mine"
    assert paths.fixture_cache() == tmp_path / "mine" / "fixtures"


def test_usable_directory_creates_missing_folders(tmp_path: Path):
    target = tmp_path / "a" / "b" / "cache"
    assert usable_directory(target, "cache") == target
    assert target.is_dir() and list(target.iterdir()) == []  # the write test leaves nothing behind


def test_a_file_is_not_a_folder(tmp_path: Path):
    file = tmp_path / "cache"
    file.write_text("not a folder")
    with pytest.raises(CacheError, match="is not a folder") as raised:
        usable_directory(file, "cache")
    assert str(file) in str(raised.value) and "Q4GSW_CACHE (or --cache)" in str(raised.value)
    assert file.read_text() == "not a folder"  # untouched
    with pytest.raises(CacheError, match=r"is a file.*choose a writable folder"):
        usable_directory(file / "below", "results folder")


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A folder nothing can be created in: a chmod 0500 folder, or (root ignores permission bits) /sys."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        if not Path("/sys").is_dir():
            pytest.skip("running as root without /sys: no folder is read-only")
        yield Path("/sys")
        return
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    yield folder
    folder.chmod(0o700)


def test_a_read_only_folder_is_not_usable(read_only_folder: Path):
    with pytest.raises(CacheError, match="is not writable") as raised:
        usable_directory(read_only_folder, "cache")
    assert "point Q4GSW_CACHE (or --cache) at a writable folder" in str(raised.value)


def test_a_folder_that_cannot_be_created_is_not_usable(read_only_folder: Path):
    with pytest.raises(CacheError, match="cannot create the q4gsw results folder") as raised:
        usable_directory(read_only_folder / "results", "results folder")
    assert "choose a writable folder" in str(raised.value)


def test_the_one_folder_check_returns_why_a_folder_cannot_be_used(tmp_path):
    from q4gsw.paths import unusable_folder, unusable_output_file

    assert unusable_folder(tmp_path / "new" / "results", "results folder") == ""
    assert (tmp_path / "new" / "results").is_dir()  # created
    a_file = tmp_path / "a-file"
    a_file.write_text("the user's")
    assert unusable_folder(a_file, "results folder") == \
        f"the q4gsw results folder {a_file} is not a folder: choose a writable folder"
    assert "is a folder, not a file" in unusable_output_file(tmp_path, "bench JSON")


# ------------------------------------------------------------------------------------------------
# The one delete: only what q4gsw wrote (q4gsw.paths.remove_owned, `export --out`)
# ------------------------------------------------------------------------------------------------

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
    done = cli_in_process("export", "--matrix", str(matrix), "--config", "b", "--out", str(out), "--cache",
                          str(cache), env={"Q4GSW_CACHE": str(cache)})
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
        fixtures.remove_owned(path)
        assert not path.exists()
        return
    with pytest.raises(NotOurs):
        fixtures.remove_owned(path)
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
# Output locations and caches are checked before any work
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
    ("check-results-is-a-file", ["check", "--kernel", GOOD_KERNEL, "--dispatch", "1", "--backend", "swiftshader",
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
    done = cli_in_process(*argv, "--matrix", str(matrix), env={"Q4GSW_CACHE": str(cache)})
    assert_clean_usage_error(done, option)
    assert time.monotonic() - started < 60
    assert file.read_text() == "the user's file"
    assert not cache.exists()  # nothing provisioned or exported: no work was done


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
    done = cli_in_process(*argv, env=env)
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
    assert_clean_usage_error(cli_in_process("export", "--matrix", str(matrix), "--config", "b", *cache_option,
                                            env=env), "Q4GSW_CACHE / --cache")
