#!/usr/bin/env bash
# Benchmark (not a test): time to the verdict of the README's main command from a fresh clone with empty
# q4gsw and uv caches, per cold-start variant, and the cold export of the six required llama configs in one
# export process.
#
# Usage: [VARIANTS="all 0 ..."] [RUNS=N] [MAIN_ONLY=1] [DRY_RUN=1] scripts/bench-cold-start.sh [REPO]
#   REPO       the checkout to clone (default: this one); run on a quiet machine
#   VARIANTS   what to time (default: all), each a value of Q4GSW_PREWARM (see q4gsw/run/prewarm.py):
#                all          every mechanism on (Q4GSW_PREWARM=1, the default)
#                0            none (one child per config, started when its fixture is in)
#                spares       a mechanism by name (see prewarm.MECHANISMS), or a comma list of them
#                uvbytecode   none of them, but uv compiles bytecode at install (UV_COMPILE_BYTECODE=1)
#                V+uv         variant V, and uv compiles bytecode at install (e.g. spares+uv)
#              A variant is passed to q4gsw as it is: to time a mechanism an older commit had, bench that commit.
#   RUNS       runs per variant (default 1); the variants are interleaved (round-robin), so a machine that gets
#              busier or quieter over time affects every variant alike; each run uses its own fresh clone and
#              empty Q4GSW_CACHE and UV_CACHE_DIR
#   MAIN_ONLY  skip the export benchmark (timed once per round, in the round's first run's clone)
#   DRY_RUN    print what each run would do, and run nothing
#   LOGS       where each run's log is kept (default /tmp/q4gsw-cold-logs); a run's clone, venv and caches are
#              deleted after it (each holds a few GB)
# Prints each run's time, exit status and verdict line, then per variant the median and the min-max spread of
# the runs that exited 0 (a failed run is listed, never timed).
set -euo pipefail
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
runs=${RUNS:-1}
read -r -a variants <<< "${VARIANTS:-all}"
declare -A times=()
export_times=()

variant_env() {  # the environment a variant's run adds
    case "$1" in
        *+uv) echo "$(variant_env "${1%+uv}") UV_COMPILE_BYTECODE=1" ;;
        all) echo "Q4GSW_PREWARM=1" ;;
        uvbytecode) echo "Q4GSW_PREWARM=0 UV_COMPILE_BYTECODE=1" ;;
        *) echo "Q4GSW_PREWARM=$1" ;;
    esac
}
logs=${LOGS:-/tmp/q4gsw-cold-logs}
mkdir -p "$logs"
failed=()

for variant in "${variants[@]}"; do  # an unknown name fails here, before any run, as q4gsw itself would
    variant=${variant%+uv}
    [ "$variant" = all ] || [ "$variant" = uvbytecode ] || [ "$variant" = 0 ] ||
        [[ ",$variant," =~ ^(,[a-z]+)+,$ ]] ||
        { echo "error: VARIANTS: unknown variant '$variant' (all, 0, uvbytecode, or a comma list of mechanisms)" >&2; exit 2; }
done

for run in $(seq "$runs"); do
    for index in "${!variants[@]}"; do
        variant=${variants[$index]}
        read -r -a extra_env <<< "$(variant_env "$variant")"
        if [ -n "${DRY_RUN:-}" ]; then
            echo "run $run, variant $variant: fresh clone of $repo, empty caches, env ${extra_env[*]}: nox -s accuracy-swiftshader"
            [ -n "${MAIN_ONLY:-}" ] || [ "$index" != 0 ] || echo "run $run: cold export of the 6 required configs"
            continue
        fi
        work=$(mktemp -d /tmp/q4gsw-cold-XXXX)
        git clone -q "$repo" "$work/clone"
        python3 -m pip uninstall -y -q nox uv >/dev/null 2>&1 || true
        start=$(date +%s.%N)
        rc=0
        (cd "$work/clone" && env Q4GSW_CACHE="$work/q4gsw-cache" UV_CACHE_DIR="$work/uv-cache" "${extra_env[@]}" \
            sh -c 'python3 -m pip install -q "nox[uv]==2026.10.20" && python3 -m nox -s accuracy-swiftshader' \
            > "$work/main.log" 2>&1) || rc=$?
        end=$(date +%s.%N)
        took=$(echo "$end - $start" | bc)
        log="$logs/run$run-${variant//,/-}.log"
        cp "$work/main.log" "$log"
        verdict=$(grep -E "[0-9]+ passed, [0-9]+ failed" "$log" | tail -1 || true)
        if [ "$rc" = 0 ]; then times[$variant]="${times[$variant]:-} $took"; else failed+=("run $run $variant rc $rc"); fi
        echo "run $run, variant $variant: README main command, cold: $took s, exit $rc, ${verdict:-no verdict} (log: $log)"
        [ -n "${MAIN_ONLY:-}" ] || [ "$index" != 0 ] || {
            configs=(); for c in q_proj kv_proj gate_proj down_proj q_proj_4k kv_proj_4k; do configs+=(--config "$c"); done
            start=$(date +%s.%N)
            (cd "$work/clone" && Q4GSW_CACHE="$work/export-cache" .nox/accuracy-swiftshader/bin/python -m q4gsw \
                _export --matrix matrix.toml "${configs[@]}" --cache "$work/export-cache/fixtures" \
                > "$work/export.log" 2>&1)
            end=$(date +%s.%N)
            export_times+=("$(echo "$end - $start" | bc)")
            echo "run $run: cold export of the 6 required configs, one process: ${export_times[-1]} s"
        }
        rm -rf "$work"
    done
done
[ -z "${DRY_RUN:-}" ] || exit 0
summary() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {printf "median %.1f s, spread %.1f-%.1f s over %d runs\n",
    (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR], NR}'; }
for variant in "${variants[@]}"; do
    # shellcheck disable=SC2086  # the times are space-separated numbers
    [ -n "${times[$variant]:-}" ] || { echo "README main command, cold, variant $variant: no run exited 0"; continue; }
    echo "README main command, cold, variant $variant ($(variant_env "$variant")): $(summary ${times[$variant]})"
done
[ "${#failed[@]}" = 0 ] || printf 'failed: %s\n' "${failed[@]}"
[ -n "${MAIN_ONLY:-}" ] || echo "cold export of the 6 required configs: $(summary "${export_times[@]}")"
