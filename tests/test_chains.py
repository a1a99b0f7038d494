"""Chains of any length (issue 30, SDPA): a kernel's `before` may be an array [[kernel.X.before]] of dispatches in
order, and an op that declares `stages` binds each dispatch by its `stage` (Op.stage_bindings). Checked offline: the
loader (order, names, every refusal one line naming table and key) and execute_case on the fake GPU of
test_fake_gpu (the dispatch order and the buffers the stages share), with a tiny op kept in a temporary folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from helpers import make_config
from test_fake_gpu import Views, run_case
from test_op_folders import extra_ops  # noqa: F401  (the fixture: a folder on $Q4GSW_OPS_PATH)

from q4gsw.matrix.load import MatrixError, load_matrix, make_kernel

STAGED_OP = '''
import numpy as np
from q4gsw.matrix.values import Dim, Tolerance
from q4gsw.ops.base import Binding, Bindings, Op


class Staged(Op):
    """y = 4 x + 1 as three dispatches on one shared buffer t: load (t = x), double (t *= 2, run twice), finish."""
    name = "staged"
    operator = "test.staged"
    dims = (Dim("rows", "elements of x"),)
    constant_files = ("none.npy",)
    stages = ("load", "double", "finish")

    def shape_problems(self, config):
        return []

    def make_input(self, name, config):
        return np.arange(config.dims["rows"], dtype=np.float32)[None, :]

    def output_shape(self, config):
        return (1, config.dims["rows"])

    def bench_tolerance(self, dims):
        return Tolerance(atol=0, rtol=0, justification="exact", source="bench")

    def flops(self, config):
        return config.dims["rows"]

    def bytes_moved(self, config):
        return 8 * config.dims["rows"]

    def synthetic_constants(self, config, seed):
        return np.zeros(1, np.float32)

    def constants_to_files(self, constants):
        return {"none.npy": constants}

    def constants_from_files(self, files, config):
        return files["none.npy"]

    def golden(self, x, constants, progress=None):
        return 4 * x.astype(np.float64) + 1

    def cpu_reference(self, x, constants):
        return 4 * x + 1

    def bindings(self, x, constants, chained=False):
        raise AssertionError("a staged kernel is bound by stage_bindings")

    def stage_bindings(self, stage, x, constants):
        t = np.zeros_like(x)
        if stage == "load":
            return Bindings(None, (), (Binding(0, t, "storage", shared="t"), Binding(1, x)))
        if stage == "double":
            return Bindings(None, (), (Binding(0, t, "storage", shared="t"),))
        return Bindings(0, x.shape, (Binding(1, t, shared="t"),))

    def warm_up_problem(self):
        return np.zeros((1, 4), np.float32), np.zeros(1, np.float32)
'''

HEAD = '''schema_version = 1

[backend.swiftshader]
api = "Vulkan"
adapter_name = "SwiftShader"
device_type = "CPU"
provision = "swiftshader"

[[config]]
name = "tiny"
op = "staged"
rows = 8
tier = "required"
tolerance = { atol = 0.0, rtol = 0.0, justification = "exact: small integers" }
'''
GOOD = f'"{REPO}/tests/data/good.wgsl"'
CHAIN = f'''
[kernel.finish]
op = "staged"
file = {GOOD}
when = "1"
dispatch = "1"
stage = "finish"

[[kernel.finish.before]]
name = "load"
file = {GOOD}
when = "1"
dispatch = "1"
stage = "load"

[[kernel.finish.before]]
file = {GOOD}
when = "rows > 0"
dispatch = "rows"
stage = "double"
'''


@pytest.fixture
def staged(extra_ops: Path) -> Path:  # noqa: F811
    (extra_ops / "staged").mkdir()
    (extra_ops / "staged" / "__init__.py").write_text(STAGED_OP)
    return extra_ops


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "matrix.toml"
    path.write_text(HEAD + text)
    return load_matrix(path)


def test_an_array_of_before_tables_is_the_chain_in_dispatch_order(staged, tmp_path):
    (kernel,) = _load(tmp_path, CHAIN).kernels
    chain = kernel.chain()
    assert [(k.name, k.stage, k.dispatch) for k in chain] == [("load", "load", ("1",)), ("before", "double", ("rows",))]
    assert kernel.stage == "finish" and chain[1].before is chain[0] and chain[0].before is None


def test_a_single_before_table_still_loads(staged, tmp_path):
    text = CHAIN.replace("[[kernel.finish.before]]\nname = \"load\"", "[kernel.finish.before]\nname = \"load\"")
    text = text[:text.index("[[kernel.finish.before]]")]
    (kernel,) = _load(tmp_path, text).kernels
    assert [k.stage for k in kernel.chain()] == ["load"]


@pytest.mark.parametrize(("edit", "where", "key", "says"), [
    (('stage = "double"', 'stage = "doubel"'), "[kernel.finish.before] #2", "stage",
     "op 'staged' has no stage 'doubel' — did you mean 'double'? choose from load, double, finish"),
    (('stage = "finish"\n', ''), "[kernel.finish]", "stage",
     "missing: op 'staged' binds each dispatch by its stage — add stage = \"...\" (one of load, double, finish)"),
    (('stage = "load"', 'stage = "load"\n[kernel.finish.before.before]\nfile = "x"'), "[kernel.finish.before] #1",
     "before", "a `before` cannot have a `before` of its own — list every dispatch in order as "
               "[[kernel.finish.before]] tables instead"),
])
def test_a_wrong_stage_or_nested_before_is_one_line_naming_table_and_key(staged, tmp_path, edit, where, key, says):
    with pytest.raises(MatrixError) as caught:
        _load(tmp_path, CHAIN.replace(*edit))
    assert (caught.value.where, caught.value.key) == (where, key)
    assert says in str(caught.value)


@pytest.mark.parametrize(("edit", "where", "key", "says"), [
    # an `op` of its own was ignored (even an op that does not exist): the chain ran in its kernel's op
    (('name = "load"', 'name = "load"\nop = "linear_q4gsw"'), "[kernel.finish.before] #1", "op",
     "is 'linear_q4gsw', but this table's kernels run in op 'staged' (its kernel's or kernel set's) — remove op, or "
     'write op = "staged"'),
    # a tolerance was kept on a kernel whose output is never compared
    (('stage = "double"', 'stage = "double"\ntolerance = { atol = 1.0, rtol = 0.0, justification = "loose" }'),
     "[kernel.finish.before] #2", "tolerance", "a kernel dispatched before is never compared with a golden"),
])
def test_a_key_a_before_cannot_honour_is_refused(staged, tmp_path, edit, where, key, says):
    with pytest.raises(MatrixError) as caught:
        _load(tmp_path, CHAIN.replace(*edit))
    assert (caught.value.where, caught.value.key) == (where, key)
    assert says in str(caught.value)
    # its own op, said again, is no conflict
    (kernel,) = _load(tmp_path, CHAIN.replace('name = "load"', 'name = "load"\nop = "staged"')).kernels
    assert [k.name for k in kernel.chain()] == ["load", "before"]


def test_an_empty_before_array_is_refused(staged, tmp_path):
    """`before = []` (no dispatch before it): without the check, an AssertionError from the loader."""
    with pytest.raises(MatrixError) as caught:
        _load(tmp_path, CHAIN[:CHAIN.index("[[kernel.finish.before]]")] + "before = []\n")
    assert (caught.value.where, caught.value.key) == ("[kernel.finish]", "before")
    assert "is an empty array — remove it, or add [[kernel.finish.before]] tables" in str(caught.value)


def test_a_chain_of_two_on_an_op_without_stages_is_refused(tmp_path):
    """linear_dq8ca_q4gsw binds one kernel before its own (before_bindings): a second [[before]] was bound the same
    way, silently."""
    path = tmp_path / "matrix.toml"
    before = f'[[kernel.dq8ca.before]]\nfile = {GOOD}\nwhen = "1"\ndispatch = "1"\n'
    path.write_text(HEAD.replace('op = "staged"\nrows = 8', 'op = "linear_dq8ca_q4gsw"\nM = 1\nK = 64\nN = 16\n'
                                 'group_size = 32') +
                    f'\n[kernel.dq8ca]\nop = "linear_dq8ca_q4gsw"\nfile = {GOOD}\nwhen = "1"\ndispatch = "1"\n\n'
                    + before + "\n" + before)
    with pytest.raises(MatrixError) as caught:
        load_matrix(path)
    assert (caught.value.where, caught.value.key) == ("[kernel.dq8ca]", "before")
    assert "is a chain of 2, but op 'linear_dq8ca_q4gsw' binds one kernel before its own" in str(caught.value)
    path.write_text(path.read_text().replace("\n" + before, "", 1))  # one [[before]]: the op's chain
    assert [k.name for k in load_matrix(path).kernels[0].chain()] == ["before"]


def test_a_stage_on_an_op_without_stages_is_refused(tmp_path):
    path = tmp_path / "matrix.toml"
    path.write_text(HEAD.replace('op = "staged"\nrows = 8', "M = 1\nK = 64\nN = 16\ngroup_size = 32") +
                    f'\n[kernel.gemv]\nfile = {GOOD}\nwhen = "1"\ndispatch = "1"\nstage = "load"\n')
    with pytest.raises(MatrixError, match="op 'linear_q4gsw' has no stage 'load' — remove it"):
        load_matrix(path)


def _fake(name: str) -> str:
    return f"// fake kernel: {name}\n"


def staged_case(order: tuple[str, ...]) -> tuple[object, object, np.ndarray]:
    config = dataclasses.replace(make_config("tiny", 1, 64, 16, 32), op="staged", dims={"rows": 8})
    before = None
    for stage in order:
        before = make_kernel(stage, f"{stage}.wgsl", "1", op="staged", stage=stage, text=_fake(stage), before=before)
    kernel = make_kernel("finish", "finish.wgsl", "1", op="staged", stage="finish", text=_fake("finish"),
                         before=before)
    return config, kernel, np.arange(8, dtype=np.float32)[None, :]


def _kernels() -> dict[str, object]:
    def load(views: Views) -> None:
        views[0](np.float32)[:] = views[1](np.float32)

    def double(views: Views) -> None:
        views[0](np.float32)[:] *= 2

    def finish(views: Views) -> None:
        views[0](np.float32)[:] = views[1](np.float32) + 1

    return {"load": load, "double": double, "finish": finish}


def test_a_chain_of_three_runs_in_order_on_the_shared_buffer(staged):
    """load, double, double, then finish: 4x + 1 only if every stage binds the one buffer `t` and runs in order."""
    config, kernel, x = staged_case(("load", "double", "double"))
    result, log = run_case(config, kernel, x, np.zeros(1, np.float32), 4 * x.astype(np.float64) + 1, _kernels())
    assert log == ["load", "double", "double", "finish"]
    assert result.status == "pass", result.message


@pytest.mark.parametrize("order", [("double", "load", "double"), ("load", "double")])
def test_a_chain_in_another_order_or_a_step_short_fails(staged, order):
    config, kernel, x = staged_case(order)
    result, log = run_case(config, kernel, x, np.zeros(1, np.float32), 4 * x.astype(np.float64) + 1, _kernels())
    assert log == [*order, "finish"]
    assert result.status == "fail", result.message


def test_a_kernel_names_the_template_variant_it_is(staged, tmp_path):
    """`variant`: the template variant a kernel set's kernel (or chain member) is expanded as; default its name."""
    text = CHAIN.replace('stage = "finish"\n', 'stage = "finish"\nvariant = "finish_f32"\n')
    (kernel,) = _load(tmp_path, text).kernels
    assert (kernel.variant_name, kernel.chain()[0].variant_name, kernel.chain()[1].variant_name) == \
        ("finish_f32", "load", "before")


