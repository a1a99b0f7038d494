#!/usr/bin/env bash
# One lent-GPU session: q4gsw's required tier, bench and ExecuTorch's kernels on wgpu-native and on Dawn,
# side by side. Needs the carried folders of scripts/device-native.sh plus .et/ (an ExecuTorch tree:
# backends/webgpu/runtime/ops/quantized_linear and backends/webgpu/scripts/gen_wgsl_headers.py).
# Usage: scripts/device-h100.sh accuracy|bench   (each fits one 10-minute device command)
# Writes $OUT/h100-<stage>.tgz (every results folder and log).
set -uo pipefail
out="${OUT:-results}/h100"
mkdir -p "$out"
run() { local name=$1; shift; echo "=== $name: $*"; bash scripts/device-native.sh "$@" > "$out/$name.log" 2>&1;
        echo "exit $?"; tail -n 4 "$out/$name.log"; }
peaks=(--peak-gbs 3350 --peak-gflops 67000)  # H100 SXM: HBM3 3.35 TB/s, fp32 (non-tensor) 67 TFLOP/s
stage=${1:-accuracy}
configs=(q_proj kv_proj gate_proj down_proj q_proj_4k kv_proj_4k edge_steel edge_partial_tiles edge_gs8 edge_gs64
         edge_bk64 edge_f16acc edge_gate_proj_pf)
if [ "$stage" = accuracy ]; then
for b in native native-dawn; do
    run "required-$b" run --backend "$b" --fixtures .fx --tier required --results "$out/required-$b"
done
for b in native native-dawn native-dawn-f16; do
    run "executorch-$b" run --backend "$b" --executorch .et --fixtures .fx --all-variants \
        --results "$out/executorch-$b" "${configs[@]/#/--config=}"
done
else
for b in native native-dawn native-dawn-f16; do
    run "bench-$b" bench --backend "$b" --executorch .et --repeats 20 --json "$out/bench-$b.json" "${peaks[@]}" \
        --shapes 1x2048x2048 1x2048x8192 1x8192x2048 1x2048x128256 128x2048x8192 4096x2048x2048
done
python3 -m q4gsw bench --scoreboard "$out"/bench-*.json > "$out/scoreboard.md"
cat "$out/scoreboard.md"
fi
tar -czf "${OUT:-results}/h100-$stage.tgz" -C "$(dirname "$out")" "$(basename "$out")"
