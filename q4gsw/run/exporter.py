"""Where a run's fixtures come from: a folder given with --fixtures (verified), or the cache, where misses are
exported by one long-lived export process (`_export`: torch/executorch imported once), started before the
backend is probed so that exporting overlaps provisioning, probing and the GPU work of earlier configs."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from q4gsw.console import last_lines as _last_lines
from q4gsw.console import say
from q4gsw.matrix.load import Config
from q4gsw.run.procs import VERBOSE_ENV, child_env, kill_child


@dataclass(frozen=True)
class FixtureSource:
    """Where a run's fixtures come from: a folder given with --fixtures, else the cache (exporting misses)."""

    fixtures: Path | None
    cache: Path
    matrix_path: Path


FixtureLookup = Callable[[Config], tuple[Path | None, str, float]]  # (path or None, failure, seconds waited)


class Exporter:
    """One `python -m q4gsw _export` process for every config a run needs, started before the backend is probed.

    It prints `READY name path` or `FAILED name message` lines; the parent takes them in order and
    runs each config's GPU work as soon as its fixture is ready. A config whose export exceeds its
    timeout_s kills the process; the next config starts a new one.
    """

    def __init__(self, source: FixtureSource, configs: list[Config]) -> None:
        self.source = source
        self.pending = list(configs)
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (lives as long as the exporter)

    def start(self) -> None:
        names = [c.name for c in self.pending]
        command = [sys.executable, "-m", "q4gsw", "_export", "--matrix", str(self.source.matrix_path),
                   "--cache", str(self.source.cache), *[a for n in names for a in ("--config", n)]]
        verbose = os.environ.get(VERBOSE_ENV) == "1"
        self.proc = subprocess.Popen(command, env=child_env({}), stdout=subprocess.PIPE, text=True,
                                     stderr=None if verbose else self.log, start_new_session=True)
        self.lines = queue.Queue()
        stream = self.proc.stdout
        assert stream is not None

        def pump() -> None:
            for line in stream:
                if line.startswith(("READY ", "FAILED ")):
                    self.lines.put(line)
                else:
                    print(line, end="", flush=True)  # the exporter's progress, in the order it happens
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, config: Config) -> tuple[Path | None, str, float]:
        """(fixture path or None, failure message, seconds spent waiting)."""
        if self.proc is None or (self.proc.poll() is not None and self.lines.empty()):
            self.pending = self.pending[self.pending.index(config):] if config in self.pending else [config]
            self.start()
        started = time.perf_counter()
        while True:
            left = config.timeout_s - (time.perf_counter() - started)
            try:
                line = self.lines.get(timeout=max(0.1, left))
            except queue.Empty:
                self.stop()
                return None, (f"export of '{config.name}' timed out after {config.timeout_s:g} s (timeout_s in "
                              "matrix.toml) and was killed"), time.perf_counter() - started
            if line is None:
                returncode = self.proc.wait() if self.proc else 0
                self.log.seek(0)
                tail = _last_lines(self.log.read()[-8000:].decode(errors="replace"))
                self.proc = None
                return None, ended_because(config.name, returncode, tail), time.perf_counter() - started
            kind, name, rest = line.rstrip("\n").split(" ", 2)
            if name != config.name:
                continue
            if kind == "READY":
                return Path(rest), "", time.perf_counter() - started
            return None, rest, time.perf_counter() - started

    def stop(self) -> None:
        if self.proc is not None:
            kill_child(self.proc)
            self.proc = None

    def close(self) -> None:
        self.stop()
        self.log.close()


def ended_because(name: str, returncode: int, tail: str) -> str:
    """Why the export process ended before `name`'s fixture: a signal first (a kill, the OOM killer, a crash), then
    its log's last lines, which then hold whatever it printed before (often a harmless torch warning)."""
    if returncode < 0:
        try:
            signame = signal.Signals(-returncode).name
        except ValueError:
            signame = f"signal {-returncode}"
        how = "killed by" if -returncode in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT) else "crashed with"
        return f"export of '{name}' failed: export process {how} {signame}; its last output: {tail}"
    if returncode > 0:
        return f"export of '{name}' failed: export process exited with status {returncode}: {tail}"
    return f"export of '{name}' failed: {tail}"


def from_folder(source: FixtureSource) -> FixtureLookup:
    """Fixtures from `--fixtures DIR`, each verified against its manifest before any GPU work."""
    from q4gsw.export.fixtures import FixtureError, find_fixture, verify_fixture
    from q4gsw.export.pte import DelegateLayoutError, UnreadablePte

    assert source.fixtures is not None
    given = source.fixtures

    def lookup(config: Config) -> tuple[Path | None, str, float]:
        try:
            path = find_fixture(given, config, source.cache)
            fixture = verify_fixture(path, config)
        except (FixtureError, OSError, ValueError, DelegateLayoutError, UnreadablePte) as exc:
            return None, (f"fixture for '{config.name}' rejected: {exc}. Re-export it with "
                          f"`python -m q4gsw export --out {given} --config {config.name}`"), 0.0
        except Exception as exc:  # a user's folder is untrusted input: whatever it does fails this config only
            return None, f"fixture for '{config.name}' rejected: {type(exc).__name__}: {exc}", 0.0
        source_files = fixture.manifest.get("source")
        if isinstance(source_files, dict) and source_files.get("executorch_pte") and \
                not source_files.get("executorch_golden"):
            say(f"note: {config.name}: no ExecuTorch golden (.golden.bin) beside {source_files['executorch_pte']}: "
                "its goldens are computed in fp64 by q4gsw from the .pte's weights")
        return path, "", 0.0

    return lookup


@contextlib.contextmanager
def fixture_provider(source: FixtureSource, configs: list[Config]) -> Iterator[FixtureLookup]:
    """The run's fixture lookup; with the cache, the export process runs (from now on) until the context ends."""
    if source.fixtures is not None:
        yield from_folder(source)
        return
    exporter = Exporter(source, configs)
    if configs:
        exporter.start()  # now, not at the first lookup: exporting overlaps provisioning and probing
    try:
        yield exporter.wait_for
    finally:
        exporter.close()


def exported_in_process(source: FixtureSource) -> FixtureLookup:
    """`run --in-process`: the fixtures from the folder, or exported here by the function `_export` calls."""
    if source.fixtures is not None:
        return from_folder(source)

    def lookup(config: Config) -> tuple[Path | None, str, float]:
        from q4gsw.export.fixtures import ensure_fixture, quiet_library_output
        from q4gsw.run.workers import export_failure

        quiet_library_output()
        started = time.perf_counter()
        try:
            fixture = ensure_fixture(config, source.cache, lambda message: say(message, "    "))
        except Exception as exc:  # this config fails with the reason; the next one is still exported
            return None, export_failure(config.name, exc), time.perf_counter() - started
        return fixture.path, "", time.perf_counter() - started

    return lookup