def test_a_kernel_under_test_of_a_stage_that_writes_no_output_fails_saying_so(staged):
    """A kernel whose stage writes no output (load) as the kernel under test failed on Device.run's assert, a
    message naming no stage and no fix."""
    config, kernel, x = staged_case(("load", "double"))
    kernel = dataclasses.replace(kernel, stage="load")
    result, log = run_case(config, kernel, x, np.zeros(1, np.float32), 4 * x.astype(np.float64) + 1, _kernels())
    assert result.status == "fail" and log == []
    assert result.message.startswith("kernel 'finish' is stage 'load' of op 'staged', which writes no output to "
                                     "compare: give it the stage that writes the op's output in matrix.toml")


def test_a_kernel_sets_chain_of_two_is_read_whole_from_the_checkout(tmp_path):
    """A kernel set's kernel after two plain kernels: both read from the checkout, in order (only the last of a
    chain was resolved, the earlier ones dropped, and no offline test saw it)."""
    from q4gsw.export.kernel_sets import load_kernel_set
    from q4gsw.matrix.values import KernelSet

    folder = tmp_path / "et" / "ops"
    folder.mkdir(parents=True)
    for name in ("load", "double", "finish"):
        (folder / f"{name}.wgsl").write_text(_fake(name))
    first = make_kernel("load", "load.wgsl", "1", op="staged", stage="load")
    second = make_kernel("double", "double.wgsl", "1", op="staged", stage="double", before=first)
    spec = KernelSet("et", "ops", "gen.py", ("finish",),
                     (make_kernel("finish", "finish.wgsl", "1", op="staged", stage="finish", before=second),),
                     op="staged")
    loaded = load_kernel_set(spec, tmp_path / "et")
    assert loaded.missing == {}
    (kernel,) = loaded.kernels
    assert [(k.name, k.text, k.origin) for k in kernel.chain()] == [
        (name, _fake(name), f"executorch:{(tmp_path / 'et').resolve()}:ops/{name}.wgsl") for name in ("load", "double")]
    (folder / "load.wgsl").unlink()
    assert load_kernel_set(spec, tmp_path / "et").missing == {
        "finish": f"ops/load.wgsl (dispatched before it) is not in {(tmp_path / 'et').resolve()}"}


