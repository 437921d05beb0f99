#!/usr/bin/env bash
# Builds everything (release, kernels included) and runs all tests:
#   1. ptxattn-tests-cpu                  (one test per Catch test case)
#   2. ptxattn-tests-gpu                  (skipped, visibly, without an SM90 GPU)
#   3. meson install --destdir + examples/ built against the installed
#      ptxattn.pc, and run when there is a GPU (one test)
# The last line of output is exactly "N passed, N failed, N skipped".
# Exit status 0 when nothing failed. A build failure counts as one failure.
# Environment: as scripts/build.sh, plus GPU_TEST_TIMEOUT (seconds, default 1800).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$repo/build-release}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0 failed=0 skipped=0

finish() {
  echo "$passed passed, $failed failed, $skipped skipped"
  [ "$failed" -eq 0 ]
  exit
}

# Adds the test cases of a Catch XML report to the counts; a non-zero exit
# code with no failed test case in the report (e.g. a crash) is one failure.
count_catch_report() {  # name report exit_code
  local name=$1 report=$2 rc=$3 counts
  counts=$(python3 "$repo/scripts/count_catch_results.py" "$report") || counts="0 1"
  read -r case_passed case_failed <<<"$counts"
  if [ "$rc" -ne 0 ] && [ "$case_failed" -eq 0 ]; then
    echo "$name exited with status $rc but reported no failed test case: counted as a failure"
    case_failed=1
  fi
  echo "$name: $case_passed passed, $case_failed failed"
  passed=$((passed + case_passed))
  failed=$((failed + case_failed))
}

echo "== build ($build)"
if ! "$repo/scripts/build.sh"; then
  echo "build failed"
  failed=$((failed + 1))
  finish
fi

echo "== CPU tests"
"$build/ptxattn-tests-cpu" -r xml -o "$work/cpu.xml"
count_catch_report ptxattn-tests-cpu "$work/cpu.xml" $?

echo "== GPU tests"
timeout "${GPU_TEST_TIMEOUT:-1800}" "$build/ptxattn-tests-gpu" -r xml -o "$work/gpu.xml" | tee "$work/gpu.log"
gpu_rc=${PIPESTATUS[0]}
# Without an SM90 GPU the executable runs nothing and ends with
# "ptxattn-tests-gpu: 0 test cases run, N skipped (no SM90 GPU: ...)".
skip_summary=$(grep -E '^ptxattn-tests-gpu: 0 test cases run, [0-9]+ skipped \(no SM90 GPU' "$work/gpu.log")
if [ -n "$skip_summary" ] && [ "$gpu_rc" -eq 0 ]; then
  have_gpu=0
  skipped=$((skipped + $(sed -E 's/^ptxattn-tests-gpu: 0 test cases run, ([0-9]+) skipped .*/\1/' <<<"$skip_summary")))
else
  have_gpu=1
  count_catch_report ptxattn-tests-gpu "$work/gpu.xml" "$gpu_rc"
fi

echo "== install and build examples/ against the installed ptxattn.pc"
install_and_build_example() {
  meson install -C "$build" --no-rebuild --destdir "$work/dest" >"$work/install.log" || {
    cat "$work/install.log"
    return 1
  }
  local pc
  pc=$(find "$work/dest" -name ptxattn.pc -print -quit)
  [ -n "$pc" ] || { echo "ptxattn.pc was not installed"; return 1; }
  PKG_CONFIG_PATH=$(dirname "$pc") meson setup "$work/example" "$repo/examples" >"$work/example.log" || {
    cat "$work/example.log"
    return 1
  }
  ninja -C "$work/example" || return 1
  if [ "$have_gpu" -eq 1 ]; then
    "$work/example/prefill_example" || return 1
  else
    echo "built; not run (no SM90 GPU)"
  fi
}
if install_and_build_example; then
  passed=$((passed + 1))
else
  echo "install/example: FAILED"
  failed=$((failed + 1))
fi

finish
