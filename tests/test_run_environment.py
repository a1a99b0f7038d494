"""What a run meets around it (issue #22), offline: an export process killed by a signal is said to be killed (not
the torch warning it printed last); a read-only cache that holds every fixture runs, and loading its fixtures
writes nothing (no lock file); the job folders of the children live where a later run removes them once their run
is gone (a SIGKILLed run cannot), and nothing q4gsw did not create is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import MATRIX, random_packed, write_fixture, write_matrix

from q4gsw import paths
from q4gsw.cases import build_selection
from q4gsw.export import fixtures
from q4gsw.matrix.load import Config, load_matrix
from q4gsw.run import children, exporter
from q4gsw.run.exporter import Exporter, FixtureSource
from q4gsw.run.options import RunOptions
from q4gsw.run.stages import RunState, check_cache

# ------------------------------------------------------------------------------------------------
# A killed export process
# ------------------------------------------------------------------------------------------------

KILLED_AFTER_A_WARNING = ("import os, signal, sys\n"
                          "sys.stderr.write('UserWarning: torch.utils._pytree is deprecated\\n'); sys.stderr.flush()\n"
                          "os.kill(os.getpid(), signal.SIGKILL)\n")


def test_an_export_process_killed_by_a_signal_says_so_before_its_last_output(tmp_path, monkeypatch):
    config = load_matrix(MATRIX).config("q_proj")
    real_popen = subprocess.Popen

    def popen(command, **kwargs):  # the export process, replaced by one that warns and is then killed
        return real_popen([sys.executable, "-c", KILLED_AFTER_A_WARNING], **kwargs)

    monkeypatch.setattr(exporter.subprocess, "Popen", popen)
    process = Exporter(FixtureSource(None, tmp_path / "cache", MATRIX), [config])
    try:
        path, message, _ = process.wait_for(config)
    finally:
        process.close()
    assert path is None
    assert message.startswith("export of 'q_proj' failed: export process killed by SIGKILL"), message
    assert message.index("SIGKILL") < message.index("UserWarning: torch.utils._pytree is deprecated")


def test_why_an_export_process_ended():
    assert exporter.ended_because("a", -signal.SIGSEGV, "tail") == \
        "export of 'a' failed: export process crashed with SIGSEGV; its last output: tail"
    assert exporter.ended_because("a", 3, "tail") == "export of 'a' failed: export process exited with status 3: tail"
    assert exporter.ended_because("a", 0, "tail") == "export of 'a' failed: tail"


# ------------------------------------------------------------------------------------------------
# A read-only cache holding every fixture
# ------------------------------------------------------------------------------------------------


def cached_fixtures(tmp_path: Path, names: str) -> tuple[Path, list[Config]]:
    """A cache holding the (synthetic) fixtures of the named configs of a small matrix, under their cache names."""
    matrix = load_matrix(write_matrix(tmp_path / "matrix.toml", configs="ab"))
    cache = tmp_path / "cache"
    configs = [matrix.config(name) for name in "ab"]
    for config in configs:
        if config.name in names:
            written = write_fixture(tmp_path / "written", config, random_packed(
                config.dims["N"], config.dims["K"], config.dims["group_size"], np.random.default_rng(6)))
            cache.mkdir(exist_ok=True)
            shutil.move(written, fixtures.fixture_dir(cache, config))
    return cache, configs


@contextlib.contextmanager
def read_only(folder: Path):
    """The folder cannot be written: its permission bits, and (for root, whom they do not stop) every write
    q4gsw makes there refused the way a read-only mount refuses it."""
    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    folder.chmod(0o555)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fixtures, "FileLock", refuse)
        patch.setattr("q4gsw.run.stages.unusable_folder", lambda path, what: f"the q4gsw {what} {path} is not "
                      "writable (Read-only file system)" if Path(path) == folder else "")
        try:
            yield folder
        finally:
            folder.chmod(0o755)


def cache_stage(cache: Path, configs: list[Config], tmp_path: Path) -> RunState:
    selection = build_selection(load_matrix(tmp_path / "matrix.toml"), "swiftshader", names=[c.name for c in configs])
    options = RunOptions(fixtures=FixtureSource(fixtures=None, cache=cache, matrix_path=tmp_path / "matrix.toml"))
    recorded = []
    with contextlib.ExitStack() as stack:
        state = RunState(selection, options, tmp_path, recorded.append, stack)
        check_cache(state)
    return state


def test_a_read_only_cache_holding_every_fixture_runs(tmp_path):
    cache, configs = cached_fixtures(tmp_path, "ab")
    before = sorted(p.name for p in cache.iterdir())
    with read_only(cache):
        assert cache_stage(cache, configs, tmp_path).stopped == ""
        for config in configs:  # what the export process does for each config: verify, write nothing
            assert fixtures.ensure_fixture(config, cache).path == fixtures.fixture_dir(cache, config)
    assert sorted(p.name for p in cache.iterdir()) == before, "no lock file, nothing written"


def test_a_read_only_cache_missing_a_fixture_still_stops_the_run(tmp_path):
    cache, configs = cached_fixtures(tmp_path, "a")
    with read_only(cache):
        state = cache_stage(cache, configs, tmp_path)
    assert "is not writable" in state.stopped and "nothing was exported or run" in state.stopped


# ------------------------------------------------------------------------------------------------
# Job folders
# ------------------------------------------------------------------------------------------------


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_the_job_folder_of_a_sigkilled_run_is_removed_by_the_next_run(tmp_path):
    killed = subprocess.run([sys.executable, "-c", "import os, signal, sys\nfrom q4gsw import paths\n"
                             f"print(paths.job_folder({str(tmp_path)!r}), flush=True)\n"
                             "os.kill(os.getpid(), signal.SIGKILL)\n"], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    left = Path(killed.stdout.strip())
    assert left.is_dir() and left.parent == tmp_path and left.name.startswith(paths.JOB_PREFIX)
    mine = paths.job_folder(tmp_path)  # the next run's first job folder: the dead run's is gone
    assert not left.exists() and mine.is_dir() and mine.name.startswith(f"{paths.JOB_PREFIX}{os.getpid()}-")


def test_only_job_folders_of_runs_that_are_gone_are_removed(tmp_path):
    dead = dead_pid()
    gone = paths.mark_owned(tmp_path / f"{paths.JOB_PREFIX}{dead}-abc", "a job")
    running = paths.mark_owned(tmp_path / f"{paths.JOB_PREFIX}{os.getpid()}-abc", "a job")  # a run still going
    users = tmp_path / f"{paths.JOB_PREFIX}{dead}-users"  # named like ours, but without q4gsw's marker
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    a_file = tmp_path / f"{paths.JOB_PREFIX}{dead}-file"
    a_file.write_text("mine")
    link = tmp_path / f"{paths.JOB_PREFIX}{dead}-link"
    link.symlink_to(gone.parent / "elsewhere")
    (gone.parent / "elsewhere").mkdir()
    ((gone.parent / "elsewhere") / paths.OWNED_MARKER).write_text("")
    assert paths.remove_stale_job_folders(tmp_path) == [gone]
    assert not gone.exists() and running.is_dir() and (users / "notes.txt").read_text() == "mine"
    assert a_file.read_text() == "mine" and link.is_symlink() and (tmp_path / "elsewhere").is_dir()


def test_a_config_childs_job_folder_is_one_a_later_run_can_clean(tmp_path, monkeypatch):
    def start_child(command, env, err, stdin=None):  # no GPU child: something that waits like one
        return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=stdin,
                                start_new_session=True)

    monkeypatch.setattr(children, "start_child", start_child)
    selection = build_selection(load_matrix(MATRIX), "swiftshader", names=["q_proj"])
    options = RunOptions(fixtures=FixtureSource(None, tmp_path / "cache", MATRIX))
    child = children.ConfigChild(selection.configs[0], selection, {}, options, tmp_path)
    folder = child.folder
    assert folder.name.startswith(f"{paths.JOB_PREFIX}{os.getpid()}-") and (folder / "job.json").is_file()
    assert (folder / paths.OWNED_MARKER).is_file()
    child.cancel()
    assert not folder.exists()


def test_swiftshader_unpacked_in_a_read_only_cache_is_used_without_writing(tmp_path, monkeypatch):
    from q4gsw.webgpu import provision

    target = tmp_path / "cache" / "swiftshader"
    target.mkdir(parents=True)
    (target / "libvk_swiftshader.so").write_bytes(b"")
    icd = target / "vk_swiftshader_icd.json"
    icd.write_text(f'{{"ICD": {{"library_path": "{target / "libvk_swiftshader.so"}"}}}}')
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(provision.SWIFTSHADER_ICD_ENV, raising=False)
    monkeypatch.setattr(provision, "ensure_vulkan_loader", lambda: None)

    def read_only(path, what):
        raise paths.CacheError(f"the q4gsw {what} {path} is not writable (Read-only file system)")

    monkeypatch.setattr(provision, "usable_directory", read_only)
    monkeypatch.setattr(provision, "FileLock", read_only)
    assert provision.provision_swiftshader() == {"VK_ICD_FILENAMES": str(icd), "VK_DRIVER_FILES": str(icd)}
    assert sorted(p.name for p in target.iterdir()) == ["libvk_swiftshader.so", "vk_swiftshader_icd.json"]


def test_dawns_runtime_folder_is_a_job_folder(tmp_path):
    """Dawn needs XDG_RUNTIME_DIR; the folder made for it was a bare mkdtemp that every Dawn child left behind.
    (In a process of its own: a process holds only one WebGPU implementation.)"""
    pytest.importorskip("wgpudawn")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    done = subprocess.run([sys.executable, "-c", "import os\nfrom q4gsw.webgpu.adapter import load_wgpu\n"
                           "load_wgpu('dawn')\nprint(os.environ['XDG_RUNTIME_DIR'])"], capture_output=True, text=True,
                          env={**env, "TMPDIR": str(tmp_path)}, timeout=120)
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip().splitlines()[-1])
    assert folder.parent == tmp_path and folder.name.startswith(paths.JOB_PREFIX)
    assert (folder / paths.OWNED_MARKER).is_file()
    assert paths.remove_stale_job_folders(tmp_path) == [folder]  # its process is gone: a later run removes it
