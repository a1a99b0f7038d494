"""The ops q4gsw checks, by name: `op_for(config)` is how every stage reaches what is specific to an op.

The interface is q4gsw.ops.base.Op; each op is one folder here (q4gsw/ops/<name>/) registered below.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from q4gsw.matrix.values import Config
from q4gsw.ops.base import Op


@functools.cache
def registry() -> Mapping[str, Op]:
    """name -> Op. Imported on first use, so `import q4gsw.ops` stays light (no numpy-heavy op code)."""
    from q4gsw.ops.embedding_q4gsw import EmbeddingQ4gsw
    from q4gsw.ops.linear_dq8ca_q4gsw import LinearDq8caQ4gsw
    from q4gsw.ops.linear_q4gsw import LinearQ4gsw
    from q4gsw.ops.linear_qcs4w import LinearQcs4w

    return {op.name: op for op in (LinearQ4gsw(), LinearDq8caQ4gsw(), LinearQcs4w(), EmbeddingQ4gsw())}


def op_names() -> tuple[str, ...]:
    return tuple(registry())


def op_for(config_or_name: Config | str) -> Op:
    """The Op of a config (or by name); KeyError names the known ops."""
    name = config_or_name if isinstance(config_or_name, str) else config_or_name.op
    try:
        return registry()[name]
    except KeyError:
        raise KeyError(f"unknown op '{name}': known ops are {', '.join(sorted(registry()))}") from None
