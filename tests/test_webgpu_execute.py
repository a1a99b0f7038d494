"""WGSL adapted to the WebGPU implementation (q4gsw.webgpu.execute.adapt_source): `enable subgroups;` added for
Dawn's Tint, removed for wgpu-native's naga, and the matrix's subgroup kernels written for naga. No adapter needed."""

from q4gsw.matrix.load import load_matrix
from q4gsw.webgpu.execute import adapt_source

SUBGROUP_KERNEL = """// No `enable subgroups;`: a comment that mentions the directive is not the directive.
@compute @workgroup_size(64)
fn main(@builtin(subgroup_invocation_id) lane: u32) {
  let total = subgroupAdd(1.0);
}
"""


PLAIN_KERNEL = """@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  // subgroupAdd is named in a comment only
}
"""


def test_dawn_gets_enable_subgroups_when_subgroup_builtins_are_used():
    source, notes = adapt_source(SUBGROUP_KERNEL, "dawn")
    assert source == "enable subgroups;\n" + SUBGROUP_KERNEL
    assert notes == ("added `enable subgroups;` (Tint requires it)",)
    for builtin in ("subgroupBroadcast(x, 0u)", "subgroupShuffleXor (x, 1u)", "@builtin( subgroup_size) s: u32"):
        assert adapt_source(f"fn f() {{ {builtin}; }}", "dawn")[0].startswith("enable subgroups;\n"), builtin


def test_dawn_source_is_untouched_without_subgroups_or_with_the_directive():
    assert adapt_source(PLAIN_KERNEL, "dawn") == (PLAIN_KERNEL, ())
    enabled = "enable subgroups;\n" + SUBGROUP_KERNEL
    assert adapt_source(enabled, "dawn") == (enabled, ())


def test_wgpu_native_gets_enable_subgroups_removed():
    enabled = "enable f16;\n  enable subgroups;  // Tint needs it\n" + SUBGROUP_KERNEL
    source, notes = adapt_source(enabled, "wgpu-native")
    assert "enable f16;" in source and SUBGROUP_KERNEL in source
    assert not any(line.strip().startswith("enable subgroups") for line in source.splitlines())
    assert "// enable subgroups; (removed: naga 0.32 rejects it)" in source
    assert notes == ("removed `enable subgroups;` (naga in wgpu-native 0.32 rejects it)",)
    assert len(source.splitlines()) == len(enabled.splitlines())  # line numbers in compiler messages still match


def test_wgpu_native_source_without_the_directive_is_untouched():
    assert adapt_source(SUBGROUP_KERNEL, "wgpu-native") == (SUBGROUP_KERNEL, ())
    assert adapt_source(PLAIN_KERNEL, "wgpu-native") == (PLAIN_KERNEL, ())


def test_the_matrix_subgroup_kernels_are_written_for_naga():
    """The kernels in q4gsw/ops/linear_q4gsw/kernels carry no directive (naga rejects it); Dawn gets it added."""
    from conftest import MATRIX, REPO

    for kernel in load_matrix(MATRIX).kernels:
        if "subgroup" not in kernel.requires_features:
            continue
        source = kernel.source(REPO)
        assert adapt_source(source, "wgpu-native") == (source, ()), kernel.name
        assert adapt_source(source, "dawn")[1] == ("added `enable subgroups;` (Tint requires it)",), kernel.name

