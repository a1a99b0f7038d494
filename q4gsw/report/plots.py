"""PNG plots of a run (matplotlib, Agg backend): per-config |y - g| histograms and a headroom bar chart.

Plotting is optional: without matplotlib, write_plots returns no files and a note saying so, and
the run carries on. The histograms come from Result.errors.histogram (see q4gsw.report.histogram).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import queue
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from q4gsw.paths import OWNED_MARKER, NotOurs, is_plain_file, remove_owned_files
from q4gsw.report.junit import case_name
from q4gsw.report.result import Result

# FIT: the saved image is grown to hold every label (savefig's bbox_inches="tight"), never squeezed to the figure:
# fig.tight_layout() cannot fit long case names and says so with a UserWarning naming this file, which leaked
# into the run's output.
MISSING_MATPLOTLIB = "plots skipped: matplotlib is not installed (pip install 'q4gsw[report]')"
PLOTS_ENV = "Q4GSW_PLOTS"  # "0": no PNGs drawn (matplotlib not even loaded); the other reports are unchanged


def plots_switched_off() -> bool:
    """Q4GSW_PLOTS=0: the user asked for no plots (a CI job that keeps only results.json; the test suite's many
    runs, whose plots nobody looks at, each spent ~0.7 CPU s loading pyplot and drawing)."""
    return os.environ.get(PLOTS_ENV, "").strip() == "0"


def _load_pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


class HistogramsAhead:
    """Draws each config's error histogram on a niced background thread once the run has moved on to the next
    config, so the plots at the end only have to be written (~0.3 s each to draw: a cold llama run ended with
    ~3 s of them). Its thread first imports matplotlib (seconds on a cold virtualenv) while the run waits on
    its children. One thread draws at a time: write_plots calls finish() before it draws anything itself."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, tuple[Result, ...]] | None] = queue.Queue()
        self._drawn: dict[str, tuple[tuple[int, ...], bytes | None]] = {}
        self._config: str | None = None
        self._pending: list[Result] = []
        self._thread = threading.Thread(target=self._work, name="q4gsw-histograms-ahead", daemon=True)
        self._thread.start()

    def add(self, result: Result) -> None:
        """A result as the run records it. A child reports all of its config's results together, so a result of
        another config means the previous one is complete."""
        if result.config != self._config:
            self._submit()
            self._config = result.config
        self._pending.append(result)

    def finish(self) -> None:
        """Draw what is still pending and stop; afterwards only the caller draws."""
        if self._thread.is_alive():
            self._submit()
            self._queue.put(None)
            self._thread.join()

    def drawn(self, config: str, results: Sequence[Result]) -> tuple[bool, bytes | None]:
        """(True, PNG or None for no histogram) when the config was drawn from exactly these results."""
        key, png = self._drawn.get(config, ((), None))
        return (True, png) if key and key == tuple(map(id, results)) else (False, None)

    def _submit(self) -> None:
        if self._config is not None and self._pending:
            self._queue.put((self._config, tuple(self._pending)))
        self._pending = []

    def _work(self) -> None:
        with contextlib.suppress(OSError):  # Linux: this thread only, below the run's own work
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            plt = _load_pyplot()
        except ImportError:
            plt = None  # write_plots reports it
        while (item := self._queue.get()) is not None:
            config, results = item
            if plt is None:
                continue
            try:
                self._drawn[config] = (tuple(map(id, results)), _histogram_png(plt, config, results))
            except Exception:  # write_plots draws it again and reports the problem
                plt.close("all")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _runner(r: Result) -> str:
    """The backend and, where recorded, the WebGPU implementation: one bar series / legend entry each."""
    return f"{r.backend} ({r.webgpu})" if r.webgpu else r.backend


def _is_plot_name(name: str) -> bool:
    return re.fullmatch(r"error-hist-.*\.png|headroom\.png", name) is not None


def _only_our_plots(folder: Path) -> bool:
    """A plots folder from a q4gsw before the marker: only plain files with the PNG names q4gsw writes (a folder
    named like a plot is the user's: q4gsw writes files only)."""
    return all(_is_plot_name(p.name) and is_plain_file(p) for p in folder.iterdir())


def write_plots(out_dir: Path, results: Sequence[Result],
                ahead: HistogramsAhead | None = None) -> tuple[list[Path], list[str]]:
    """(PNG files written, notes for the reader), using the histograms `ahead` drew during the run where they
    are of the same results. Never raises for a plotting problem."""
    if ahead is not None:
        ahead.finish()
    plt: ModuleType | None = None
    # A run that compared nothing (every config failed before its comparison), or one told Q4GSW_PLOTS=0, draws
    # nothing: it does not load pyplot (~0.7 CPU s of every such run, and of the tests' many), yet still removes
    # an earlier run's plots.
    if any(r.errors is not None for r in results) and not plots_switched_off():
        try:
            plt = _load_pyplot()
        except ImportError:
            return [], [MISSING_MATPLOTLIB]
    written: list[Path] = []
    notes: list[str] = []
    # The plots of an earlier run here are removed first, so stale histograms never mix with new ones; only
    # the plain files named like q4gsw's plots go (remove_owned_files), in a folder q4gsw wrote (it refuses the
    # user's own plots/): anything else in it, e.g. a folder the user named error-hist-x.png, stays.
    try:
        remove_owned_files(out_dir, out_dir.parent, _is_plot_name, owned=_only_our_plots)
    except NotOurs as exc:
        return [], [f"plots not written: {exc}"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / OWNED_MARKER).write_text("plots written by q4gsw; the next run here replaces the plots in it\n")
    if plt is None:  # nothing was compared (each FAIL line says why), or Q4GSW_PLOTS=0: nothing drawn, no note
        return [], []
    configs = list(dict.fromkeys(r.config for r in results))
    for config in configs:
        mine = [r for r in results if r.config == config]
        try:
            drawn, png = ahead.drawn(config, mine) if ahead is not None else (False, None)
            if not drawn:
                png = _histogram_png(plt, config, mine)
            path = None
            if png is not None:
                path = out_dir / f"error-hist-{_safe(config)}.png"
                if path.exists() or path.is_symlink():  # left by the clean-up above: not a file q4gsw wrote
                    notes.append(f"histogram of {config} not written: {path} is not a file q4gsw wrote (move it "
                                 "away to get the plot)")
                    continue
                path.write_bytes(png)
        except Exception as exc:  # a plot must never cost the run its other reports
            notes.append(f"histogram of {config} not written: {type(exc).__name__}: {exc}")
            plt.close("all")
            continue
        if path is None:
            # Expected only where a case was compared (errors recorded): a config that failed before any
            # comparison (no adapter, crash, export) already says why in its FAIL line, once per config.
            if any(r.errors is not None for r in mine):
                notes.append(f"no error histogram for {config}: its compared cases recorded none (results "
                             "from an older q4gsw?)")
        else:
            written.append(path)
    try:
        path = _headroom(plt, out_dir / "headroom.png", results)
        if path is not None:
            written.append(path)
    except Exception as exc:
        notes.append(f"headroom chart not written: {type(exc).__name__}: {exc}")
        plt.close("all")
    return written, notes


