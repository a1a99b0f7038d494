"""Kernels from another project's tree (ExecuTorch's): read as that project's build would read them.

A kernel set declared in matrix.toml ([kernel_set.executorch]) names files relative to a folder of a
checkout. Plain .wgsl files are read as they are. A templated kernel (a .wgsl with a sibling .yaml)
is expanded with the checkout's own generator (backends/webgpu/scripts/gen_wgsl_headers.py), so what
is tested is what the build would embed; when the committed generated header (<NAME>_wgsl.h)
differs from the generated text, the kernel's notes say so, because the runtime compiles the header.
Nothing from the checkout is copied into q4gsw. The generator is foreign code: it runs in a process of its own
(generator.py), so nothing it does can end or mislead the run; a generator that cannot be loaded is a
usage error, a variant it cannot generate fails that variant's cases with the reason.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from q4gsw.console import last_lines
from q4gsw.matrix.load import Kernel, KernelSet, MatrixError
from q4gsw.paths import NotOurs, job_folder, remove_owned

_HEADER_TEXT = re.compile(r'R"\(\n(.*?)\)";', re.DOTALL)


@dataclass(frozen=True)
class LoadedKernelSet:
    spec: KernelSet
    checkout: Path
    kernels: tuple[Kernel, ...]  # those found, with their text
    missing: dict[str, str]  # kernel name -> what is missing from the tree
    notes: dict[str, str]  # kernel name -> a difference a kernel author should know (stale header, ...)


GENERATOR_TIMEOUT_S = 120  # loading the generator and expanding a few templates takes well under a second


def _usage_error(spec: KernelSet, problem: str, fix: str) -> MatrixError:
    return MatrixError("command line", f"kernel set '{spec.name}'", "--executorch", problem, fix)


def _run_generator(checkout: Path, spec: KernelSet, templates: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """variant -> {"text": ...} or {"error": ...}, from the checkout's generator run in its own process
    (generator.py): no exit, exception, hang or output of it can end or mislead this run. A generator
    that cannot be loaded is a usage error naming it."""
    path = checkout / spec.generator
    if not path.is_file():
        raise _usage_error(spec, f"{checkout} has no {spec.generator} (the template generator)",
                           "point --executorch at an ExecuTorch checkout (or a tree with its backends/webgpu layout)")
    fix = f"fix or restore {spec.generator} in the checkout (`git -C {checkout} status` shows local changes)"
    folder = job_folder()  # removed below, or by a later run if this one is killed meanwhile
    try:
        job, out = folder / "job.json", folder / "out.json"
        job.write_text(json.dumps({"generator": str(path), "templates": templates}))
        try:
            done = subprocess.run([sys.executable, str(Path(__file__).with_name("generator.py")), str(job),
                                   str(out)], capture_output=True, stdin=subprocess.DEVNULL,
                                  timeout=GENERATOR_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise _usage_error(spec, f"{path} did not finish within {GENERATOR_TIMEOUT_S} s", fix) from None
        try:
            result = json.loads(out.read_text())
        except (OSError, ValueError):
            # The generator ended its process itself (os._exit, a crash) before handing anything back.
            said = last_lines((done.stdout + done.stderr).decode(errors="replace"))
            raise _usage_error(spec, f"{path} ended the process that loaded it (exit status {done.returncode}) "
                                     f"before generating anything; it printed: {said}", fix) from None
    finally:
        with contextlib.suppress(OSError, NotOurs):
            remove_owned(folder, folder.parent)
    if result["missing_module"]:
        raise _usage_error(spec, f"{path} needs a package that is not installed: {result['missing_module']}",
                           "install it (PyYAML: pip install pyyaml) in the environment running q4gsw")
    if result["load_error"]:
        raise _usage_error(spec, f"{path} cannot be loaded: {result['load_error']}", fix)
    printed = (result.get("printed", "") + (done.stdout + done.stderr).decode(errors="replace")).strip()
    if printed:  # shown labelled as the generator's, never as q4gsw's own output
        print(f"note: {spec.generator} printed: {last_lines(printed)}", file=sys.stderr, flush=True)
    return dict(result["variants"])


def _text(path: Path) -> str:
    """A kernel file's text, newlines as read_text() gives them; UnicodeDecodeError (a ValueError) names the first
    byte that is not UTF-8 (read_text() would decode with the locale's encoding, or raise from deep inside)."""
    return path.read_bytes().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def _unreadable(checkout: Path, relative: str, exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"{relative} in {checkout} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
    return f"{relative} in {checkout} cannot be read: {exc}"


def committed_header_text(folder: Path, name: str) -> str | None:
    header = folder / f"{name}_wgsl.h"
    if not header.is_file():
        return None
    # A header that is not UTF-8 cannot equal the generated text: read it replacing, and the note says it differs.
    match = _HEADER_TEXT.search(header.read_text(errors="replace"))
    return match.group(1) if match else None


def load_kernel_set(spec: KernelSet, checkout: Path) -> LoadedKernelSet:
    """The kernel set's kernels from the checkout. A problem of the tree as a whole (not a folder, no generator, a
    generator that cannot be loaded) is a MatrixError; a problem of one kernel (absent, not UTF-8, its template's
    spec missing or unreadable, a template expression that fails) is recorded in `missing` with the reason, and
    the run fails that kernel's cases with it."""
    checkout = checkout.resolve()
    if not checkout.is_dir():
        raise _usage_error(spec, f"{checkout} is not a folder", "pass the path of an ExecuTorch checkout")
    folder = checkout / spec.folder
    if not folder.is_dir():
        raise _usage_error(spec, f"{checkout} has no {spec.folder}",
                           "point --executorch at an ExecuTorch checkout (or a tree with its backends/webgpu layout)")
    texts: dict[str, str] = {}
    missing: dict[str, str] = {}
    templates: dict[str, dict[str, Any]] = {}  # by template file: what the generator is asked to expand
    for kernel in spec.kernels:
        path = folder / kernel.file
        relative = f"{spec.folder}/{kernel.file}"
        if not path.is_file():
            missing[kernel.name] = f"{relative} is not in {checkout}"
            continue
        try:
            text = _text(path)
        except (OSError, ValueError) as exc:
            missing[kernel.name] = _unreadable(checkout, relative, exc)
            continue
        if not kernel.template:
            texts[kernel.name] = text
        elif not path.with_suffix(".yaml").is_file():
            missing[kernel.name] = f"{relative[:-len(path.suffix)]}.yaml (its variant spec) is not in {checkout}"
        else:
            _ask_template(templates, path, text, kernel.file, kernel.variant_name)
        for first in kernel.chain():  # a templated kernel dispatched before it: its variant generated too
            first_path = folder / first.file
            if first.template and first_path.is_file() and first_path.with_suffix(".yaml").is_file():
                with contextlib.suppress(OSError, ValueError):  # unreadable: said when its chain is resolved
                    _ask_template(templates, first_path, _text(first_path), first.file, first.variant_name)
    generated = _run_generator(checkout, spec, list(templates.values())) if templates else {}
    kernels, notes = [], {}
    for kernel in spec.kernels:
        if kernel.name in missing:
            continue
        path = folder / kernel.file
        if kernel.template:
            outcome = generated.get(kernel.variant_name, {"error": "the generator returned nothing for it"})
            if "text" not in outcome:
                missing[kernel.name] = str(outcome.get("error"))
                continue
            text = outcome["text"]
            origin = f"executorch:{checkout}:{spec.folder}/{kernel.file} variant {kernel.variant_name} (generated)"
        else:
            text = texts[kernel.name]
            origin = f"executorch:{checkout}:{spec.folder}/{kernel.file}"
        committed = committed_header_text(folder, kernel.variant_name)
        if committed is not None and committed != text:
            notes[kernel.name] = (f"{kernel.variant_name}_wgsl.h differs from the text generated from {kernel.file}: "
                                  "the runtime compiles the header; regenerate it with gen_wgsl_headers.py")
        try:  # the kernels the runtime dispatches first, read from the same tree
            before = _resolve_chain(kernel.before, spec, checkout, generated)
        except LookupError as exc:
            missing[kernel.name] = str(exc)
            continue
        kernels.append(replace(kernel, file=str(path), text=text, origin=origin, before=before,
                               notes=(notes[kernel.name],) if kernel.name in notes else ()))
    return LoadedKernelSet(spec=spec, checkout=checkout, kernels=tuple(kernels), missing=missing, notes=notes)


def _ask_template(templates: dict[str, dict[str, Any]], path: Path, text: str, file: str, variant: str) -> None:
    """Ask the generator for `variant` of the template `file` (once, however many kernels name it)."""
    templates.setdefault(file, {"path": str(path), "yaml": str(path.with_suffix(".yaml")), "stem": path.stem,
                                "text": text, "variants": []})
    if variant not in templates[file]["variants"]:
        templates[file]["variants"].append(variant)


def _resolve_chain(before: Kernel | None, spec: KernelSet, checkout: Path,
                   generated: dict[str, dict[str, str]]) -> Kernel | None:
    """A kernel's chain (its `before`, and that one's ...) with each text read from the checkout: a plain file as
    it is, a templated one as the generator expanded its variant (the kernel's name). LookupError says what is
    missing."""
    if before is None:
        return None
    earlier = _resolve_chain(before.before, spec, checkout, generated)
    folder = checkout / spec.folder
    relative = f"{spec.folder}/{before.file}"
    if before.template:
        variant = before.variant_name
        outcome = generated.get(variant, {"error": f"{relative} or its .yaml is not in {checkout}"})
        if "text" not in outcome:
            raise LookupError(f"{relative} variant {variant} (dispatched before it): {outcome.get('error')}")
        text, origin = outcome["text"], f"executorch:{checkout}:{relative} variant {variant} (generated)"
    else:
        try:
            text, origin = _text(folder / before.file), f"executorch:{checkout}:{relative}"
        except (OSError, ValueError) as exc:
            raise LookupError(f"{relative} (dispatched before it) is not in {checkout}"
                              if isinstance(exc, FileNotFoundError) else _unreadable(checkout, relative, exc)) from None
    return replace(before, file=str(folder / before.file), text=text, origin=origin, before=earlier)


def load_checkout(matrix: Any, checkout: Path, wanted_ops: tuple[str, ...] = ()) -> list[LoadedKernelSet]:
    """Every kernel set of the matrix (one per op) read from the checkout, each said with what it found. A set
    whose op folder the checkout lacks (an older ExecuTorch) is said and left out, unless its op is wanted."""
    if not matrix.kernel_sets:
        raise MatrixError(matrix.path, "top level", "kernel_set", "none declared",
                          "declare [kernel_set.NAME] tables (see docs/executorch.md)")
    folders = sorted({spec.folder for spec in matrix.kernel_sets.values()})
    if checkout.is_dir() and not wanted_ops and not any((checkout / folder).is_dir() for folder in folders):
        # Not an older ExecuTorch but no checkout at all (a typo, the wrong folder): nothing would be checked.
        raise MatrixError("command line", "run", "--executorch", f"{checkout} has none of the kernel sets' folders "
                          f"({', '.join(folders)})", "pass the path of an ExecuTorch checkout")
    loaded_sets = []
    for spec in matrix.kernel_sets.values():
        if wanted_ops and spec.op not in wanted_ops:
            continue
        if checkout.is_dir() and not (checkout / spec.folder).is_dir() and spec.op not in wanted_ops:
            print(f"note: {checkout} has no {spec.folder}: op {spec.op} is not checked", flush=True)
            continue
        loaded = load_kernel_set(spec, checkout)
        print(f"{spec.name} kernels ({spec.op}) from {loaded.checkout}: {len(loaded.kernels)} found"
              f"{', missing: ' + ', '.join(loaded.missing) if loaded.missing else ''}", flush=True)
        for kernel, note in loaded.notes.items():
            print(f"note: {kernel}: {note}", flush=True)
        loaded_sets.append(loaded)
    return loaded_sets
