"""Kernels from another project's tree (ExecuTorch's): read as that project's build would read them.

A kernel set declared in matrix.toml ([kernel_set.executorch]) names files relative to a folder of a
checkout. Plain .wgsl files are read as they are. A templated kernel (a .wgsl with a sibling .yaml)
is expanded with the checkout's own generator (backends/webgpu/scripts/gen_wgsl_headers.py), so what
is tested is what the build would embed; when the committed generated header (<NAME>_wgsl.h)
differs from the generated text, the kernel's notes say so, because the runtime compiles the header.
Nothing from the checkout is copied into q4gsw.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

from q4gsw.matrix import Kernel, KernelSet, MatrixError

_HEADER_TEXT = re.compile(r'R"\(\n(.*?)\)";', re.DOTALL)


@dataclass(frozen=True)
class LoadedKernelSet:
    spec: KernelSet
    checkout: Path
    kernels: tuple[Kernel, ...]  # those found, with their text
    missing: dict[str, str]  # kernel name -> what is missing from the tree
    notes: dict[str, str]  # kernel name -> a difference a kernel author should know (stale header, ...)


def _generator(checkout: Path, spec: KernelSet) -> ModuleType:
    path = checkout / spec.generator
    if not path.is_file():
        raise MatrixError("command line", f"kernel set '{spec.name}'", "--executorch",
                          f"{checkout} has no {spec.generator} (the template generator)",
                          "point --executorch at an ExecuTorch checkout (or a tree with its backends/webgpu layout)")
    module_spec = importlib.util.spec_from_file_location(f"q4gsw_generator_{spec.name}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # dataclasses in the generator look their module up by name
    try:
        module_spec.loader.exec_module(module)
    except ImportError as exc:
        raise MatrixError("command line", f"kernel set '{spec.name}'", "--executorch",
                          f"{path} needs a package that is not installed: {exc}",
                          "install it (PyYAML: pip install pyyaml) in the environment running q4gsw") from exc
    return module


def expand_template(generator: ModuleType, template: Path, variant: str) -> str:
    """The text the checkout's generator embeds for one variant of a template."""
    variants = generator.parse_template_spec(template.with_suffix(".yaml"))
    for params in variants.get(template.stem, []):
        if params.get("NAME") == variant:
            return str(generator.preprocess(template.read_text(), {**generator.WGSL_HELPERS, **params}))
    raise KeyError(f"{template.with_suffix('.yaml').name} declares no variant NAME: {variant}")


def committed_header_text(folder: Path, name: str) -> str | None:
    header = folder / f"{name}_wgsl.h"
    if not header.is_file():
        return None
    match = _HEADER_TEXT.search(header.read_text())
    return match.group(1) if match else None


def load_kernel_set(spec: KernelSet, checkout: Path) -> LoadedKernelSet:
    checkout = checkout.resolve()
    if not checkout.is_dir():
        raise MatrixError("command line", f"kernel set '{spec.name}'", "--executorch", f"{checkout} is not a folder",
                          "pass the path of an ExecuTorch checkout")
    folder = checkout / spec.folder
    if not folder.is_dir():
        raise MatrixError("command line", f"kernel set '{spec.name}'", "--executorch",
                          f"{checkout} has no {spec.folder}",
                          "point --executorch at an ExecuTorch checkout (or a tree with its backends/webgpu layout)")
    generator = None
    kernels, missing, notes = [], {}, {}
    for kernel in spec.kernels:
        path = folder / kernel.file
        if not path.is_file():
            missing[kernel.name] = f"{spec.folder}/{kernel.file} is not in {checkout}"
            continue
        if kernel.template:
            generator = generator or _generator(checkout, spec)
            try:
                text = expand_template(generator, path, kernel.name)
            except KeyError as exc:
                missing[kernel.name] = str(exc.args[0])
                continue
            origin = f"executorch:{checkout}:{spec.folder}/{kernel.file} variant {kernel.name} (generated)"
        else:
            text = path.read_text()
            origin = f"executorch:{checkout}:{spec.folder}/{kernel.file}"
        committed = committed_header_text(folder, kernel.name)
        if committed is not None and committed != text:
            notes[kernel.name] = (f"{kernel.name}_wgsl.h differs from the text generated from {kernel.file}: the "
                                  "runtime compiles the header; regenerate it with gen_wgsl_headers.py")
        kernels.append(replace(kernel, file=str(path), text=text, origin=origin,
                               notes=(notes[kernel.name],) if kernel.name in notes else ()))
    return LoadedKernelSet(spec=spec, checkout=checkout, kernels=tuple(kernels), missing=missing, notes=notes)
