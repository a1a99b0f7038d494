"""What a run is asked to do: where its fixtures come from, its mode (check or bench), repeats, in process or not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from q4gsw.run.exporter import FixtureSource

Mode = Literal["check", "bench"]


@dataclass(frozen=True)
class RunOptions:
    fixtures: FixtureSource
    repeats: int = 1
    warmup_s: float | None = None  # bench: back-to-back load before timing a kernel (None: case.warmup_for's default)
    mode: Mode = "check"  # bench: synthetic problems from `seed` instead of fixtures, kernels timed
    seed: int = 0
    in_process: bool = False  # `run --in-process`: no child processes (IN_PROCESS_STAGES)

    @property
    def problem_seed(self) -> int | None:
        """The seed of bench's synthetic problems; None: the problems come from fixtures."""
        return self.seed if self.mode == "bench" else None

    @property
    def exports_into_cache(self) -> bool:
        """Fixtures come from the cache, exported there when missing (not `--fixtures DIR`, not bench)."""
        return self.mode == "check" and self.fixtures.fixtures is None
