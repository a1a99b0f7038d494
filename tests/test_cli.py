from pathlib import Path

import pytest
from conftest import MATRIX, cli_in_process


def test_list_shows_configs_tiers_and_kernels():
    proc = cli_in_process("list")
    assert proc.returncode == 0, proc.stderr
    for name in ("q_proj", "kv_proj", "gate_proj", "down_proj", "lm_head", "q_proj_4k", "kv_proj_8k"):
        assert name in proc.stdout
    # Piped (no terminal), the table fits 100 columns: still every config's whole name, and every backend.
    from q4gsw.matrix.load import load_matrix

    matrix = load_matrix(MATRIX)
    for config in matrix.configs:
        assert f"│ {config.name} " in proc.stdout, config.name
    assert all(backend in proc.stdout for backend in matrix.backends)
    assert "heavy" in proc.stdout and "required" in proc.stdout and "gemv" in proc.stdout


def test_validate_ok():
    proc = cli_in_process("validate", "--matrix", str(MATRIX))
    assert proc.returncode == 0 and "ok" in proc.stdout


def test_unknown_backend_is_a_usage_error_with_suggestion(tiny_matrix: Path, tmp_path: Path):
    proc = cli_in_process("run", "--matrix", str(tiny_matrix), "--backend", "swiftshadr", "--results", str(tmp_path))
    assert proc.returncode == 2
    assert "did you mean 'swiftshader'" in proc.stderr and "key 'backend'" in proc.stderr
    assert not (tmp_path / "results.json").exists()


def test_check_rejects_bad_override_and_dispatch(tiny_matrix: Path, tmp_path: Path):
    kernel = Path(__file__).resolve().parent.parent / "q4gsw" / "ops" / "linear_q4gsw" / "kernels" / "q4gsw_gemv.wgsl"
    bad_override = cli_in_process("check", "--matrix", str(tiny_matrix), "--kernel", str(kernel), "--dispatch", "N",
                                  "--override", "wg_size", "--backend", "swiftshader", "--results", str(tmp_path))
    assert bad_override.returncode == 2 and bad_override.stderr == (
        "error: command line: check: key '--override': 'wg_size' is not NAME=VALUE — write e.g. --override "
        "wg_size=64\n")
    bad_dispatch = cli_in_process("check", "--matrix", str(tiny_matrix), "--kernel", str(kernel), "--dispatch",
                                  "ceil(N/", "--backend", "swiftshader", "--results", str(tmp_path))
    assert bad_dispatch.returncode == 2 and "--dispatch" in bad_dispatch.stderr
    missing = cli_in_process("check", "--matrix", str(tiny_matrix), "--kernel", str(tmp_path / "nope.wgsl"),
                             "--dispatch", "N", "--backend", "swiftshader", "--results", str(tmp_path))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_an_unknown_prewarm_mechanism_is_a_usage_error_before_any_work(tiny_matrix: Path, tmp_path: Path):
    done = cli_in_process("run", "--matrix", str(tiny_matrix), "--backend", "swiftshader", "--results",
                          str(tmp_path / "r"), env={"Q4GSW_PREWARM": "spares,warp"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: Q4GSW_PREWARM='spares,warp': unknown mechanism 'warp'; use 1 (on), 0 (off) or a comma list of spares"]
    assert not (tmp_path / "r").exists()


def test_an_empty_shard_says_why_it_runs_nothing(tiny_matrix: Path, capsys):
    from q4gsw import cli
    from q4gsw.matrix.load import load_matrix

    args = cli.build_parser().parse_args(["run", "--backend", "swiftshader", "--shard", "3/3"])
    assert cli.selection_from_args(load_matrix(tiny_matrix), args).is_empty()
    assert "shard 3/3 runs nothing: the cost-balanced split dealt all 2 selected config(s) to the other shards" \
        in capsys.readouterr().err


def test_run_in_process_says_what_it_is_for():
    done = cli_in_process("run", "--help")
    assert "--in-process" in done.stdout and "debuggers and profilers" in " ".join(done.stdout.split())


@pytest.mark.parametrize("limit", ["-1", "nan", "inf", "-0.5"])
def test_export_rejects_a_golden_limit_that_is_not_a_size(tmp_path: Path, capsys, limit: str):
    """issue 22: -1 and nan were accepted (nan compares false: every golden kept)."""
    from q4gsw import cli

    code = cli.main(["export", "--matrix", str(MATRIX), "--config", "q_proj", "--max-golden-mib", limit,
                     "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")])
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--max-golden-mib" in err[0] and "is not a size in MiB" in err[0], err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # checked before any work


def test_export_out_naming_a_file_calls_it_the_export_output_folder(tmp_path: Path, capsys):
    """issue 22: the message called export's --out FILE "the q4gsw results folder"."""
    from q4gsw import cli

    a_file = tmp_path / "fixtures.txt"
    a_file.write_text("the user's")
    code = cli.main(["export", "--matrix", str(MATRIX), "--config", "q_proj", "--out", str(a_file),
                     "--cache", str(tmp_path / "cache")])
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"the q4gsw export output folder {a_file} is not a folder" in err[0], err
    assert "results folder" not in err[0]
    assert a_file.read_text() == "the user's"
