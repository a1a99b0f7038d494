"""Runs another project's template generator (ExecuTorch's gen_wgsl_headers.py) in a process of its own.

The generator is foreign code: loading it runs whatever its module does (sys.exit, os._exit, prints, raising).
kernel_sets.py therefore never imports it; it runs this file as a script,

    python generator.py JOB.json OUT.json

and reads OUT.json back. The job names the generator and, per template, its variant spec (.yaml), its text and
the variants wanted. OUT.json holds a load problem, or per variant its generated text or why it could not be
generated; what the generator printed is returned, never shown as ours. Standard library only, no q4gsw import:
it starts in a fraction of a second, and nothing the generator does reaches the run's process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
from pathlib import Path
from typing import Any


def describe(exc: BaseException) -> str:
    """One line for anything the generator raised, SystemExit included (an exit is no success here)."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {' | '.join(lines[-3:])}" if lines else type(exc).__name__


def load(generator: str) -> Any:
    spec = importlib.util.spec_from_file_location("q4gsw_foreign_generator", generator)
    if spec is None or spec.loader is None:
        raise ImportError(f"{generator} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in the generator look their module up by name
    spec.loader.exec_module(module)
    for name in ("parse_template_spec", "preprocess"):
        if not callable(getattr(module, name, None)):
            raise AttributeError(f"it defines no {name}() (not the template generator q4gsw knows)")
    return module


def expand(module: Any, template: dict[str, Any]) -> dict[str, dict[str, str]]:
    """variant -> {"text": ...} or {"error": ...} for one template."""
    yaml_name = Path(template["yaml"]).name
    try:
        declared = module.parse_template_spec(template["yaml"])
        params = {str(p.get("NAME")): p for p in declared.get(template["stem"], [])}
    except BaseException as exc:  # foreign code: anything, an exit included, fails these variants
        return {v: {"error": f"{yaml_name}: the generator cannot read it: {describe(exc)}"}
                for v in template["variants"]}
    helpers = getattr(module, "WGSL_HELPERS", {})
    found: dict[str, dict[str, str]] = {}
    for variant in template["variants"]:
        if variant not in params:
            found[variant] = {"error": f"{yaml_name} declares no variant NAME: {variant}"}
            continue
        try:
            text = module.preprocess(template["text"], {**(helpers if isinstance(helpers, dict) else {}),
                                                        **params[variant]})
            found[variant] = {"text": str(text)}
        except BaseException as exc:  # a bad expression in the template fails this variant
            found[variant] = {"error": f"{Path(template['path']).name} variant {variant}: the generator failed: "
                                       f"{describe(exc)}"}
    return found


def main(job_path: str, out_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    result: dict[str, Any] = {"load_error": "", "missing_module": "", "variants": {}}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        try:
            module = load(job["generator"])
        except ImportError as exc:
            result["missing_module"] = describe(exc)
        except BaseException as exc:  # an exit or an error while loading: the parent says which
            result["load_error"] = describe(exc)
        else:
            for template in job["templates"]:
                result["variants"].update(expand(module, template))
    result["printed"] = printed.getvalue()[-4000:]
    Path(out_path).write_text(json.dumps(result))
    os._exit(0)  # now: no atexit handler or thread of the generator decides how this process ends


if __name__ == "__main__":
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)  # q4gsw's own folder must not shadow what the generator imports
    main(sys.argv[1], sys.argv[2])
