"""The run's stages (q4gsw.run.stages, offline): the stage lists, the run order (the most GPU work first when
exporting), results reported in matrix order, and the verdict's rules applied once."""

from __future__ import annotations

from helpers import MATRIX

from q4gsw.cases import Skip, build_selection
from q4gsw.matrix import load_matrix
from q4gsw.run.records import in_matrix_order, skip_result
from q4gsw.run.stages import execution_order


def required_llama_selection():
    return build_selection(load_matrix(MATRIX), "swiftshader", tiers=["required"], suites=["llama"])


def test_the_most_gpu_work_runs_first_and_ties_keep_the_matrix_order():
    selection = required_llama_selection()
    matrix_order = [c.name for c in selection.configs]
    assert matrix_order == ["q_proj", "kv_proj", "gate_proj", "down_proj", "q_proj_4k", "kv_proj_4k"]
    # gate_proj (1x2048x8192) and down_proj (1x8192x2048) tie: the matrix's order decides.
    assert [c.name for c in execution_order(list(selection.configs))] == \
        ["q_proj_4k", "kv_proj_4k", "gate_proj", "down_proj", "q_proj", "kv_proj"]


def test_results_are_reported_in_matrix_order_whatever_ran_first():
    selection = required_llama_selection()
    ran = [skip_result(Skip(c, "ran"), selection) for c in execution_order(list(selection.configs))]
    skipped_before_the_run = [skip_result(s, selection) for s in selection.skipped]  # the heavy tier
    assert skipped_before_the_run
    ordered = in_matrix_order(skipped_before_the_run + ran, selection)
    assert [r.config for r in ordered] == [r.config for r in skipped_before_the_run] + \
        ["q_proj", "kv_proj", "gate_proj", "down_proj", "q_proj_4k", "kv_proj_4k"]


def test_only_runs_that_export_reorder(tmp_path):
    from q4gsw.export import fixture_dir
    from q4gsw.run.exporter import FixtureSource
    from q4gsw.run.stages import RunOptions, must_export

    configs = list(required_llama_selection().configs)
    cache = tmp_path / "fixtures"
    cold = RunOptions(fixtures=FixtureSource(fixtures=None, cache=cache, matrix_path=MATRIX))
    assert must_export(cold, configs)
    for config in configs:
        fixture_dir(cache, config).mkdir(parents=True)
    assert not must_export(cold, configs)  # every fixture cached: the matrix order stays
    given = RunOptions(fixtures=FixtureSource(fixtures=tmp_path / "given", cache=tmp_path / "empty",
                                              matrix_path=MATRIX))
    assert not must_export(given, configs)  # `--fixtures DIR` never exports
    synthetic = RunOptions(fixtures=FixtureSource(fixtures=None, cache=tmp_path / "empty", matrix_path=MATRIX),
                           mode="bench", seed=1)
    assert not must_export(synthetic, configs)  # bench's synthetic problems
