"""An op is its folder (issue 28, step 2): q4gsw/ops/<name>/ or a folder under $Q4GSW_OPS_PATH is found with nothing
edited elsewhere, and a folder q4gsw cannot use is one line naming it and the fix."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from helpers import assert_clean_usage_error

import q4gsw.ops
from q4gsw.matrix.load import MatrixError, load_matrix
from q4gsw.ops import OPS_PATH, OpFolderError, registry

SHIPPED = {"linear_q4gsw", "linear_dq8ca_q4gsw", "linear_qcs4w", "embedding_q4gsw", "rms_norm", "sdpa", "add", "rope",
           "swiglu"}

# The least op that imports: every abstract method written, nothing else (its behaviour is not under test here).
TINY_OP = '''
from q4gsw.ops.base import Op


class {cls}(Op):
    name = {name!r}
    operator = "test.{name}"
    constant_files = ("table.npy",)
    dims = ()
''' + "".join(f"\n    def {m}(self, *args, **kwargs):\n        raise NotImplementedError\n" for m in sorted(
    m for m in q4gsw.ops.Op.__abstractmethods__))


SWIFTSHADER_ONLY = ('schema_version = 1\n\n[backend.swiftshader]\napi = "Vulkan"\nadapter_name = "SwiftShader"\n'
                    'device_type = "CPU"\nprovision = "swiftshader"\n\n')


@pytest.fixture
def extra_ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder of extra op folders on $Q4GSW_OPS_PATH; the registry is rebuilt before and after."""
    root = tmp_path / "extra_ops"
    root.mkdir()
    monkeypatch.setenv(OPS_PATH, str(root))
    path = list(q4gsw.ops.__path__)
    registry.cache_clear()
    yield root
    registry.cache_clear()
    q4gsw.ops.__path__[:] = path
    for name in [m for m in sys.modules if m.startswith("q4gsw.ops.") and m.split(".")[2] not in SHIPPED
                 and m.split(".")[2] not in ("base", "inputs", "error_model", "linear_common")]:
        del sys.modules[name]


def _op(root: Path, folder: str, text: str) -> Path:
    (root / folder).mkdir()
    (root / folder / "__init__.py").write_text(text)
    return root / folder


def test_the_shipped_ops_are_their_folders():
    assert set(registry()) == SHIPPED
    assert all(op.folder == Path(q4gsw.ops.__file__).parent / name for name, op in registry().items())


def test_an_op_folder_on_the_ops_path_is_found_with_nothing_else_edited(extra_ops):
    folder = _op(extra_ops, "tiny_op", TINY_OP.format(cls="TinyOp", name="tiny_op"))
    (folder / "helper.py").write_text("VALUE = 7\n")  # an op's own modules import as q4gsw.ops.tiny_op.helper
    (folder / "__init__.py").write_text((folder / "__init__.py").read_text() + "\nfrom .helper import VALUE\n")
    ops = registry()
    assert set(ops) == SHIPPED | {"tiny_op"}
    assert ops["tiny_op"].folder == folder.resolve()
    assert not ops["tiny_op"].has_export_recipe and ops["linear_q4gsw"].has_export_recipe
    assert ops["tiny_op"].executorch_folder is None and ops["tiny_op"].mutation_suite() is None