STAND_IN_GENERATOR = '''
def parse_template_spec(path):
    return {"load": [{"NAME": "load_f32", "DTYPE": "f32"}, {"NAME": "load_f16", "DTYPE": "f16"}]}


def preprocess(text, variables, input_path="codegen"):
    return text.replace("DTYPE", variables["DTYPE"])
'''


@pytest.mark.parametrize("variant", ["load_f16", "load_f64"])
def test_a_kernel_sets_templated_chain_member_is_generated_as_its_variant(tmp_path, variant):
    """The first of a chain of two is a template: the checkout's generator (a stand-in here) expands the variant it
    names; a variant its .yaml does not declare is that kernel's `missing` reason, naming the file and variant.
    (Only the last member of a chain was asked of the generator: the first read as 'not in the checkout'.)"""
    from q4gsw.export.kernel_sets import load_kernel_set
    from q4gsw.matrix.values import KernelSet

    checkout = tmp_path / "et"
    folder = checkout / "ops"
    folder.mkdir(parents=True)
    (checkout / "gen.py").write_text(STAND_IN_GENERATOR)
    (folder / "load.wgsl").write_text("// load as DTYPE\n")
    (folder / "load.yaml").write_text("load: {}\n")  # read by the stand-in's parse_template_spec only by name
    for name in ("double", "finish"):
        (folder / f"{name}.wgsl").write_text(_fake(name))
    first = make_kernel("load", "load.wgsl", "1", op="staged", stage="load", template="load", variant=variant)
    second = make_kernel("double", "double.wgsl", "1", op="staged", stage="double", before=first)
    spec = KernelSet("et", "ops", "gen.py", ("finish",),
                     (make_kernel("finish", "finish.wgsl", "1", op="staged", stage="finish", before=second),),
                     op="staged")
    loaded = load_kernel_set(spec, checkout)
    if variant == "load_f64":
        assert loaded.kernels == () and loaded.missing == {
            "finish": "ops/load.wgsl variant load_f64 (dispatched before it): load.yaml declares no variant NAME: "
                      "load_f64"}
        return
    assert loaded.missing == {}
    (kernel,) = loaded.kernels
    assert [k.text for k in kernel.chain()] == ["// load as f16\n", _fake("double")]
    assert kernel.chain()[0].origin.endswith("ops/load.wgsl variant load_f16 (generated)")