def _histogram_png(plt: ModuleType, config: str, results: Sequence[Result]) -> bytes | None:
    series = [(r, r.errors.histogram) for r in results if r.errors is not None and r.errors.histogram.get("counts")]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    atols = set()
    for r, h in series:
        edges, counts = h["log10_edges"], h["counts"]
        extra = []
        if h.get("zero"):
            extra.append(f"{h['zero']} exact")
        if h.get("nonfinite"):
            extra.append(f"{h['nonfinite']} non-finite")
        label = f"{_runner(r)} · {r.kernel or '?'} · {r.input or '?'} [{r.status}]"
        if extra:
            label += f" (+{', '.join(extra)})"
        ax.stairs(counts, edges, label=label, linewidth=1.6)
        if r.tolerance is not None and r.tolerance.atol > 0:
            atols.add(float(r.tolerance.atol))
    for atol in sorted(atols):
        ax.axvline(math.log10(atol), color="red", linestyle="--", linewidth=1)
        ax.annotate(f"atol {atol:g}", (math.log10(atol), 1), xycoords=("data", "axes fraction"),
                    xytext=(3, -12), textcoords="offset points", color="red", fontsize=8)
    nonzero = [i for _, h in series for i, c in enumerate(h["counts"]) if c]
    edges = series[0][1]["log10_edges"]
    if nonzero:
        low = edges[max(min(nonzero) - 2, 0)]
        high = edges[min(max(nonzero) + 3, len(edges) - 1)]
        if atols:
            high = max(high, math.log10(max(atols)) + 1.0)
        ax.set_xlim(low, high)
    shape = series[0][0].shape.text
    dims = f" {shape}" if shape else ""
    ax.set_title(f"{config}{dims}: distribution of |y − g|")
    ax.set_xlabel("log10 |y − golden|")
    ax.set_ylabel("outputs")
    if nonzero:  # every output exact: no count to put on a log axis (matplotlib would warn, not draw)
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    png = io.BytesIO()
    fig.savefig(png, format="png", bbox_inches="tight")  # see FIT
    plt.close(fig)
    return png.getvalue()


def _headroom(plt: ModuleType, path: Path, results: Sequence[Result]) -> Path | None:
    measured = [r for r in results if r.errors is not None and isinstance(r.errors.headroom, int | float)]
    if not measured:
        return None
    cases = list(dict.fromkeys(case_name(r) for r in measured))
    backends = sorted({_runner(r) for r in measured})
    width = 0.8 / len(backends)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(cases) * max(1, len(backends)) ** 0.5 + 2), 4.8), dpi=100)
    finite = [float(r.headroom) for r in measured if math.isfinite(float(r.headroom))]
    positive = [v for v in finite if v > 0]
    floor = min([*positive, 1e-3]) / 3
    ceiling = max([*finite, 1.0]) * 3
    for b_index, backend in enumerate(backends):
        xs, heights, colors, values = [], [], [], []
        for c_index, case in enumerate(cases):
            match = [r for r in measured if _runner(r) == backend and case_name(r) == case]
            if not match:
                continue
            value = float(match[0].headroom)
            shown = ceiling if not math.isfinite(value) else max(value, floor)
            xs.append(c_index + (b_index - (len(backends) - 1) / 2) * width)
            heights.append(shown)
            values.append(value)
            colors.append("tab:red" if value > 1 or match[0].status == "fail" else None)
        bars = ax.bar(xs, heights, width=width * 0.95, label=backend, bottom=0)
        for bar, color, value in zip(bars, colors, values, strict=True):
            if color:
                bar.set_edgecolor(color)
                bar.set_linewidth(2)
            ax.annotate(f"{value:.2g}" if math.isfinite(value) else "inf",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                        textcoords="offset points", ha="center", fontsize=7)
    ax.axhline(1.0, color="red", linestyle="--", linewidth=1, label="tolerance (fails above 1)")
    ax.set_yscale("log")
    ax.set_ylim(floor, ceiling)
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("headroom = max |err| / (atol + rtol·|g|)")
    ax.set_title("Tolerance used per case and backend (lower is more margin)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, format="png", bbox_inches="tight")  # see FIT
    plt.close(fig)
    return path
