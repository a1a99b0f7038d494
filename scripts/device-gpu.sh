#!/usr/bin/env bash
# One lent-GPU session: q4gsw's required tier, bench and ExecuTorch's kernels on wgpu-native and on Dawn,
# side by side. Needs the carried folders of scripts/device-native.sh plus .et/ (an ExecuTorch tree with
# backends/webgpu/runtime/ops/<each op's folder> and backends/webgpu/scripts/gen_wgsl_headers.py).
# Usage: GPU=h200 scripts/device-gpu.sh accuracy|bench|clocks|ops|ops-bench   (each fits one 10-minute device command)
#   accuracy, bench: linear_q4gsw;  ops, ops-bench: every other op (--op OP ... to choose)
#   BENCH_BACKENDS="native ..." limits bench and ops-bench to those backends
#   clocks: linear_q4gsw's GEMV/GEMM timed from idle (--warmup-s 0) and warmed up, and
#           scripts/steady_state_probe.py's three phases (idle, back to back, warm) for each kernel and torch
# Writes $OUT/$GPU-<stage>.tgz (every results folder and log) with clocks.csv: nvidia-smi's clocks every 200 ms.
set -uo pipefail
gpu=${GPU:-gpu}
out="${OUT:-results}/$gpu"
mkdir -p "$out"
run() { local name=$1; shift; echo "=== $name: $*"; bash scripts/device-native.sh "$@" > "$out/$name.log" 2>&1;
        echo "exit $?"; tail -n 4 "$out/$name.log"; }
# Peak HBM GB/s and fp32 (non-tensor) GFLOP/s for the roofline column.
case "$gpu" in
    h100) peaks=(--peak-gbs 3350 --peak-gflops 67000) ;;
    h200) peaks=(--peak-gbs 4800 --peak-gflops 67000) ;;
    *) peaks=() ;;
esac
smi=""
if command -v nvidia-smi > /dev/null; then
    query=timestamp,pstate,clocks.sm,clocks.mem,clocks.max.sm,power.draw,utilization.gpu,utilization.memory,temperature.gpu
    nvidia-smi --query-gpu="$query" --format=csv -lms 200 > "$out/clocks.csv" 2>&1 &
    smi=$!
fi
stage=${1:-accuracy}
shift || true
ops=("$@")
probe_variants=()  # clocks: PROBE_VARIANTS="rpt2:rpt=2 p528:dispatch=528" adds variants of the probed GEMVs
for v in ${PROBE_VARIANTS:-}; do probe_variants+=(--variant "$v"); done
[ ${#ops[@]} -eq 0 ] && ops=(linear_qcs4w embedding_q4gsw linear_dq8ca_q4gsw)
configs=(q_proj kv_proj gate_proj down_proj q_proj_4k kv_proj_4k edge_steel edge_partial_tiles edge_gs8 edge_gs64
         edge_bk64 edge_f16acc edge_gate_proj_pf)
case "$stage" in
accuracy)
    for b in native native-dawn; do
        run "required-$b" run --backend "$b" --fixtures .fx --tier required --results "$out/required-$b"
    done
    for b in native native-dawn native-dawn-f16; do
        run "executorch-$b" run --backend "$b" --executorch .et --fixtures .fx --all-variants \
            --results "$out/executorch-$b" "${configs[@]/#/--config=}"
    done ;;
bench)
    for b in ${BENCH_BACKENDS:-native native-dawn native-dawn-f16}; do
        run "bench-$b" bench --backend "$b" --executorch .et --repeats 10 --json "$out/bench-$b.json" "${peaks[@]}" \
            --shapes 1x2048x2048 1x2048x8192 1x8192x2048 1x2048x128256 128x2048x8192 4096x2048x2048
    done
    bash scripts/device-native.sh bench --scoreboard "$out"/bench-*.json > "$out/scoreboard.md"
    cat "$out/scoreboard.md" ;;
clocks)
    cliff=(1x2048x65536 1x2048x98304 1x2048x128256 4096x2048x2048)
    run bench-cold bench --backend native --repeats 10 --warmup-s 0 --json "$out/bench-cold.json" --shapes "${cliff[@]}"
    run bench-warm bench --backend native --repeats 10 --json "$out/bench-warm.json" --shapes "${cliff[@]}"
    run probe-lm_head scripts/steady_state_probe.py --backend native --shape 1x2048x128256 --torch \
        --kernels gpu_gemv_fast gpu_gemv_vec4 --json "$out/probe-lm_head.json" "${probe_variants[@]}"
    run probe-q_proj_4k scripts/steady_state_probe.py --backend native --shape 4096x2048x2048 --torch --batch 50 \
        --kernels gpu_gemm tiled --json "$out/probe-q_proj_4k.json" ;;
ops)  # every config of the op whose fixture was carried in .fx (required and heavy alike)
    for op in "${ops[@]}"; do
        mapfile -t names < <(python3 -c 'import json, pathlib, sys
for m in sorted(pathlib.Path(".fx").glob("*/manifest.json")):
    if json.loads(m.read_text()).get("op") == sys.argv[1]: print(m.parent.name)' "$op")
        [ ${#names[@]} -eq 0 ] && { echo "no fixture of $op in .fx"; continue; }
        for b in native native-dawn; do
            run "$op-$b" run --backend "$b" --fixtures .fx --results "$out/$op-$b" "${names[@]/#/--config=}"
            run "$op-executorch-$b" run --backend "$b" --executorch .et --fixtures .fx --all-variants \
                --results "$out/$op-executorch-$b" "${names[@]/#/--config=}"
        done
    done ;;
ops-bench)
    for op in "${ops[@]}"; do
        case "$op" in
            embedding_q4gsw) shapes=(4096x4096x2048 128256x128256x2048) ;;  # indices x vocab x dim (every row)
            linear_qcs4w) shapes=(1x2048x2048 1x2048x8192 1x8192x2048 1x2048x128256 4096x2048x2048) ;;
            *) shapes=(1x2048x2048 1x2048x8192 1x8192x2048 1x2048x128256 4096x2048x2048) ;;
        esac
        for b in ${BENCH_BACKENDS:-native native-dawn}; do
            run "bench-$op-$b" bench --op "$op" --backend "$b" --executorch .et --repeats 10 \
                --json "$out/bench-$op-$b.json" "${peaks[@]}" --shapes "${shapes[@]}"
        done
    done ;;
*) echo "unknown stage '$stage': accuracy, bench, clocks, ops or ops-bench" >&2; [ -n "$smi" ] && kill "$smi"; exit 2 ;;
esac
[ -n "$smi" ] && kill "$smi"
tar -czf "${OUT:-results}/$gpu-$stage.tgz" -C "$(dirname "$out")" "$(basename "$out")"
