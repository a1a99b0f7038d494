"""The fp32 error model on hand-computed cases, and the audit's flags."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import MATRIX

from q4gsw.commands import audit
from q4gsw.matrix.load import Config
from q4gsw.ops import error_model
from q4gsw.report.result import AdapterInfo, Errors, Result, Tolerance, write_results

U = 2.0**-24


def _config(atol: float, rtol: float) -> Config:
    return Config(name="t", dims={"M": 1, "K": 1024, "N": 64, "group_size": 32}, tier="required", suite="test",
                  inputs=("ramp",),
                  weights="linear_init", weight_seed=0, timeout_s=60, tolerance=Tolerance(atol, rtol, "test"))


def _toy_model() -> tuple[error_model.ErrorModel, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 1024))
    q = rng.integers(-8, 8, size=(64, 1024))
    scales = np.full((32, 64), 0.004)
    w = q * 0.004
    return error_model.error_model(x, w, scales, group_size=32), x @ w.T


def test_flags_loose_blind_tight_and_flaky():
    model, g = _toy_model()
    worst = float(model.worst.max())
    loose = audit.audit_case(_config(100 * worst, 0), "ramp", model, g, 100 * worst, 0, [])
    assert "LOOSE" in loose.flags
    blind = audit.audit_case(_config(1.0, 0), "ramp", model, g, 1.0, 0, [])
    assert "BLIND" in blind.flags  # one nibble step (|x| * 0.004 < 0.02) never exceeds atol 1
    est = float(model.est.max())
    tight = audit.audit_case(_config(est, 0), "ramp", model, g, est, 0, [])
    assert "TIGHT" in tight.flags and "LOOSE" not in tight.flags
    sound = audit.audit_case(_config(10 * est, 0), "ramp", model, g, 10 * est, 0, [])
    assert sound.flags == [] and sound.suggested_atol == pytest.approx(3 * est, rel=1e-6)
    flaky_measurement = [audit.Measured("swiftshader", "gemv", "x", "pass", 5 * est, 0.5, "r.json", 10 * est, 0)]
    flaky = audit.audit_case(_config(10 * est, 0), "ramp", model, g, 10 * est, 0, flaky_measurement)
    assert flaky.flags == ["FLAKY"]
    spread = [audit.Measured("a", "k", "x", "pass", 0.1 * est, 0.01, "r.json", 10 * est, 0),
              audit.Measured("b", "k", "x", "pass", 0.1 * est, 0.01, "r.json", 10 * est, 0),
              audit.Measured("c", "k", "x", "pass", 1.0 * est, 0.15, "r.json", 10 * est, 0)]
    assert audit.measured_spread(spread) == pytest.approx(10.0)
    # A run under another tolerance: its headroom is re-derived as max|err| / min T, here 5*est / 10*est.
    other = [audit.Measured("a", "k", "x", "pass", 5 * est, 0.01, "r.json", 1.0, 0)]
    assert audit.audit_case(_config(10 * est, 0), "ramp", model, g, 10 * est, 0, other).measured_headroom == 0.5
    assert "FLAKY" in audit.audit_case(_config(10 * est, 0), "ramp", model, g, 10 * est, 0, spread).flags
    impossible = [audit.Measured("a", "k", "x", "fail", 2 * worst, 0.5, "r.json")]
    assert "MODEL?" in audit.audit_case(_config(1.0, 0), "ramp", model, g, 1.0, 0, impossible).flags


def _errors(max_abs: float, headroom: float) -> Errors:
    return Errors(max_abs=max_abs, max_rel=0.0, worst_index=(0, 0), mismatches=0, elements=64, nmse=0.0,
                  headroom=headroom)


def test_load_measurements_reads_typed_results(tmp_path):
    results = [
        Result(config="t", backend="swiftshader", status="pass", message="", kernel="gemv", input="ramp",
               webgpu="dawn", errors=_errors(1e-6, 0.1), tolerance=Tolerance(1e-5, 1e-4),
               adapter=AdapterInfo(name="SwiftShader Device (Subzero)", webgpu="dawn")),
        # Under a kernel's own tolerance; no adapter recorded.
        Result(config="t", backend="lavapipe", status="fail", message="", kernel="tiled", input="ramp",
               errors=_errors(2e-4, 2.0), tolerance=Tolerance(1e-4, 0.0, source="kernel:tiled")),
        # Nothing measured: a crash before the comparison, a skip.
        Result(config="t", backend="swiftshader", status="fail", message="crashed", kernel="gemv", input="normal"),
        Result(config="t", backend="swiftshader", status="skip", message="heavy", input="ramp"),
    ]
    write_results(tmp_path / "run" / "results.json", results, {"backend": "mixed"})
    found = audit.load_measurements([tmp_path])
    assert list(found) == [("t", "ramp")]
    first, second = found[("t", "ramp")]
    assert (first.backend, first.kernel, first.adapter, first.status) == (
        "swiftshader", "gemv", "SwiftShader Device (Subzero)", "pass")
    assert (first.max_abs, first.headroom, first.atol, first.rtol, first.tolerance_source) == (
        1e-6, 0.1, 1e-5, 1e-4, "config")
    assert (second.adapter, second.max_abs, second.atol, second.tolerance_source) == ("", 2e-4, 1e-4, "kernel:tiled")


def test_audit_of_a_results_folder_that_does_not_exist_is_exit_2(tmp_path, capsys):
    """issue 22: a mistyped --results audited with no measurements and exited 0 silently."""
    missing = tmp_path / "no-such-results"
    assert audit.main(["--matrix", str(MATRIX), "--results", str(missing), "--json", str(tmp_path / "audit.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and f"{missing} does not exist" in err[0]
    assert not (tmp_path / "audit.json").exists()


def _audit_tiny(tmp_path, justification: str, atol: float) -> tuple[int, list[str]]:
    from helpers import TOLERANCE_TOML, write_fixtures, write_matrix

    tmp_path = tmp_path / f"audit{len(list(tmp_path.iterdir()))}"  # a folder per call
    tmp_path.mkdir()

    tolerance = f'tolerance = {{ atol = {atol}, rtol = 1e-4, justification = "{justification}" }}'
    matrix = write_matrix(tmp_path / "matrix.toml", "b", replace=((TOLERANCE_TOML, tolerance),))
    fixtures = write_fixtures(tmp_path / "fixtures", matrix, "b")
    (tmp_path / "none").mkdir()
    code = audit.main(["--matrix", str(matrix), "--fixtures", str(fixtures), "--results", str(tmp_path / "none"),
                       "--json", str(tmp_path / "audit.json")])
    return code, json.loads((tmp_path / "audit.json").read_text())["rows"][0]["flags"]


def test_a_loose_tolerance_fails_the_audit_unless_its_justification_says_why(tmp_path, capsys):
    """issue 29: a tolerance loosened 100x was flagged LOOSE and the audit exited 0. K = 64: the fp32 worst case is
    ~1e-5, so atol 1e-2 is LOOSE; the audit exits 1 with one line naming the matrix, config and the ways out."""
    code, flags = _audit_tiny(tmp_path, "K=64: fp32 rounding is far below 1e-6.", 1e-2)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 1 and "LOOSE" in flags
    assert len(errors) == 1 and "matrix.toml: config 'b' (ramp): tolerance atol=0.01, rtol=0.0001" in errors[0]
    assert "tighten it (suggested atol" in errors[0] and "after 'LOOSE:'" in errors[0]
    code, flags = _audit_tiny(tmp_path, "LOOSE: a test of the marker.", 1e-2)
    assert code == 0 and "LOOSE" in flags
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    code, flags = _audit_tiny(tmp_path, "LOOSE:", 1e-2)  # the marker without a reason is no reason
    assert code == 1


def test_a_sound_tolerance_passes_and_a_runs_own_tolerance_brings_its_justification(tmp_path):
    code, flags = _audit_tiny(tmp_path, "K=64: fp32 rounding is far below 1e-6.", 1e-5)
    assert code == 0 and "LOOSE" not in flags
    row = audit.AuditRow(**{f.name: 0 for f in dataclasses.fields(audit.AuditRow) if f.name not in (
        "measured", "flags", "suggested_atol", "justification", "config", "tolerance_source", "suite", "tier", "input",
        "weights")}, config="t", tolerance_source="kernel:k", suite="s", tier="required", input="ramp", weights="w",
        flags=["LOOSE"], justification="f16 sums; LOOSE: outside the fp32 model")
    assert not row.unjustified_loose and audit.loose_errors([row], "m.toml") == []
    results = [Result(config="t", backend="lavapipe", status="pass", message="", kernel="f16acc", input="ramp",
                      errors=_errors(1e-3, 0.1), tolerance=Tolerance(5e-2, 8e-2, "LOOSE: f16 sums", "kernel:f16acc"))]
    write_results(tmp_path / "run" / "results.json", results, {"backend": "lavapipe"})
    (measured,) = audit.load_measurements([tmp_path / "run"])[("t", "ramp")]
    assert measured.justification == "LOOSE: f16 sums" and measured.tolerance_source == "kernel:f16acc"


LOOSE_PRONE = ("qcs4w_up_basic", "qcs4w_up_gemv", "qcs4w_up_k64", "qcs4w_up_n32", "qcs4w_n6_m5", "qcs4w_odd_row_bytes",
               "qcs4w_n10_k100", "dq8ca_up_gemv", "dq8ca_up_k128", "dq8ca_up_basic", "dq8ca_up_n32",
               "emb_upstream_small")


@pytest.mark.e2e
def test_the_matrix_small_k_configs_are_not_loose(tmp_path, fixture_cache):
    """The real matrix.toml through `audit` (real fixtures): its small-K configs, where fp32 rounding is smallest and
    a loosened tolerance is LOOSE first (qcs4w_up_basic at atol 3e-4 instead of 3e-6: 100x). Exit 0, no LOOSE."""
    from conftest import run_cli

    (tmp_path / "none").mkdir()
    args = [a for name in LOOSE_PRONE for a in ("--config", name)]
    done = run_cli("audit", *args, "--results", str(tmp_path / "none"), "--json", str(tmp_path / "audit.json"),
                   env={"Q4GSW_CACHE": str(fixture_cache)}, timeout=1800)  # the run's cache, not the user's
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads((tmp_path / "audit.json").read_text())["rows"]
    assert {r["config"] for r in rows} == set(LOOSE_PRONE)
    assert not [(r["config"], r["input"]) for r in rows if "LOOSE" in r["flags"]]


def _selected(*argv: str) -> list[str]:
    from q4gsw.matrix.load import load_matrix

    return [c.name for c in audit.selected_configs(load_matrix(MATRIX), audit.build_parser().parse_args(list(argv)))]


def test_audit_selects_configs_by_name_and_by_op():
    assert _selected("--config", "q_proj", "--config", "emb_llama_gs32") == ["q_proj", "emb_llama_gs32"]
    from q4gsw.matrix.load import load_matrix

    embedding = {c.name for c in load_matrix(MATRIX).configs if c.op == "embedding_q4gsw" and c.tier == "required"}
    assert set(_selected("--op", "embedding_q4gsw")) == embedding and "emb_llama_gs32" in embedding
    assert len(_selected()) > len(embedding)  # without --config/--op: every suite's required configs


@pytest.mark.parametrize("argv, key, says", [
    (["--config", "q_projj"], "--config", "'q_projj' names nothing in"),
    (["--op", "layer_norm"], "--op", "'layer_norm' names nothing in"),
    (["--config", "q_proj", "--op", "embedding_q4gsw"], "--config/--op",
     "selects no config of the matrix (config 'q_proj' is of op linear_q4gsw)"),
])
def test_audit_names_that_select_nothing_are_one_line_and_exit_2(tmp_path, capsys, argv, key, says):
    assert audit.main(["--matrix", str(MATRIX), *argv, "--json", str(tmp_path / "audit.json")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: command line:") and f"key '{key}'" in line and says in line
    assert not (tmp_path / "audit.json").exists()
