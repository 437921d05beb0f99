#!/usr/bin/env bash
# Builds everything (release, kernels included) and runs all tests:
#   1. ptxattn-tests-cpu                  (one test per Catch test case)
#   2. ptxattn-tests-gpu                  (skipped, visibly, without an SM90 GPU)
#   3. meson install --destdir + examples/ built against the installed
#      ptxattn.pc, and run when there is a GPU (one test)
#   4. host sanitizers: a second build (build-asan/: ASan + UBSan, only
#      ptxattn-tests-cpu and ptxattn-fuzz, one head dim and dtype), the CPU
#      tests again (one test per Catch test case) and ptxattn-fuzz (one test)
# The last line of output is exactly "N passed, N failed, N skipped".
# Exit status 0 when nothing failed. A build failure counts as one failure.
# Environment: as scripts/build.sh, plus GPU_TEST_TIMEOUT (seconds, default
# 1800), ASAN_BUILD_DIR (default <repo>/build-asan), FUZZ_CALLS (default
# 800000, split over up to 8 parallel runs, about a minute on 2 cores),
# FUZZ_SEED (default 1), SANITIZE=0 to leave step 4 out (2 skipped).
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
  # Test cases whose build option is off in this build (bounded_waits) end
  # with "ptxattn-tests-gpu: N skipped (not built in this configuration)".
  not_built=$(sed -nE 's/^ptxattn-tests-gpu: ([0-9]+) skipped \(not built in this configuration\)$/\1/p' "$work/gpu.log")
  [ -n "$not_built" ] && skipped=$((skipped + not_built))
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

# Host sanitizers. The kernels' objects are part of the library, so one head
# dim and one dtype keep the build short; the CPU tests adapt to the head dims
# built. debugoptimized keeps asserts on and the runs fast; bounded waits stay
# off, as in the release build. Every sanitizer report ends the program
# (meson.build adds -fno-sanitize-recover; halt_on_error covers the rest).
# protect_shadow_gap=0: the CUDA driver maps memory where ASan would otherwise
# keep an inaccessible gap; without it cudaMalloc fails ("out of memory") on a
# GPU machine and the CPU test that plans on the GPU fails. The tests stay
# enabled (scripts/build.sh), the validator and the benchmarks are not built.
asan_build=${ASAN_BUILD_DIR:-$repo/build-asan}
asan_env=(env "ASAN_OPTIONS=detect_leaks=1:protect_shadow_gap=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}")

run_fuzzer() {  # runs ptxattn-fuzz in parallel shards; returns non-zero when one fails
  local seed=${FUZZ_SEED:-1} calls=${FUZZ_CALLS:-800000} shards pids=() shard status=0
  shards=$(nproc)
  [ "$shards" -gt 8 ] && shards=8
  local per_shard=$(((calls + shards - 1) / shards))
  for ((shard = 0; shard < shards; shard++)); do
    "${asan_env[@]}" "$asan_build/ptxattn-fuzz" --seed "$seed" --start $((shard * per_shard)) \
      --calls "$per_shard" >"$work/fuzz-$shard.log" 2>&1 &
    pids+=($!)
  done
  for ((shard = 0; shard < shards; shard++)); do
    if ! wait "${pids[$shard]}"; then
      echo "ptxattn-fuzz shard $shard failed (replay commands below refer to $asan_build/ptxattn-fuzz):"
      cat "$work/fuzz-$shard.log"
      status=1
    fi
  done
  for ((shard = 0; shard < shards; shard++)); do tail -n 1 "$work/fuzz-$shard.log"; done
  return "$status"
}

echo "== sanitizers: build ($asan_build: ASan + UBSan, ptxattn-tests-cpu and ptxattn-fuzz, head_dims=128, dtypes=bf16)"
if [ "${SANITIZE:-1}" = 0 ]; then
  echo "left out (SANITIZE=0): 2 skipped"
  skipped=$((skipped + 2))
elif ! BUILD_DIR=$asan_build BUILDTYPE=debugoptimized \
  MESON_OPTIONS="-Db_sanitize=address,undefined -Dhead_dims=128 -Ddtypes=bf16 -Dbounded_waits=disabled -Dbench=disabled -Dvalidator=disabled" \
  "$repo/scripts/build.sh" ptxattn-tests-cpu ptxattn-fuzz >"$work/asan-build.log" 2>&1; then
  cat "$work/asan-build.log"
  echo "sanitizer build failed"
  failed=$((failed + 1))
else
  echo "== sanitizers: CPU tests"
  "${asan_env[@]}" "$asan_build/ptxattn-tests-cpu" -r xml -o "$work/cpu-asan.xml" 2>"$work/cpu-asan.err"
  asan_rc=$?
  [ "$asan_rc" -ne 0 ] && cat "$work/cpu-asan.err"
  count_catch_report "ptxattn-tests-cpu (asan+ubsan)" "$work/cpu-asan.xml" "$asan_rc"

  echo "== sanitizers: ptxattn-fuzz"
  if run_fuzzer; then
    echo "ptxattn-fuzz (asan+ubsan): 1 passed, 0 failed"
    passed=$((passed + 1))
  else
    echo "ptxattn-fuzz (asan+ubsan): 0 passed, 1 failed"
    failed=$((failed + 1))
  fi
fi

finish
