"""Op sdpa end to end on SwiftShader (small: the whole file is a few runs of tiny configs):

- q4gsw's reference chain (update_k, update_v, attn_weights, softmax, compute_out) passes the tiny fp32 and fp16-KV
  configs (the fp16 cache as u32 pairs: no shader-f16 needed);
- ExecuTorch's own kernels, read from a checkout ($Q4GSW_EXECUTORCH, else /work/et; skipped without one) and
  copied into a temporary tree, pass through Dawn as its host routes them: FlashDecoding for a decode step, the
  materialised route with --all-variants; a bug planted in the copy's update_cache (the step's k and v written one
  row late, a cache written at the wrong position) turns both into failures.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

pytestmark = pytest.mark.e2e
OPS = "backends/webgpu/runtime/ops"
FOLDERS = ("sdpa", "sdpa_fd_decode", "update_cache")
GENERATOR = "backends/webgpu/scripts"


def _checkout() -> Path:
    root = Path(os.environ.get("Q4GSW_EXECUTORCH", "/work/et"))
    if not all((root / OPS / f).is_dir() for f in FOLDERS) or not (root / GENERATOR).is_dir():
        pytest.skip(f"no ExecuTorch checkout with {', '.join(FOLDERS)} at {root} (set Q4GSW_EXECUTORCH)")
    return root


def _results(folder: Path) -> list[dict]:
    path = folder / "results.json"
    assert path.is_file()
    return [r for r in json.loads(path.read_text())["results"] if r["status"] != "skip"]


def test_the_reference_chain_passes_fp32_and_fp16_caches(swiftshader_icd, tmp_path):
    done = run_cli("run", "--in-process", "--backend", "swiftshader", "--config", "sdpa_tiny", "--config",
                   "sdpa_tiny_f16", "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "r"),
                   env=swiftshader_icd)
    results = _results(tmp_path / "r")
    assert done.returncode == 0, done.stdout[-3000:]
    assert {(r["config"], r["kernel"], r["status"]) for r in results} == {
        ("sdpa_tiny", "sdpa_ref", "pass"), ("sdpa_tiny_f16", "sdpa_ref", "pass")}
    assert all(r["errors"]["guard_violations"] == 0 for r in results)


def test_executorchs_kernels_pass_as_routed_and_a_planted_bug_fails(swiftshader_icd, tmp_path):
    tree = tmp_path / "executorch"
    for folder in FOLDERS:
        shutil.copytree(_checkout() / OPS / folder, tree / OPS / folder)
    shutil.copytree(_checkout() / GENERATOR, tree / GENERATOR)

    def run(results: str) -> tuple[int, list[dict], str]:
        done = run_cli("run", "--in-process", "--executorch", str(tree), "--backend", "swiftshader-dawn",
                       "--all-variants", "--config", "sdpa_tiny_decode", "--cache", str(tmp_path / "cache"),
                       "--results", str(tmp_path / results), env=swiftshader_icd)
        return done.returncode, _results(tmp_path / results), done.stdout

    code, results, out = run("good")
    assert code == 0, out[-3000:]
    # context 71: FlashDecoding's 2 splits of 36 (routed), and the materialised route (--all-variants)
    assert {(r["kernel"], r["routed"], r["status"]) for r in results} == {
        ("sdpa_fd_reduce", "sdpa_fd_reduce", "pass"), ("sdpa_compute_out", "sdpa_fd_reduce", "pass")}
    assert "route: sdpa_tiny_decode -> sdpa_fd_reduce" in out

    update = tree / OPS / "update_cache" / "update_cache.wgsl"
    text = update.read_text()
    assert text.count("t_cache[params.dst_offset + i]") == 2  # the float and the half variant's store
    update.write_text(text.replace("t_cache[params.dst_offset + i]", "t_cache[params.dst_offset + params.numel + i]"))
    code, results, out = run("planted")
    assert code == 1 and len(results) == 4 and all(r["status"] == "fail" for r in results), out[-3000:]


def test_the_golden_is_torchs_float64_sdpa_after_the_cache_write():
    """An independent golden: torch.nn.functional.scaled_dot_product_attention in float64 with an explicit causal
    mask (query s attends positions <= start_pos + s), kv head h // (Hq / Hkv) for query head h and the host's fp32
    scale, after writing k, v into the cache at start_pos (rounded to fp16 for kv_bits 16). Tiny shapes: no GPU."""
    import numpy as np

    torch = pytest.importorskip("torch")
    from q4gsw.matrix.values import Config, Tolerance
    from q4gsw.ops import op_for

    op = op_for("sdpa")
    for seq, heads, kv_heads, head_dim, start_pos, kv_bits in ((3, 4, 2, 8, 5, 16), (3, 4, 2, 8, 5, 32),
                                                               (1, 6, 2, 8, 70, 16), (5, 8, 4, 4, 0, 16)):
        dims = {"seq": seq, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "start_pos": start_pos,
                "cache_len": start_pos + seq + 3, "kv_bits": kv_bits}
        config = Config(name="t", dims=dims, tier="required", suite="t", inputs=op.input_names, weights="normal",
                        weight_seed=0, timeout_s=60, tolerance=Tolerance(atol=0, rtol=0, justification="t"), op="sdpa")
        cache = op.synthetic_constants(config, 0)
        for name in op.input_names:
            x = op.make_input(name, config)
            k_cache, v_cache = cache.k.copy(), cache.v.copy()
            k_cache[start_pos:start_pos + seq] = x[:, heads:heads + kv_heads]  # numpy rounds to nearest (fp16)
            v_cache[start_pos:start_pos + seq] = x[:, heads + kv_heads:]
            ctx, heads_of = start_pos + seq, torch.arange(heads) // (heads // kv_heads)
            q = torch.from_numpy(x[:, :heads].astype(np.float64)).transpose(0, 1)
            k, v = (torch.from_numpy(c[:ctx].astype(np.float64))[:, heads_of].transpose(0, 1)
                    for c in (k_cache, v_cache))
            mask = torch.arange(ctx)[None, :] <= start_pos + torch.arange(seq)[:, None]
            scale = float(np.float32(1) / np.sqrt(np.float32(head_dim)))
            expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
            np.testing.assert_allclose(op.golden(x, cache), expected.transpose(0, 1).reshape(seq, -1).numpy(),
                                       rtol=0, atol=1e-12, err_msg=f"{dims} {name}")
