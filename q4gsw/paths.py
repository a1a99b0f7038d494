"""Where q4gsw keeps things it owns: the cache root, defined once."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "Q4GSW_CACHE"


class CacheError(RuntimeError):
    """The cache location cannot be used; the message names it and says how to fix it."""


def cache_root() -> Path:
    """$Q4GSW_CACHE, else $XDG_CACHE_HOME/q4gsw, else ~/.cache/q4gsw."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "q4gsw"


def fixture_cache() -> Path:
    return cache_root() / "fixtures"


def usable_directory(path: Path, what: str) -> Path:
    """Create `path` if needed and check it is a writable directory, or raise CacheError saying how to fix it."""
    hint = f"point {CACHE_ENV} (or --cache) at a writable folder" if what == "cache" else "choose a writable folder"
    if path.exists() and not path.is_dir():
        raise CacheError(f"the q4gsw {what} {path} is a file, not a folder: {hint}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the q4gsw {what} {path} ({exc.strerror}): {hint}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise CacheError(f"the q4gsw {what} {path} is not writable: {hint}")
    return path
