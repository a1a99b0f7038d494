"""The run's stages (q4gsw.run.stages, offline): the stage lists, the run order (the most GPU work first when
exporting), results reported in matrix order, and the verdict's rules applied once."""

from __future__ import annotations

from dataclasses import replace

from helpers import MATRIX

from q4gsw.cases import Skip, build_selection
from q4gsw.matrix.load import load_matrix
from q4gsw.run.exporter import FixtureSource
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
    from q4gsw.export.fixtures import fixture_dir
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


def test_the_run_is_a_list_of_named_stages():
    from q4gsw.run import stages

    assert [name for name, _ in stages.CHECK_STAGES] == [
        "select", "cache", "order", "prewarm", "start exporting", "provision, probe, route", "execute"]
    assert [name for name, _ in stages.IN_PROCESS_STAGES] == [
        "select", "cache", "order", "fixtures", "provision, probe, route", "execute"]
    options = stages.RunOptions(fixtures=FixtureSource(None, MATRIX.parent, MATRIX))
    assert stages.stages_for(options) is stages.CHECK_STAGES
    assert stages.stages_for(replace(options, in_process=True)) is stages.IN_PROCESS_STAGES


def test_bench_is_a_mode_with_synthetic_problems_and_no_export():
    from q4gsw.run import stages

    source = FixtureSource(None, MATRIX.parent, MATRIX)
    check = stages.RunOptions(fixtures=source, seed=7)
    bench = stages.RunOptions(fixtures=source, mode="bench", seed=7)
    assert (check.problem_seed, check.exports_into_cache) == (None, True)  # a seed alone is not bench
    assert (bench.problem_seed, bench.exports_into_cache) == (7, False)


def test_a_stage_that_stops_the_run_ends_it_and_the_verdict_is_a_failure(tmp_path):
    """An unusable cache stops the run at the 'cache' stage: nothing is provisioned, every config fails."""
    from q4gsw.report import verdict
    from q4gsw.run import stages

    selection = required_llama_selection()
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("the user's")
    options = stages.RunOptions(fixtures=FixtureSource(None, not_a_folder / "fixtures", MATRIX))
    results = stages.run_selection(selection, options, MATRIX.parent)
    failed = [r for r in results if r.status == "fail"]
    assert {r.config for r in failed} == {c.name for c in selection.configs}
    assert all("is not a folder" in r.message and "nothing was exported or run" in r.message for r in failed)
    assert verdict.exit_code(results) == verdict.FAILED


def test_a_required_config_that_ran_no_case_fails_the_run():
    from q4gsw.run.stages import required_without_a_run

    selection = required_llama_selection()
    q_proj = selection.configs[0]
    unsupported = replace(skip_result(Skip(q_proj, "no kernel applies"), selection), status="unsupported")
    failures = required_without_a_run(selection, [unsupported])
    assert [f.config for f in failures] == [c.name for c in selection.configs]  # none of them ran a case
    assert failures[0].status == "fail"
    assert failures[0].message == "required config 'q_proj' ran no case on 'swiftshader': no kernel applies"


def test_results_follow_the_matrix_and_each_configs_cases_whatever_finished_first():
    selection = required_llama_selection()
    kv_proj = next(c for c in selection.configs if c.name == "kv_proj")
    cases = selection.cases_of(kv_proj)  # two inputs
    assert len(cases) > 1
    finished = [replace(skip_result(Skip(kv_proj, "ran"), selection), case_id=c.id) for c in reversed(cases)]
    heavy = [skip_result(s, selection) for s in selection.skipped]
    matrix = [c.name for c in load_matrix(MATRIX).configs]
    ordered = in_matrix_order(finished + heavy, selection, matrix)
    assert [r.case_id for r in ordered if r.config == "kv_proj"] == [c.id for c in cases]
    positions = [matrix.index(r.config) for r in ordered]
    assert positions == sorted(positions)  # the skipped heavy configs in their matrix places, not first
