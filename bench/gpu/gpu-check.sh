#!/usr/bin/env bash
# Runs on the GPU machine (no Node.js, nothing to build): the prebuilt gpu_check (correctness,
# then benchmark), a compute-sanitizer memcheck of the small cases, then the peers; everything
# into one folder. Each step gets a share of BUDGET_S seconds (default 560, under the 600 s of
# one device command), so the whole script ends in time even when a step hangs.
#
#   bench/gpu/gpu-check.sh BINARY RESULTS_DIR [PATH/TO/gpu_peers.py]
#   env: BUDGET_S (560), RACECHECK=1 (also run compute-sanitizer --tool racecheck)
#
# Results: gpu_check.log, gpu_check.json, memcheck.log, [racecheck.log], gpu_peers.jsonl,
# nvidia-smi.txt, summary.txt. Exit status: gpu_check's (0 pass, 1 failure, 2 no device), else 4
# when memcheck found errors.
set -uo pipefail
bin=${1:?usage: gpu-check.sh BINARY RESULTS_DIR [gpu_peers.py]}
results=${2:?usage: gpu-check.sh BINARY RESULTS_DIR [gpu_peers.py]}
peers=${3:-}
budget=${BUDGET_S:-560}
mkdir -p "$results"
bin=$(realpath "$bin")
summary=$results/summary.txt
: > "$summary"

# seconds left for a step: the smaller of its cap and what remains of the budget (at least 5)
left() { local rest=$(( budget - SECONDS )); local cap=$1; (( rest < cap )) && cap=$rest; (( cap < 5 )) && cap=5; echo "$cap"; }

{ nvidia-smi || true; } > "$results/nvidia-smi.txt" 2>&1

echo "== gpu_check (correctness, then benchmark)"
timeout "$(left 240)" "$bin" --out "$results" 2>&1 | tee "$results/gpu_check.log"
rc=${PIPESTATUS[0]}
echo "gpu_check exit status $rc (124: timed out) after ${SECONDS}s" | tee -a "$summary"

memcheck_rc=0
if (( rc == 2 )); then
  echo "no CUDA device: sanitizer skipped" | tee -a "$summary"
elif command -v compute-sanitizer >/dev/null 2>&1; then
  echo "== compute-sanitizer --tool memcheck (small cases, no benchmark)"
  mkdir -p "$results/sanitizer"
  timeout "$(left 150)" compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
    "$bin" --small --skip-bench --out "$results/sanitizer" > "$results/memcheck.log" 2>&1
  memcheck_rc=$?
  tail -4 "$results/memcheck.log"
  echo "memcheck exit status $memcheck_rc (9: errors found, 124: timed out) after ${SECONDS}s" | tee -a "$summary"
  if [[ ${RACECHECK:-0} == 1 ]]; then
    timeout "$(left 120)" compute-sanitizer --tool racecheck --error-exitcode 9 \
      "$bin" --small --skip-bench --out "$results/sanitizer" > "$results/racecheck.log" 2>&1
    echo "racecheck exit status $? after ${SECONDS}s" | tee -a "$summary"
  fi
else
  echo "compute-sanitizer not on PATH: memcheck skipped" | tee -a "$summary"
fi

if [[ -n $peers ]] && (( rc != 2 )); then
  echo "== gpu_peers.py"
  timeout "$(left 300)" python3 "$peers" > "$results/gpu_peers.jsonl" 2> "$results/gpu_peers.stderr"
  echo "gpu_peers.py exit status $? after ${SECONDS}s" | tee -a "$summary"
  cat "$results/gpu_peers.jsonl"
fi

grep -E "^(device|correctness|copy bandwidth|bench|PASSED|FAILED)" "$results/gpu_check.log" >> "$summary"
if (( rc != 0 )); then exit "$rc"; fi
if (( memcheck_rc != 0 )); then exit 4; fi
exit 0
