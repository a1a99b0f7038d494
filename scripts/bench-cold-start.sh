#!/usr/bin/env bash
# Benchmark (not a test): time to the verdict of the README's main command from a fresh clone with empty
# q4gsw and uv caches, and the cold export of the six required llama configs in one export process.
# Usage: scripts/bench-cold-start.sh [REPO]   (default: this checkout; run it on a quiet machine)
set -euo pipefail
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
work=$(mktemp -d /tmp/q4gsw-cold-XXXX)
git clone -q "$repo" "$work/clone"
cd "$work/clone"
export Q4GSW_CACHE="$work/q4gsw-cache" UV_CACHE_DIR="$work/uv-cache"
python3 -m pip uninstall -y -q nox uv >/dev/null 2>&1 || true
start=$(date +%s.%N)
python3 -m pip install -q "nox[uv]==2026.10.20" && python3 -m nox -s accuracy-swiftshader > "$work/main.log" 2>&1
end=$(date +%s.%N)
echo "README main command, cold: $(echo "$end - $start" | bc) s (log: $work/main.log)"
configs=(); for c in q_proj kv_proj gate_proj down_proj q_proj_4k kv_proj_4k; do configs+=(--config "$c"); done
start=$(date +%s.%N)
.nox/accuracy-swiftshader/bin/python -m q4gsw _export --matrix matrix.toml "${configs[@]}" \
    --cache "$work/export-cache/fixtures" > "$work/export.log" 2>&1
end=$(date +%s.%N)
echo "cold export of the 6 required configs, one process: $(echo "$end - $start" | bc) s"