@pytest.mark.parametrize(("folder", "text", "problem", "fix"), [
    ("no_init", None, "no __init__.py", "add __init__.py defining the op's Op subclass"),
    ("no_op", "X = 1\n", "__init__.py defines no Op subclass", "define `class ...(Op)`"),
    ("no_dims", TINY_OP.format(cls="NoDims", name="no_dims").replace("    dims = ()\n", ""),
     "its Op NoDims declares dims = None", "declare its dimensions as dims = (Dim(name, meaning), ...)"),
    ("twice_dims", TINY_OP.format(cls="Twice", name="twice_dims").replace(
        "    dims = ()\n", "    dims = (Dim('n', 'rows'), Dim('n', 'again'))\n").replace(
        "from q4gsw.ops.base import Op", "from q4gsw.matrix.values import Dim\nfrom q4gsw.ops.base import Op"),
     "declares dims = (Dim(name='n'", "each name once"),
    ("half_op", "from q4gsw.ops.base import Op\n\n\nclass Half(Op):\n    name = 'half_op'\n",
     "Half leaves abstract methods unwritten", "define `class ...(Op)` with every abstract method"),
    ("two_ops", TINY_OP.format(cls="A", name="two_ops") + TINY_OP.format(cls="B", name="two_ops"),
     "defines 2 Op subclasses (A, B)", "keep one op per folder"),
    ("misnamed", TINY_OP.format(cls="Misnamed", name="other"), "has name = 'other'", "set name = 'misnamed'"),
    ("broken", "import q4gsw_no_such_module\n", "importing it failed: ModuleNotFoundError",
     "python -c 'import q4gsw.ops as o; o.registry()' shows the traceback"),
    ("linear_q4gsw", TINY_OP.format(cls="Twin", name="linear_q4gsw"), "an op of this name is also in",
     "rename one of the two folders"),
    # hostile pass: creating the Op raised a traceback (exit 1); a sys.exit at import ended q4gsw with no line
    ("init_raises", TINY_OP.format(cls="Raises", name="init_raises") + "\n    def __init__(self):\n"
     "        raise ValueError('boom')\n", "creating its Op Raises() failed: ValueError: boom", "fix the op's code"),
    ("exits", "import sys\nsys.exit(3)\n", "importing it failed: SystemExit: 3", "fix the op's code"),
    *((f"dim_{label}", TINY_OP.format(cls="BadDim", name=f"dim_{label}").replace(
        "    dims = ()\n", f"    dims = ({dim},)\n").replace(
        "from q4gsw.ops.base import Op", "from q4gsw.matrix.values import Dim\nfrom q4gsw.ops.base import Op"),
       "declares dims = (", "a name is a Python identifier") for label, dim in (
        ("not_identifier", "Dim('2x', 'rows')"), ("keyword", "Dim('if', 'rows')"),
        ("runtime_option", "Dim('f16_accumulate_gemm', 'rows')"), ("text_minimum", "Dim('rows', 'rows', 'one')"))),
])
def test_a_folder_that_is_no_usable_op_is_named_with_the_fix(extra_ops, folder, text, problem, fix):
    if text is None:
        (extra_ops / folder / "kernels").mkdir(parents=True)
    else:
        _op(extra_ops, folder, text)
    with pytest.raises(OpFolderError) as caught:
        registry()
    message = str(caught.value)
    assert message.startswith(f"{extra_ops / folder}: op folder '{folder}': ") and "\n" not in message
    assert problem in message and fix in message


def test_a_kernel_set_of_an_op_without_an_executorch_folder_must_name_its_folder(extra_ops, tmp_path):
    _op(extra_ops, "tiny_op", TINY_OP.format(cls="TinyOp", name="tiny_op"))
    matrix = tmp_path / "matrix.toml"
    (tmp_path / "k.wgsl").write_text("")
    matrix.write_text(SWIFTSHADER_ONLY + '[kernel.k]\nop = "tiny_op"\nfile = "k.wgsl"\nwhen = "1"\ndispatch = "1"\n\n'
                      '[kernel_set.tiny]\nop = "tiny_op"\ngenerator = "gen.py"\nroute = ["k"]\n\n'
                      '[kernel_set.tiny.kernel.k]\nfile = "k.wgsl"\nwhen = "1"\ndispatch = "1"\n')
    with pytest.raises(MatrixError, match=r"\[kernel_set.tiny\]: key 'folder': missing \(op tiny_op has none\) — "
                                          r'add folder = "PATH/IN/CHECKOUT"'):
        load_matrix(matrix)


def test_a_folder_left_with_only_bytecode_is_no_op(extra_ops):
    (extra_ops / "deleted_op" / "__pycache__").mkdir(parents=True)  # what a branch switch leaves of an op
    assert set(registry()) == SHIPPED


def test_an_ops_path_that_is_not_a_folder_is_named(extra_ops, monkeypatch):
    monkeypatch.setenv(OPS_PATH, str(extra_ops / "absent"))
    with pytest.raises(OpFolderError, match=r"absent: op folder 'absent': \$Q4GSW_OPS_PATH names it but it is not a "
                                            r"folder — create it or take it out of \$Q4GSW_OPS_PATH"):
        registry()


def test_a_broken_op_folder_is_one_line_and_exit_2_for_every_command(tmp_path):
    (tmp_path / "ops" / "broken").mkdir(parents=True)
    (tmp_path / "ops" / "broken" / "__init__.py").write_text("raise RuntimeError('half written')\n")
    for command in (["validate"], ["list"], ["mutants", "--list"]):
        done = run_cli(*command, env={OPS_PATH: str(tmp_path / "ops")})
        assert_clean_usage_error(done, f"{tmp_path / 'ops' / 'broken'}: op folder 'broken': importing it failed: "
                                       "RuntimeError: half written")


def test_an_op_folder_that_exits_at_import_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "ops" / "quits").mkdir(parents=True)
    (tmp_path / "ops" / "quits" / "__init__.py").write_text("import sys\nsys.exit(0)\n")  # exited 0: a false green
    done = run_cli("validate", env={OPS_PATH: str(tmp_path / "ops")})
    assert_clean_usage_error(done, f"{tmp_path / 'ops' / 'quits'}: op folder 'quits': importing it failed: "
                                   "SystemExit: 0")


WALKTHROUGH = REPO / "docs" / "ops.md"
BLOCK = re.compile(r"```(?:python|wgsl|toml)\n(?:#|//) (\S+)\n(.*?)```", re.S)


