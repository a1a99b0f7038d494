"""ExecuTorch's template generator is foreign code (issue #22): no exit, exception or output of it can end or
mislead a run. A generator that cannot be loaded is one usage error naming it (exit 2, never exit 0 with nothing
checked); a template, variant spec or kernel file that cannot be used fails that kernel's cases with the reason.

Offline: the trees are copies of tests/data/etree (test_executorch.make_tree), with a hostile generator written
into them or the wheel's generator beside a broken template; the CLI runs stop before any GPU work.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import test_executorch as et
from helpers import assert_clean_usage_error

from q4gsw import cli
from q4gsw.cases import Selection
from q4gsw.export.kernel_sets import load_kernel_set
from q4gsw.matrix.load import Matrix, MatrixError, load_matrix

HOSTILE_GENERATORS = [  # (id, the generator's text, what the one-line error says)
    ("sys-exit-0", "import sys\nprint('all headers up to date')\nsys.exit(0)\n", "it called sys.exit(0)"),
    ("sys-exit-1", "import sys\nsys.exit(1)\n", "it called sys.exit(1)"),
    ("os-exit-0", "import os\nprint('fine', flush=True)\nos._exit(0)\n", "ended the process that loaded it"),
    ("raises", "raise RuntimeError('the generator broke')\n", "RuntimeError: the generator broke"),
    ("syntax-error", "def preprocess(:\n    pass\n", "SyntaxError"),
    ("no-preprocess", "def parse_template_spec(path):\n    return {}\n", "defines no preprocess()"),
    ("keyboard-interrupt", "raise KeyboardInterrupt\n", "KeyboardInterrupt"),
    ("missing-package", "import q4gsw_no_such_package\n", "needs a package that is not installed"),
]

EXITING = HOSTILE_GENERATORS[:3]  # those that made `run --executorch` exit 0 having checked nothing


@pytest.fixture(scope="module")
def matrix() -> Matrix:
    return load_matrix(et.MATRIX)


def hostile_tree(tmp_path: Path, text: str) -> Path:
    tree = et.make_tree(tmp_path / "executorch", generator=False)
    generator = tree / et.GENERATOR
    generator.parent.mkdir(parents=True)
    generator.write_text(text)
    return tree


@pytest.mark.parametrize("text, says", [g[1:] for g in HOSTILE_GENERATORS], ids=[g[0] for g in HOSTILE_GENERATORS])
def test_a_generator_that_cannot_be_loaded_is_one_usage_error_naming_it(matrix, tmp_path, capfd, text, says):
    tree = hostile_tree(tmp_path, text)
    with pytest.raises(MatrixError) as caught:
        load_kernel_set(matrix.kernel_sets["executorch"], tree)
    message = str(caught.value)
    assert says in message and str(tree.resolve() / et.GENERATOR) in message and "--executorch" in message
    assert "\n" not in message
    out, err = capfd.readouterr()
    assert "all headers up to date" not in out + err and "fine" not in out, "the generator's output is not ours"


@pytest.mark.parametrize("command", ["run", "bench"])
@pytest.mark.parametrize("text, says", [g[1:] for g in EXITING], ids=[g[0] for g in EXITING])
def test_run_and_bench_with_an_exiting_generator_exit_2_and_keep_the_previous_results(tmp_path, command, text, says):
    tree = hostile_tree(tmp_path, text)
    results = tmp_path / "results"
    results.mkdir()
    (results / "results.json").write_text('{"previous": true}')
    argv = [command, "--executorch", str(tree), "--backend", "swiftshader-dawn"]
    argv += ["--config", "q_proj", "--results", str(results)] if command == "run" else \
        ["--json", str(tmp_path / "bench.json")]
    done = et.run_cli(*argv, env={"Q4GSW_CACHE": str(tmp_path / "cache")}, timeout=120)
    assert_clean_usage_error(done, says, et.GENERATOR)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "all headers up to date" not in done.stdout + done.stderr
    assert json.loads((results / "results.json").read_text()) == {"previous": True}
    assert not (tmp_path / "bench.json").exists()


def test_what_a_working_generator_prints_is_labelled_as_its_own(matrix, tree_with_wheel_generator, capfd):
    generator = tree_with_wheel_generator / et.GENERATOR
    generator.write_text("print('hello from the generator')\n" + generator.read_text())
    loaded = load_kernel_set(matrix.kernel_sets["executorch"], tree_with_wheel_generator)
    assert loaded.missing == {}
    out, err = capfd.readouterr()
    assert "hello from the generator" not in out
    assert f"note: {et.GENERATOR} printed: hello from the generator" in err


@pytest.fixture
def tree_with_wheel_generator(tmp_path: Path) -> Path:
    return et.make_tree(tmp_path / "executorch")


def _break_yaml(text: str) -> Callable[[Path], None]:
    def breaks(tree: Path) -> None:
        (tree / et.FOLDER / "q4gsw_linear_gemm_steel.yaml").write_text(text)
    return breaks


def _no_yaml(tree: Path) -> None:
    (tree / et.FOLDER / "q4gsw_linear_gemm_steel.yaml").unlink()


def _bad_expression(tree: Path) -> None:
    template = tree / et.FOLDER / "q4gsw_linear_gemm_steel.wgsl"
    template.write_text("// ${no_such_name + 1}\n" + template.read_text())


def _exit_in_template(tree: Path) -> None:
    template = tree / et.FOLDER / "q4gsw_linear_gemm_steel.wgsl"
    template.write_text("// ${__import__('sys').exit(0)}\n" + template.read_text())


def _not_utf8_template(tree: Path) -> None:
    template = tree / et.FOLDER / "q4gsw_linear_gemm_steel.wgsl"
    template.write_bytes(b"\xff\xfe" + template.read_bytes())


TEMPLATE_BREAKAGES = [  # (id, breakage, what every template variant's reason says)
    ("malformed-yaml", _break_yaml("q4gsw_linear_gemm_steel: [unclosed\n  - {"), "the generator cannot read it"),
    ("empty-yaml", _break_yaml(""), "q4gsw_linear_gemm_steel.yaml: the generator cannot read it"),
    ("no-yaml", _no_yaml, "q4gsw_linear_gemm_steel.yaml (its variant spec) is not in"),
    ("bad-expression", _bad_expression, "the generator failed: NameError"),
    ("exit-in-a-template", _exit_in_template, "the generator failed: it called sys.exit(0)"),
    ("template-not-utf8", _not_utf8_template, "is not UTF-8 text (byte 0xff at offset 0)"),
]


@pytest.mark.parametrize("breakage, says", [b[1:] for b in TEMPLATE_BREAKAGES], ids=[b[0] for b in TEMPLATE_BREAKAGES])
def test_a_template_that_cannot_be_generated_fails_its_variants_with_the_reason(matrix, tree_with_wheel_generator,
                                                                                breakage, says):
    breakage(tree_with_wheel_generator)
    loaded = load_kernel_set(matrix.kernel_sets["executorch"], tree_with_wheel_generator)
    assert sorted(loaded.missing) == sorted(et.TEMPLATE_VARIANTS)
    assert all(says in reason for reason in loaded.missing.values()), loaded.missing
    assert {k.name for k in loaded.kernels} == {et.BICOL, et.SHMEM, et.TILED}, "the plain kernels still load"


def test_a_plain_kernel_that_is_not_utf8_fails_only_itself(matrix, tree_with_wheel_generator):
    plain = tree_with_wheel_generator / et.FOLDER / "q4gsw_linear.wgsl"
    plain.write_bytes(plain.read_bytes() + b"\n// \xe9t\xe9\n")
    loaded = load_kernel_set(matrix.kernel_sets["executorch"], tree_with_wheel_generator)
    assert list(loaded.missing) == [et.TILED]
    assert "q4gsw_linear.wgsl in" in loaded.missing[et.TILED] and "is not UTF-8 text" in loaded.missing[et.TILED]


def test_a_kernel_that_cannot_be_generated_is_a_fail_of_the_configs_it_applies_to(matrix, tree_with_wheel_generator,
                                                                                  monkeypatch):
    """cli.cmd_run_kernel_set turns `missing` into FAIL rows (status fail, with the reason) before any GPU work."""
    _bad_expression(tree_with_wheel_generator)
    handed: list[Selection] = []
    monkeypatch.setattr(cli, "cmd_run", lambda m, a, selection=None, **_: handed.append(selection) or 0)
    args = cli.build_parser().parse_args(["run", "--executorch", str(tree_with_wheel_generator), "--backend",
                                          "swiftshader-dawn", "--config", "edge_steel", "--config", "q_proj"])
    cli.cmd_run_kernel_set(matrix, args, tree_with_wheel_generator)
    (selection,) = handed
    failed = [s for s in selection.skipped if s.status == "fail"]
    assert {s.kernel for s in failed} >= {et.STEEL, et.PWDQ, et.HALF}
    assert all("the generator failed: NameError" in s.reason for s in failed)
    assert {s.config.name for s in failed} == {"edge_steel", "q_proj"}


def test_the_generator_runs_in_its_own_process(matrix, tree_with_wheel_generator):
    """Nothing of the foreign module is left in this process (it was loaded elsewhere)."""
    load_kernel_set(matrix.kernel_sets["executorch"], tree_with_wheel_generator)
    assert not [name for name in sys.modules if "generator" in name and "q4gsw" in name]



def test_an_op_the_checkout_lacks_is_said_and_its_configs_skipped(matrix, tree_with_wheel_generator, monkeypatch,
                                                                  capsys):
    """A tree with only quantized_linear/ (an older ExecuTorch): the other ops' configs the run selected by suite and
    tier are skips with the reason, and the console says which ops are not checked; one named by --config that is
    not required (a heavy one here) is a skip too."""
    handed: list[Selection] = []
    monkeypatch.setattr(cli, "cmd_run", lambda m, a, selection=None, **_: handed.append(selection) or 0)
    args = cli.build_parser().parse_args(["run", "--executorch", str(tree_with_wheel_generator), "--backend",
                                          "swiftshader-dawn", "--config", "q_proj", "--config", "qcs4w_q_proj_4k"])
    cli.cmd_run_kernel_set(matrix, args, tree_with_wheel_generator)
    (selection,) = handed
    assert [c.name for c in selection.configs] == ["q_proj"]
    (skip,) = [s for s in selection.skipped if s.config.name == "qcs4w_q_proj_4k"]
    assert skip.status == "skip" and "op linear_qcs4w" in skip.reason and "has no kernels of it" in skip.reason
    assert "backends/webgpu/runtime/ops/linear_qcs4w: op linear_qcs4w is not checked" in capsys.readouterr().out
    handed.clear()
    args = cli.build_parser().parse_args(["run", "--executorch", str(tree_with_wheel_generator), "--backend",
                                          "swiftshader-dawn", "--suite", "qcs4w-llama"])
    cli.cmd_run_kernel_set(matrix, args, tree_with_wheel_generator)
    (selection,) = handed
    assert {s.status for s in selection.skipped if s.config.op == "linear_qcs4w"} == {"skip"}


def test_a_required_config_named_of_an_op_the_checkout_lacks_fails(matrix, tree_with_wheel_generator, monkeypatch):
    """Required is never silently skipped: `--config qcs4w_q_proj` on a tree without linear_qcs4w/ was a skip, and
    the run exited 0 on q_proj alone (issue 29)."""
    handed: list[Selection] = []
    monkeypatch.setattr(cli, "cmd_run", lambda m, a, selection=None, **_: handed.append(selection) or 0)
    args = cli.build_parser().parse_args(["run", "--executorch", str(tree_with_wheel_generator), "--backend",
                                          "swiftshader-dawn", "--config", "q_proj", "--config", "qcs4w_q_proj"])
    cli.cmd_run_kernel_set(matrix, args, tree_with_wheel_generator)
    (selection,) = handed
    (failed,) = [s for s in selection.skipped if s.config.name == "qcs4w_q_proj"]
    assert failed.status == "fail"
    assert failed.reason.startswith("required config 'qcs4w_q_proj' was asked for (--config), but op linear_qcs4w: ")
    assert "has no kernels of it" in failed.reason


def test_an_op_without_a_kernel_set_is_said_so_not_taken_for_an_older_executorch(matrix, tree_with_wheel_generator,
                                                                                  monkeypatch):
    """An op ExecuTorch has no kernels of (no [kernel_set] of its op in the matrix) is skipped saying so."""
    handed: list[Selection] = []
    monkeypatch.setattr(cli, "cmd_run", lambda m, a, selection=None, **_: handed.append(selection) or 0)
    without = dataclasses.replace(matrix, kernel_sets={name: spec for name, spec in matrix.kernel_sets.items()
                                                       if spec.op != "linear_qcs4w"})
    args = cli.build_parser().parse_args(["run", "--executorch", str(tree_with_wheel_generator), "--backend",
                                          "swiftshader-dawn", "--config", "q_proj", "--config", "qcs4w_q_proj"])
    cli.cmd_run_kernel_set(without, args, tree_with_wheel_generator)
    (selection,) = handed
    (skip,) = [s for s in selection.skipped if s.config.name == "qcs4w_q_proj"]
    assert skip.status == "skip" and skip.reason.startswith("op linear_qcs4w has no [kernel_set] in ")
    assert "older ExecuTorch" not in skip.reason


def test_an_op_asked_for_that_the_checkout_lacks_is_a_usage_error(matrix, tree_with_wheel_generator):
    args = cli.build_parser().parse_args(["run", "--executorch", str(tree_with_wheel_generator), "--backend",
                                          "swiftshader-dawn", "--op", "linear_qcs4w"])
    with pytest.raises(MatrixError, match="has no backends/webgpu/runtime/ops/linear_qcs4w"):
        cli.cmd_run_kernel_set(matrix, args, tree_with_wheel_generator)
