#!/usr/bin/env bash
# Benchmark (not a test): time to the verdict of the README's main command from a fresh clone with empty
# q4gsw and uv caches, and the cold export of the six required llama configs in one export process.
# Usage: [RUNS=N] [MAIN_ONLY=1] scripts/bench-cold-start.sh [REPO]   (default: this checkout, 1 run; run it on a
# quiet machine; MAIN_ONLY=1 skips the export benchmark)
# With RUNS > 1 each run starts from its own fresh clone and empty caches; the median and range are printed.
set -euo pipefail
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
runs=${RUNS:-1}
main_times=() export_times=()
for run in $(seq "$runs"); do
    work=$(mktemp -d /tmp/q4gsw-cold-XXXX)
    git clone -q "$repo" "$work/clone"
    cd "$work/clone"
    export Q4GSW_CACHE="$work/q4gsw-cache" UV_CACHE_DIR="$work/uv-cache"
    python3 -m pip uninstall -y -q nox uv >/dev/null 2>&1 || true
    start=$(date +%s.%N)
    python3 -m pip install -q "nox[uv]==2026.10.20" && python3 -m nox -s accuracy-swiftshader > "$work/main.log" 2>&1
    end=$(date +%s.%N)
    main_times+=("$(echo "$end - $start" | bc)")
    echo "run $run: README main command, cold: ${main_times[-1]} s (log: $work/main.log)"
    [ -n "${MAIN_ONLY:-}" ] && continue
    configs=(); for c in q_proj kv_proj gate_proj down_proj q_proj_4k kv_proj_4k; do configs+=(--config "$c"); done
    start=$(date +%s.%N)
    Q4GSW_CACHE="$work/export-cache" .nox/accuracy-swiftshader/bin/python -m q4gsw _export --matrix matrix.toml \
        "${configs[@]}" --cache "$work/export-cache/fixtures" > "$work/export.log" 2>&1
    end=$(date +%s.%N)
    export_times+=("$(echo "$end - $start" | bc)")
    echo "run $run: cold export of the 6 required configs, one process: ${export_times[-1]} s"
done
summary() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {printf "median %.1f s, range %.1f-%.1f s over %d runs\n",
    (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR], NR}'; }
echo "README main command, cold: $(summary "${main_times[@]}")"
[ -n "${MAIN_ONLY:-}" ] || echo "cold export of the 6 required configs: $(summary "${export_times[@]}")"
