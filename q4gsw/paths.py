"""Where q4gsw keeps things it owns (the cache root, defined once), and the only ways it deletes: a folder it
wrote (remove_owned), or the files it wrote, by name and kind, in a folder it writes into (remove_owned_files)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "Q4GSW_CACHE"
# Written first into every folder q4gsw builds (a fixture being written, SwiftShader's unpacked files); a folder
# holding it, or a complete q4gsw fixture, is the only thing q4gsw ever deletes.
OWNED_MARKER = ".q4gsw-partial"


class CacheError(RuntimeError):
    """The cache location cannot be used; the message names it and says how to fix it."""


class NotOurs(RuntimeError):
    """A path q4gsw was asked to replace or delete holds something q4gsw did not write."""


def cache_root() -> Path:
    """$Q4GSW_CACHE, else $XDG_CACHE_HOME/q4gsw, else ~/.cache/q4gsw."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "q4gsw"


def fixture_cache() -> Path:
    return cache_root() / "fixtures"


def usable_directory(path: Path, what: str) -> Path:
    """Create `path` if needed and check it is a folder q4gsw can write into (a file is really created and
    removed: permission bits say nothing about root, read-only mounts or full disks), or raise CacheError
    saying how to fix it."""
    hint = f"point {CACHE_ENV} (or --cache) at a writable folder" if what == "cache" else "choose a writable folder"
    for folder in (path, *path.parents):  # the first that exists must be a folder
        if folder.is_symlink() and not folder.exists():
            raise CacheError(f"the q4gsw {what} {path}: {folder} is a broken symbolic link: {hint}")
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == path else f" ({folder} is a file)"
                raise CacheError(f"the q4gsw {what} {path} is not a folder{where}: {hint}")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the q4gsw {what} {path} ({exc.strerror or exc}): {hint}") from exc
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".q4gsw-write-test-"):
            pass
    except OSError as exc:
        raise CacheError(f"the q4gsw {what} {path} is not writable ({exc.strerror or exc}): {hint}") from exc
    return path


def unusable_folder(path: Path, what: str) -> str:
    """The one usable-folder check of every command: '' when `path` is a folder q4gsw can write (created if
    needed), else why not and how to fix it (each command decides what that means: exit 2, or a failed config)."""
    try:
        usable_directory(path, what)
    except CacheError as exc:
        return str(exc)
    return ""


def unusable_output_file(path: Path, what: str) -> str:
    """As unusable_folder, for a file to be written (its folder usable, the path not a folder)."""
    try:
        usable_output_file(path, what)
    except CacheError as exc:
        return str(exc)
    return ""


def usable_output_file(path: Path, what: str) -> Path:
    """Before any work: `path` can be written as a file (not a folder; its folder usable), or CacheError."""
    if path.is_dir():
        raise CacheError(f"the {what} {path} is a folder, not a file: choose a file path")
    usable_directory(path.parent, f"folder for the {what}")
    return path


def mark_owned(folder: Path, what: str) -> Path:
    """Create `folder` (it must not exist) with OWNED_MARKER in it, so that remove_owned may delete it later."""
    folder.mkdir(parents=True)
    (folder / OWNED_MARKER).write_text(f"{what}, written by q4gsw; safe to delete\n")
    return folder


def _refuse_unless_ours(path: Path, parent: Path, owned: Callable[[Path], bool]) -> None:
    """NotOurs unless `path` is a real folder directly inside `parent` that holds OWNED_MARKER or passes `owned`."""
    fix = "move it away or choose another location (q4gsw never deletes what it did not write)"
    if path.name in ("", ".", "..") or path.is_symlink() or path.parent.resolve() != parent.resolve():
        raise NotOurs(f"{path} is not a folder directly inside {parent}: {fix}")
    if not path.is_dir() or not ((path / OWNED_MARKER).is_file() or owned(path)):
        raise NotOurs(f"{path} exists and is not something q4gsw wrote: {fix}")


def remove_owned(path: Path, parent: Path, owned: Callable[[Path], bool] = lambda p: False) -> None:
    """The only delete of a folder in q4gsw: a folder q4gsw wrote, directly inside `parent`, never anything else.

    Refuses (NotOurs) a symbolic link (its target may be the user's), anything that is not a folder, a
    folder outside `parent` (after resolving), and a folder that holds neither OWNED_MARKER nor passes
    `owned` (e.g. a complete q4gsw fixture, every file of it listed in its manifest). Nothing outside
    the folder is touched: shutil.rmtree does not follow the links inside it."""
    if not path.exists() and not path.is_symlink():
        return
    _refuse_unless_ours(path, parent, owned)
    shutil.rmtree(path)


# A child's job files live in <tmp>/q4gsw-job-<pid of the run>-<random>/, marked as q4gsw's: a run killed with
# SIGKILL cannot remove its own, so every run removes those whose run is gone (by name, marker and owner).
JOB_PREFIX = "q4gsw-job-"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale_job_folders(parent: Path | None = None) -> list[Path]:
    """Remove the job folders of runs that no longer run (the pid in the name is dead); returns them. Only
    folders named like ours, owned by this user and holding OWNED_MARKER are touched (remove_owned)."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for path in parent.glob(f"{JOB_PREFIX}*"):
        pid = path.name[len(JOB_PREFIX):].split("-", 1)[0]
        with contextlib.suppress(OSError, NotOurs):
            if pid.isdigit() and not _running(int(pid)) and path.lstat().st_uid == os.getuid():
                remove_owned(path, parent)
                removed.append(path)
    return removed


def job_folder(parent: Path | None = None) -> Path:
    """A new folder for one child's job files (removed with remove_owned(folder, folder.parent) when done)."""
    parent = Path(parent or tempfile.gettempdir())
    remove_stale_job_folders(parent)
    folder = Path(tempfile.mkdtemp(prefix=f"{JOB_PREFIX}{os.getpid()}-", dir=parent))
    (folder / OWNED_MARKER).write_text("a q4gsw child's job files, written by q4gsw; safe to delete when the run "
                                       "whose pid the folder's name holds has ended\n")
    return folder


def is_plain_file(path: Path) -> bool:
    """A regular file, not a link to one: the only kind of thing q4gsw writes into a folder it shares."""
    return path.is_file() and not path.is_symlink()


def remove_owned_files(folder: Path, parent: Path, ours: Callable[[str], bool],
                       owned: Callable[[Path], bool] = lambda p: False) -> None:
    """The only delete of files in q4gsw: in a folder q4gsw writes into (checked as remove_owned checks a folder),
    the plain files whose names `ours` accepts. The folder itself stays, and so does everything else in it: a
    user's folder (or link) that happens to be named like one of q4gsw's files is never deleted with its
    contents (issue 22: a user's `plots/error-hist-x.png/` folder was deleted by a name match)."""
    if not folder.exists() and not folder.is_symlink():
        return
    _refuse_unless_ours(folder, parent, owned)
    for entry in folder.iterdir():
        if ours(entry.name) and is_plain_file(entry):
            entry.unlink()
