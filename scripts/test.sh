#!/usr/bin/env bash
# Builds everything (release, kernels included) and runs all tests:
#   1. ptxattn-tests-cpu                  (one test per Catch test case)
#   2. ptxattn-tests-gpu                  (skipped, visibly, without an SM90 GPU)
#   3. the library alone (build-lib/: -Dtests=disabled -Dbench=disabled
#      -Dvalidator=disabled, one head dim and dtype) installed with
#      meson install --destdir, then five tests: the library-only build
#      (configured without looking up Eigen, Catch2 or Google Benchmark,
#      built, installed); no build-machine path in the installed ptxattn.pc
#      and CMake package; examples/ built against the install with Meson
#      (ptxattn.pc), with a plain compiler command line (pkg-config) and with
#      CMake (find_package), each example run when there is a GPU
#   4. bench/check_c_bindings.py: the ctypes bindings against the library (one test)
#   5. the Python package: pip install . into a fresh virtual environment and
#      pytest (one test per pytest test; GPU tests skipped without a GPU)
#   6. host sanitizers: a second build (build-asan/: ASan + UBSan, only
#      ptxattn-tests-cpu and ptxattn-fuzz, one head dim and dtype), the CPU
#      tests again (one test per Catch test case) and ptxattn-fuzz (one test)
# The last line of output is exactly "N passed, N failed, N skipped".
# Exit status 0 when nothing failed. A build failure counts as one failure.
# Environment: as scripts/build.sh, plus GPU_TEST_TIMEOUT (seconds, default
# 1800), LIB_BUILD_DIR (default <repo>/build-lib), ASAN_BUILD_DIR (default
# <repo>/build-asan), FUZZ_CALLS (default
# 800000, split over up to 8 parallel runs, about a minute on 2 cores),
# FUZZ_SEED (default 1), SANITIZE=0 to leave step 7 out (2 skipped).
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

# The library alone, as a consumer gets it: a separate build with the tests,
# the validator and the benchmarks disabled (head dim 128 and bf16 only: the
# example uses them), installed into a temporary destdir, then examples/
# built against that install three ways. The build must not look up Eigen,
# Catch2 or Google Benchmark; the installed ptxattn.pc and CMake package must
# name no path of this machine (they find the prefix from their own location,
# and the CUDA toolkit at /usr/local/cuda unless the consumer says otherwise).
lib_build=${LIB_BUILD_DIR:-$repo/build-lib}
count() {  # name status: one test, passed when status is 0
  if [ "$2" -eq 0 ]; then
    echo "$1: passed"
    passed=$((passed + 1))
  else
    echo "$1: FAILED"
    failed=$((failed + 1))
  fi
}
# Runs an example binary when there is an SM90 GPU (it exits 3 without one).
run_example() {  # binary
  if [ "$have_gpu" -eq 1 ]; then
    "$1" || return 1
  else
    echo "built; not run (no SM90 GPU)"
  fi
}

