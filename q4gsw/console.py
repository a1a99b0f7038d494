"""The run's console: one elapsed clock shared by the parent and every child."""

from __future__ import annotations

import os
import time

CLOCK_ENV = "Q4GSW_RUN_STARTED"  # epoch seconds: children print the run's clock, not their own


def stamped(message: str, indent: str = "") -> str:
    """The message after the run's clock: `[  12.3s] message`."""
    started = float(os.environ.setdefault(CLOCK_ENV, repr(time.time())))
    return f"[{time.time() - started:7.1f}s] {indent}{message}"


def say(message: str, indent: str = "") -> None:
    """One elapsed clock for the whole run, in the parent and every child."""
    print(stamped(message, indent), flush=True)


def last_lines(text: str, count: int = 3) -> str:
    """The last `count` non-empty lines of a log, joined with ' | ' (noise about XDG_RUNTIME_DIR left out)."""
    lines = [line for line in text.strip().splitlines() if line.strip() and "XDG_RUNTIME_DIR" not in line]
    return " | ".join(lines[-count:]) if lines else "(no output)"
