#!/usr/bin/env bash
# npm run test:asan: the CPU addon built with AddressSanitizer and UndefinedBehaviorSanitizer
# (CMakeLists.txt, FUSEDPO_SANITIZE=ON, into build-asan/), then every unit test and the fuzz test
# against it, in this process and in every child they start. Node itself is not instrumented, so
# the sanitizers' runtimes are preloaded; leak detection is off (Node's own allocations at exit
# are not ours), every report is fatal, and a report anywhere fails the run.
#
#   test/sanitizers/run.sh                 build, then the whole suite (about 3 minutes here)
#   test/sanitizers/run.sh test/fuzz.test  build, then the test files matching a pattern
set -euo pipefail
cd "$(dirname "$0")/../.."

pattern="${1:-\.test\.ts$}"
echo "== building the sanitized CPU addon (build-asan/)"
npx cmake-js compile --out build-asan --CDFUSEDPO_SANITIZE=ON --target fusedpo > build-asan.log 2>&1 || { tail -40 build-asan.log; exit 1; }
addon="$PWD/build-asan/Release/fusedpo.node"
test -f "$addon"
npm run compile:ts > /dev/null

asan="$(gcc -print-file-name=libasan.so)"
ubsan="$(gcc -print-file-name=libubsan.so)"
log_dir="$(mktemp -d)"
export FUSEDPO_ADDON="$addon"
export FUSEDPO_SANITIZER=asan,ubsan
# The soak test's memory bounds do not hold under ASan (its quarantine keeps freed memory): a short
# soak still runs every path; the fuzz test runs its full corpus.
export FUSEDPO_SOAK_STEPS="${FUSEDPO_SOAK_STEPS:-500}"
export LD_PRELOAD="$asan:$ubsan"
# detect_leaks=0: Node does not free everything at exit. The reports go to files as well, so that
# one from a child process (a worker test, a fuzz child) is seen here too.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:handle_segv=1:allow_user_segv_handler=1:log_path=$log_dir/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$log_dir/ubsan"

echo "== the tests against $addon (${pattern})"
status=0
npx uvu -r tsx/cjs test "$pattern" -i pack -i sanitizers || status=$?
if compgen -G "$log_dir/*" > /dev/null; then
  echo "== sanitizer reports:"
  cat "$log_dir"/*
  status=1
fi
rm -rf "$log_dir"
[ "$status" -eq 0 ] && echo "== sanitizers: clean"
exit "$status"