build_library_alone() {
  local setup=(meson setup)
  [ -f "$lib_build/build.ninja" ] && setup=(meson setup --reconfigure)
  "${setup[@]}" "$lib_build" "$repo" --buildtype=release -Dtests=disabled -Dbench=disabled -Dvalidator=disabled \
    -Dhead_dims=128 -Ddtypes=bf16 >"$work/lib-setup.log" 2>&1 || {
    cat "$work/lib-setup.log"
    return 1
  }
  # meson-log.txt is rewritten by every configure, and each dependency() that
  # looks something up logs "[Run-time ]dependency NAME found: YES|NO" (the
  # library's own threads lookup shows the pattern still matches). `meson
  # introspect --dependencies` is no use here: it also lists what an earlier
  # configure of the same build dir found.
  local log=$lib_build/meson-logs/meson-log.txt looked_up
  if ! grep -qiE 'dependency threads found' "$log"; then
    echo "$log does not log dependency lookups as expected (no 'dependency threads found')"
    return 1
  fi
  looked_up=$(grep -iE 'dependency (eigen3|catch2|benchmark) found' "$log")
  if [ -n "$looked_up" ]; then
    echo "the library-only configure looked up a dependency of the tests, the validator or the benchmarks:"
    echo "$looked_up"
    return 1
  fi
  echo "configured without looking up eigen3, catch2 or benchmark"
  ninja -C "$lib_build" -j "${JOBS:-$(nproc)}" >"$work/lib-build.log" 2>&1 || {
    cat "$work/lib-build.log"
    return 1
  }
  meson install -C "$lib_build" --no-rebuild --destdir "$work/dest" >"$work/lib-install.log" 2>&1 || {
    cat "$work/lib-install.log"
    return 1
  }
  # The install prefix inside the destdir: <destdir>/<prefix>.
  prefix=$work/dest$(meson introspect --buildoptions "$lib_build" |
    python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
  pc_dir=$(dirname "$(find "$prefix" -name ptxattn.pc -print -quit)")
  cmake_dir=$(dirname "$(find "$prefix" -name ptxattnConfig.cmake -print -quit)")
  [ -f "$pc_dir/ptxattn.pc" ] || { echo "ptxattn.pc was not installed"; return 1; }
  if [ ! -f "$cmake_dir/ptxattnConfig.cmake" ] || [ ! -f "$cmake_dir/ptxattnConfigVersion.cmake" ]; then
    echo "ptxattnConfig.cmake / ptxattnConfigVersion.cmake were not installed"
    return 1
  fi
}

# No absolute path of this machine in the installed package files: not the
# source dir, the build dir or the destdir, nor the CUDA toolkit found here
# unless it is the /usr/local/cuda that ptxattn.pc names by default.
check_no_machine_paths() {
  local files=("$pc_dir/ptxattn.pc" "$cmake_dir"/ptxattnConfig*.cmake) paths=() path bad=0 toolkit
  # The toolkit's own root, as nvcc reports it: nvcc on PATH may be a wrapper
  # script in a shared bin directory (/usr/local/bin), whose parent is no
  # toolkit path at all.
  toolkit=$(nvcc --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -nE 's/^#\$ TOP=(.*)$/\1/p')
  for path in "$repo" "$(realpath "$repo")" "$lib_build" "$(realpath "$lib_build")" "$work" \
    ${toolkit:+"$(realpath -m "$toolkit")"}; do
    # /usr/local/cuda is the documented default of cuda_root, and a directory
    # above it (/usr/local, /usr, /) names no machine in particular.
    [[ /usr/local/cuda/ == "$path"/* ]] || [[ " ${paths[*]} " == *" $path "* ]] || paths+=("$path")
  done
  for path in "${paths[@]}"; do
    if grep -nF -- "$path" "${files[@]}"; then
      echo "the installed package names $path (above)"
      bad=1
    fi
  done
  [ "$bad" -eq 0 ] && echo "checked ${files[*]##*/} for: ${paths[*]}"
  return "$bad"
}

example_meson() {
  if ! { PKG_CONFIG_PATH=$pc_dir meson setup "$work/example-meson" "$repo/examples" &&
    ninja -C "$work/example-meson"; } >"$work/example-meson.log" 2>&1; then
    cat "$work/example-meson.log"
    return 1
  fi
  run_example "$work/example-meson/prefill_example" && run_example "$work/example-meson/c_api_example"
}

example_command_line() {
  local flags
  flags=$(PKG_CONFIG_PATH=$pc_dir pkg-config --cflags --libs ptxattn) || return 1
  echo "c++ -std=c++17 examples/prefill_example.cpp $flags"
  # shellcheck disable=SC2086  # $flags is a list of arguments
  c++ -std=c++17 "$repo/examples/prefill_example.cpp" $flags -o "$work/prefill_example-cc" || return 1
  echo "cc -std=c11 examples/c_api_example.c $flags -lm"
  # shellcheck disable=SC2086
  cc -std=c11 "$repo/examples/c_api_example.c" $flags -lm -o "$work/c_api_example-cc" || return 1
  run_example "$work/prefill_example-cc" && run_example "$work/c_api_example-cc"
}

example_cmake() {
  if ! { cmake -S "$repo/examples" -B "$work/example-cmake" -DCMAKE_PREFIX_PATH="$prefix" &&
    cmake --build "$work/example-cmake"; } >"$work/example-cmake.log" 2>&1; then
    cat "$work/example-cmake.log"
    return 1
  fi
  # The package found must be the one just installed, not one elsewhere on this machine.
  grep -qxF "ptxattn_DIR:PATH=$cmake_dir" "$work/example-cmake/CMakeCache.txt" || {
    echo "CMake found ptxattn elsewhere: $(grep '^ptxattn_DIR' "$work/example-cmake/CMakeCache.txt")"
    return 1
  }
  run_example "$work/example-cmake/prefill_example" && run_example "$work/example-cmake/c_api_example"
}

echo "== library alone ($lib_build: -Dtests=disabled -Dbench=disabled -Dvalidator=disabled, head_dims=128, dtypes=bf16), installed"
build_library_alone
lib_rc=$?
count "library-only build and install" "$lib_rc"
if [ "$lib_rc" -ne 0 ]; then
  echo "not run (the library-only build failed): package path check and 3 example builds, 4 skipped"
  skipped=$((skipped + 4))
else
  echo "== installed package files: no path of this machine"
  check_no_machine_paths
  count "installed ptxattn.pc and CMake package name no build-machine path" $?
  echo "== examples/ against the installed library: Meson (ptxattn.pc)"
  example_meson
  count "example built with Meson and ptxattn.pc" $?
  echo "== examples/ against the installed library: c++ \$(pkg-config --cflags --libs ptxattn)"
  example_command_line
  count "example built with c++ and pkg-config" $?
  echo "== examples/ against the installed library: CMake (find_package(ptxattn CONFIG REQUIRED))"
  example_cmake
  count "example built with CMake and find_package" $?
fi

echo "== bench/ptxattn_c.py (compare.py's ctypes bindings) against libptxattn.so"
if python3 "$repo/bench/check_c_bindings.py" "$build/libptxattn.so"; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

# The Python package as a user installs it: `pip install .` into a fresh
# virtual environment (build dependencies from PyPI; one head dim, both
# dtypes, which the CPU tests use), then pytest from outside the source tree.
# Each pytest test counts; GPU tests are skipped (with their reason) without
# an SM90 GPU and torch.
echo "== Python package: pip install . into a fresh virtual environment, then pytest"
python_package_tests() {
  python3 -m venv "$work/venv" || return 1
  "$work/venv/bin/pip" install --quiet "$repo" pytest -Csetup-args=-Dhead_dims=128 \
    -Csetup-args=-Ddtypes=bf16,fp16 >"$work/pip.log" 2>&1 || {
    tail -n 60 "$work/pip.log"
    echo "pip install . failed"
    return 1
  }
  (cd "$work" && "$work/venv/bin/python" -m pytest -q -rs -p no:cacheprovider --junitxml="$work/pytest.xml" \
    "$repo/python/tests")
}
python_package_tests
read -r py_passed py_failed py_skipped <<<"$(python3 "$repo/scripts/count_junit_results.py" "$work/pytest.xml")"
echo "python: $py_passed passed, $py_failed failed, $py_skipped skipped"
passed=$((passed + py_passed))
failed=$((failed + py_failed))
skipped=$((skipped + py_skipped))

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
