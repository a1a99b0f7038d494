from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from q4gsw.export import lowering
from q4gsw.export.fixtures import FixtureError, build_fixture, fixture_key, verify_fixture
from q4gsw.export.pte import DelegateLayoutError
from q4gsw.matrix.load import load_matrix
from q4gsw.ops.linear_q4gsw.layout import packed_from_delegate as read_pte
from q4gsw.ops.linear_q4gsw.layout import unpack_int4

pytestmark = pytest.mark.e2e


def test_fixture_key_changes_with_everything_that_determines_the_bytes(tiny_matrix: Path):
    config = load_matrix(tiny_matrix).config("tiny_gemm")
    keys = {fixture_key(config)}
    dims = [{"M": 6}, {"K": 128}, {"N": 48}, {"group_size": 16}]
    changes = [{"dims": {**config.dims, **d}} for d in dims] + [{"weight_seed": 1}, {"inputs": ("normal",)}]
    for change in changes:
        keys.add(fixture_key(dataclasses.replace(config, **change)))
    assert len(keys) == 7
    assert fixture_key(dataclasses.replace(config, name="renamed", tier="heavy")) == fixture_key(config)


def test_build_fixture_unpacks_the_delegate_and_cross_checks(tiny_matrix: Path, tmp_path: Path):
    config = load_matrix(tiny_matrix).config("tiny_gemm")
    fixture = build_fixture(config, tmp_path / "fx", progress=lambda message: None)
    assert fixture.manifest["cross_checked"] is True
    packed = fixture.constants(config)
    assert packed.weight_packed.shape == (40, 48) and packed.scales.shape == (3, 40) and packed.group_size == 32
    # Independent check against torchao's own quantized tensor and the .pte bytes on disk.
    import torch
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    from q4gsw.ops.inputs import make_weights

    model = torch.nn.Linear(96, 40, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(make_weights("linear_init", 40, 96, 32, 0)))
    quantize_(model, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32)))
    assert np.array_equal(unpack_int4(packed.weight_packed), model.weight.qdata.numpy())
    dequantized = model.weight.dequantize().double().numpy()
    np.testing.assert_allclose(packed.dequantized_rows(0, 40), dequantized, rtol=0, atol=1e-7)
    reread = read_pte((tmp_path / "fx" / "model.pte").read_bytes())
    assert np.array_equal(reread.weight_packed, packed.weight_packed)
    # A fixture for another shape must not be accepted for this config.
    with pytest.raises(FixtureError, match="K=96 but config"):
        verify_fixture(tmp_path / "fx", dataclasses.replace(config, dims={**config.dims, "K": 128}))
    assert not list(tmp_path.glob(".tmp-*")), "temporary export directory left behind"


def test_non_delegated_pte_is_rejected():
    import torch
    from executorch.exir import to_edge_transform_and_lower

    model = torch.nn.Linear(64, 8, bias=False)
    program = torch.export.export(model, (torch.zeros(1, 64),))
    pte = to_edge_transform_and_lower(program).to_executorch().buffer  # no Vulkan partitioner
    with pytest.raises(DelegateLayoutError, match="VulkanBackend"):
        read_pte(bytes(pte))


def test_reused_pattern_graphs_do_not_change_the_pte(tiny_matrix: Path):
    """The exporter builds the partitioner's fusion-pattern graphs once per process (reuse_pattern_graphs):
    the .pte lowered with the cached patterns is byte-identical to one lowered with freshly built ones."""
    from unittest import mock

    from executorch.backends.vulkan.patterns.pattern_registry import fusable_patterns

    from q4gsw.ops.linear_q4gsw import recipe

    config = load_matrix(tiny_matrix).configs[0]
    cached, _ = recipe.export_pte(config)  # installs the cache if an earlier export has not
    builders = {name: entry.get_graphs_fn for name, entry in fusable_patterns.items()}
    assert any(hasattr(fn, "cache_info") for fn in builders.values() if fn is not None)
    try:
        for entry in fusable_patterns.values():
            entry.get_graphs_fn = getattr(entry.get_graphs_fn, "__wrapped__", entry.get_graphs_fn)
        with mock.patch.object(lowering, "reuse_pattern_graphs", lambda: None):
            fresh, _ = recipe.export_pte(config)
    finally:
        for name, entry in fusable_patterns.items():
            entry.get_graphs_fn = builders[name]
    assert fresh == cached
