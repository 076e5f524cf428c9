#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, after bench/gpu/stage.sh ran on the
# development machine: nothing is built or installed here. In order, with the results in one
# folder:
#   1. fusedpo doctor (the CUDA addon loads and sees the device)
#   2. the Node tests of cuda tensors against the CPU reference (test/cuda.test.ts), with
#      FUSEDPO_REQUIRE_CUDA=1 so that a missing device fails instead of skipping
#   3. bench/gpu/gpu-check.sh: the kernels' correctness matrix, the benchmark against the copy
#      bandwidth, compute-sanitizer memcheck, and the peers (gpu_peers.py, when staged)
#   4. the same loss timed from TypeScript (bench/gpu/node-loss.ts)
#   5. with NCU=1, an Nsight Compute profile of the forward kernel (bf16, V = 128256, no prompt)
#
#   bash bench/gpu/run-device.sh RESULTS_DIR
# Exit status: the first failing step's (the tests: 1; gpu-check.sh: its own codes).
set -uo pipefail
results=${1:?usage: run-device.sh RESULTS_DIR}
mkdir -p "$results"
xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
mkdir -p node_modules && cp -r .device/node_modules/. node_modules/
status=0
step() { echo "== $1 (${SECONDS}s)"; }

step "doctor"
node dist/cli.js doctor 2>&1 | tee "$results/doctor.txt"

step "node tests (test/cuda.test.ts)"
FUSEDPO_REQUIRE_CUDA=1 timeout 240 node node_modules/uvu/bin.js -r tsx/cjs test 'cuda\.test\.ts$' > "$results/node-tests.log" 2>&1
rc=$?
tail -30 "$results/node-tests.log"
echo "node tests exit status $rc"
(( rc != 0 && status == 0 )) && status=1

step "gpu-check.sh"
peers=()
[[ -f .device/gpu_peers.py ]] && peers=(.device/gpu_peers.py)
BUDGET_S=${BUDGET_S:-300} bash .device/gpu-check/gpu-check.sh .device/gpu-check/gpu_check "$results" "${peers[@]}"
rc=$?
(( rc != 0 && status == 0 )) && status=$rc

step "the loss from TypeScript (bench/gpu/node-loss.ts)"
timeout 180 node node_modules/tsx/dist/cli.mjs bench/gpu/node-loss.ts --gpu-check "$results/gpu_check.json" \
  --out "$results/node-loss.json" 2>&1 | tee "$results/node-loss.log"

if [[ ${NCU:-0} == 1 ]] && command -v ncu >/dev/null; then
  step "ncu: the forward kernel, bf16, V = 128256, no prompt"
  timeout 120 ncu --clock-control none -k regex:preferenceLossForwardKernel --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section Occupancy --section WarpStateStats --section InstructionStats \
    .device/gpu-check/gpu_check --skip-correctness --iters 1 --bench-case bf16:128256:0 --out /tmp/ncu-run \
    > "$results/ncu-forward.txt" 2>&1
  grep -E "Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Achieved Occupancy|Issue Slots Busy|Registers Per|Stall|Executed Ipc" "$results/ncu-forward.txt" | head -30
fi
step "done, exit status $status"
exit "$status"
