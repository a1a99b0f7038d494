"""The one Vulkan lowering every op's recipe uses: torch.export, then ExecuTorch's partitioner, to .pte bytes.

It imports no op and no fixture code, so recipes (below the fixture store) import it without a circle."""

from __future__ import annotations

import functools
from typing import Any


def reuse_pattern_graphs() -> None:
    """Build the Vulkan partitioner's fusion-pattern graphs once per process instead of twice per export.

    They are model-independent templates (RoPE graphs and the like) that the partitioner and the Vulkan
    preprocess only match against (SubgraphMatcher); building them is ~9 of each export's ~11 s. With one
    export process per run (the run's one export process), every export after the first skips that. If ExecuTorch's
    registry changes shape, nothing is patched and exports are just slower."""
    try:
        from executorch.backends.vulkan.patterns.pattern_registry import fusable_patterns
    except ImportError:
        return
    for entry in fusable_patterns.values():
        build = getattr(entry, "get_graphs_fn", None)
        if build is not None and not hasattr(build, "cache_info"):
            entry.get_graphs_fn = functools.cache(build)


def lower_to_vulkan(model: Any, example: tuple[Any, ...]) -> bytes:
    """torch.export + to_edge_transform_and_lower with the Vulkan partitioner: the .pte bytes (every op's recipe)."""
    import torch
    from executorch.backends.vulkan.partitioner.vulkan_partitioner import VulkanPartitioner
    from executorch.exir import to_edge_transform_and_lower

    reuse_pattern_graphs()
    program = torch.export.export(model, example)
    return bytes(to_edge_transform_and_lower(program, partitioner=[VulkanPartitioner()]).to_executorch().buffer)
