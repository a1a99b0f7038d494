"""A run's cold-start machinery, in one module imported only when it is on: warm spare children.

A config's GPU child starts *warm*, before its fixture is in: it imports wgpu, opens its device, builds its
first kernel's pipeline on a tiny problem and makes one empty dispatch, then waits for the line naming its
fixture. Once a config's fixture is in, the children of the next SPARES_AHEAD configs start
(BENCH_SPARES_AHEAD in bench mode, which times kernels: as little beside them as possible).

`Q4GSW_PREWARM` switches it: unset or `1` on; `0` or empty off (then one child per config, started only when its
fixture is in, and this module is not even imported); `spares` names it. An unknown name is a usage error (exit 2)
naming the variable. The mechanisms measured and removed (nice while exporting, bytecode compiled ahead) are in
docs/speed.md with the measurements that decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from q4gsw.run.procs import PREWARM_ENV, ChildPolicy

MECHANISMS = ("spares",)
SPARES_AHEAD = 4  # configs whose children start while one runs (each ~150 MB until its fixture)
BENCH_SPARES_AHEAD = 1  # bench times kernels: one spare at a time, as little beside the timed work as possible


class PrewarmSwitchError(ValueError):
    """Q4GSW_PREWARM names something that is not a mechanism; the message says what it accepts."""


@dataclass(frozen=True)
class Prewarm:
    """Which cold-start mechanisms are on."""

    spares: bool = True

    def policy(self, mode: Literal["check", "bench"]) -> ChildPolicy:
        spares = (BENCH_SPARES_AHEAD if mode == "bench" else SPARES_AHEAD) if self.spares else 0
        return ChildPolicy(spares_ahead=spares)


def parse_switch(text: str | None) -> Prewarm:
    """Q4GSW_PREWARM's value: None or "1" all on, "0" or "" (or only commas) all off, else the mechanisms named."""
    if text is None or text.strip() == "1":
        return Prewarm()
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["0"]:
        names = []
    unknown = [name for name in names if name not in MECHANISMS]
    if unknown:
        raise PrewarmSwitchError(f"{PREWARM_ENV}={text!r}: unknown mechanism {', '.join(map(repr, unknown))}; "
                                 f"use 1 (on), 0 (off) or a comma list of {', '.join(MECHANISMS)}")
    return Prewarm(**{name: name in names for name in MECHANISMS})
