"""Where q4gsw keeps its things (q4gsw.paths): the cache root, and folders checked before any work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from q4gsw import paths
from q4gsw.paths import CacheError, usable_directory


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