def _walkthrough(root: Path) -> dict[str, str]:
    """docs/ops.md's walk-through blocks (each opens with a comment naming its file), written under root as they
    are; matrix.toml gets a header and the SwiftShader backend in front of the rows the docs add."""
    blocks = dict(BLOCK.findall(WALKTHROUGH.read_text()))
    assert set(blocks) == {"my_ops/rms_rows/__init__.py", "my_ops/rms_rows/kernels/rms_rows.wgsl", "matrix.toml"}
    blocks["matrix.toml"] = SWIFTSHADER_ONLY + blocks["matrix.toml"]
    for name, text in blocks.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return blocks


@pytest.mark.e2e
def test_the_walkthrough_op_runs_end_to_end(swiftshader_env, fixture_cache, tmp_path):
    """One folder + matrix.toml rows, nothing else: docs/ops.md's rms_rows (dims rows and width, no export recipe,
    no ExecuTorch kernels, no mutation suite) in a temporary folder on $Q4GSW_OPS_PATH is validated, listed in its
    own words, exported from the constants it builds and run on SwiftShader; a kernel that forgets the gain fails
    on the same config, so the pass is the comparison's, not a run that checked nothing."""
    blocks = _walkthrough(tmp_path)
    wrong = blocks["my_ops/rms_rows/kernels/rms_rows.wgsl"].replace("* scale * gain[i]", "* scale")
    (tmp_path / "wrong.wgsl").write_text(wrong)
    with (tmp_path / "matrix.toml").open("a") as matrix:
        matrix.write('\n[kernel.forgets_gain]\nop = "rms_rows"\nfile = "wrong.wgsl"\nwhen = "1"\n'
                     'dispatch = "ceil(rows / 64)"\n')
    env = {OPS_PATH: str(tmp_path / "my_ops"), "Q4GSW_CACHE": str(fixture_cache)}
    matrix = ["--matrix", str(tmp_path / "matrix.toml")]

    validated = run_cli("validate", *matrix, env=env, cwd=tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    listed = run_cli("list", *matrix, env=env, cwd=tmp_path)
    assert listed.returncode == 0 and "rows=5 width=96" in listed.stdout, listed.stdout + listed.stderr
    out = tmp_path / "results"
    ran = run_cli("run", *matrix, "--backend", "swiftshader", "--config", "rms_small", "--results", str(out), env=env,
                  cwd=tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr  # the wrong kernel fails; the right one passes
    results = {r["kernel"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    assert set(results) == {"rms_rows_ref", "forgets_gain"}
    good, bad = results["rms_rows_ref"], results["forgets_gain"]
    assert good["status"] == "pass" and good["op"] == "rms_rows" and good["errors"]["mismatches"] == 0, good
    assert good["errors"]["max_abs"] > 0 and good["errors"]["headroom"] <= 1
    assert bad["status"] == "fail" and "elements out of tolerance" in bad["message"], bad
    fixtures = fixture_cache / "fixtures"  # q4gsw.paths.fixture_cache under $Q4GSW_CACHE
    (fixture,) = [p for p in fixtures.iterdir() if p.name.startswith("rms_small-") and p.is_dir()]
    manifest = json.loads((fixture / "manifest.json").read_text())
    assert manifest["op"] == "rms_rows" and manifest["cross_checked"] is False
    assert set(manifest["files"]) == {"gain.npy", "golden-normal.npy"}  # no .pte: the op has no export recipe


def test_a_hidden_folder_on_the_ops_path_is_no_op(extra_ops):
    """Hostile pass (issue 28, a surviving mutant): a '.name' folder (an editor's, a VCS's) is not imported."""
    _op(extra_ops, ".hidden", "raise RuntimeError('not an op')\n")
    assert set(registry()) == SHIPPED


def test_an_op_defined_in_a_module_of_its_folder_is_found(extra_ops):
    """Hostile pass (issue 28, a surviving mutant): the Op may live in the folder's own module, imported by
    __init__.py (docs/ops.md)."""
    folder = _op(extra_ops, "split_op", "from .op import SplitOp\n")
    (folder / "op.py").write_text(TINY_OP.format(cls="SplitOp", name="split_op"))
    assert type(registry()["split_op"]).__name__ == "SplitOp"


def test_expressions_are_first_checked_with_every_dim_at_least_its_minimum(extra_ops):
    """Hostile pass (issue 28, a surviving mutant): a dim whose minimum is above the placeholder 64 is checked at its
    minimum, or `validate` would evaluate a kernel's expressions for a shape no config may have."""
    _op(extra_ops, "wide_op", TINY_OP.format(cls="WideOp", name="wide_op").replace(
        "    dims = ()\n", "    dims = (Dim('rows', 'rows'), Dim('width', 'elements of a row', 128))\n").replace(
        "from q4gsw.ops.base import Op", "from q4gsw.matrix.values import Dim\nfrom q4gsw.ops.base import Op"))
    assert q4gsw.ops.placeholder_names("wide_op") == {"rows": 64, "width": 128, "f16_accumulate_gemm": 0}
