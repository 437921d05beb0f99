#!/usr/bin/env bash
# Proves the tests can fail: builds the kernels once per injected bug (meson
# option inject_bug, which removes one safety measure from the prefill kernel
# or its plan) and runs the test that must expose it on each build: for the
# state bugs "pollution matrix: prefill", whose summary names the rows (clean,
# determinism, or a polluter) that exposed it; for window_overflow (integer
# arithmetic, not state) the window test "[window]"; for stale_accumulator
# (state a persistent CTA carries from one work item to the next) the random
# suite, whose cases also run on 2 persistent CTAs; for merge_empty_by_weight
# (the merge kernel weights an empty state by 0 instead of skipping it; the
# matrix runs no merge) the merge test "[merge][empty]", whose empty states
# hold NaN; for split_state_unwritten (a split-KV chunk without visible keys
# leaves its workspace state unwritten) the split-KV tests "[split-kv]",
# whose workspace is NaN before every run; for page_index_unchecked (the
# kernel uses a page-table entry given at run without checking it against
# the pool) the device page-table tests "[device-page-table]", whose bad
# entries must be reported and never read; for merge_past_batch (a graph
# plan's split-KV merge writes every row of the capacity, not the batch's)
# the graph tests "[graph]", whose rows past the batch must keep their NaN;
# for merge_skips_grid_wait (the merge, launched while the prefill kernel
# still runs, reads the workspace without waiting for it) the split-KV tests
# "[split-kv]"; for dynamic_count_kept (the dynamic schedule's claim
# counter is not zeroed before a run, so a count left in the workspace
# skips items) the random suite, which runs every case under the dynamic
# schedule with a count past every item left in the counter. Every
# injected bug must make its test fail. A baseline build without a bug must pass every test the
# listed bugs are judged by, or the attribution means nothing.
#
#   scripts/inject_bugs.sh [--no-build] [--out DIR] [--bugs LIST] [--random] [--timeout S] [--jobs N]
#
#   --no-build    only run existing binaries (build dirs built elsewhere and
#                 carried here: only <prefix><bug>/ptxattn-tests-gpu is needed)
#   --out DIR     logs go to DIR (default build-bugs-logs)
#   --bugs LIST   comma list (default none,skip_tail_zero,skip_first_scale_d0,skip_proxy_fence,
#                 window_overflow,stale_accumulator,merge_empty_by_weight,split_state_unwritten,
#                 page_index_unchecked,merge_past_batch,
#                 merge_skips_grid_wait,dynamic_count_kept,idle_rows_as_tokens,
#                 merge_other_tokens_states;
#                 "none" is the baseline)
#   --prefix P    build dirs are P<bug> (default build-bug-)
#   --random      also run the prefill random suite on each build
#   --timeout S   per test run (default 600; a hang counts as caught, with a note)
#   --jobs N      ninja -j (default 2)
#
# Builds use -Dhead_dims=128 -Ddtypes=bf16 to stay short: the matrix runs its
# head_dim 128 bf16 cases and reports the others as not built.
# Output ends with one line per bug:
#   "baseline (no bug): clean" | "baseline (no bug): FAILED rows ..."
#   "bug <name>: caught by <rows> (<N> failures)" | "bug <name>: NOT CAUGHT"
# Exit status: 0 when the baseline is clean and every bug is caught; 1 when
# not; 2 when nothing could be run (no binary, no SM90 GPU).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

build=1 out=build-bugs-logs prefix=build-bug- random=0 run_timeout=600 jobs=2
bugs=none,skip_tail_zero,skip_first_scale_d0,skip_proxy_fence,window_overflow,stale_accumulator,merge_empty_by_weight,split_state_unwritten,page_index_unchecked,merge_past_batch,merge_skips_grid_wait,dynamic_count_kept,idle_rows_as_tokens,merge_other_tokens_states
while [ $# -gt 0 ]; do
  case $1 in
    --no-build) build=0 ;;
    --out) out=$2; shift ;;
    --bugs) bugs=$2; shift ;;
    --prefix) prefix=$2; shift ;;
    --random) random=1 ;;
    --timeout) run_timeout=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "inject_bugs.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"

matrix_test="pollution matrix: prefill"
# Bugs the matrix cannot see, each judged by a test of its own: the baseline
# must pass every one of these tests, and each such bug must fail its own.
declare -A own_tests=([window_overflow]="[window]" [merge_empty_by_weight]="[merge][empty]" [split_state_unwritten]="[split-kv]" [page_index_unchecked]="[device-page-table]" [merge_past_batch]="[graph]" [merge_skips_grid_wait]="[split-kv]" [dynamic_count_kept]="prefill: random cases match the reference through both load paths" [idle_rows_as_tokens]="[gqa-pack]" [merge_other_tokens_states]="[split-kv]")
random_test="prefill: random cases match the reference through both load paths"
summary=()
all_ok=1 ran_any=0

# Sets $failing ("none", rows with counts, or empty when the line is
# missing) and $failure_count from a matrix log.
read_matrix_result() {  # log
  failing=$(sed -nE 's/^pollution matrix: prefill: failing rows: (.*)$/\1/p' "$1" | tail -n 1)
  failure_count=0
  for n in $(grep -oE '\([0-9]+\)' <<<"$failing" | tr -d '()'); do failure_count=$((failure_count + n)); done
}

for bug in ${bugs//,/ }; do
  dir=$prefix$bug
  binary=$dir/ptxattn-tests-gpu
  log=$out/$bug.log
  if [ "$build" -eq 1 ]; then
    echo "== build $dir (inject_bug=$bug)"
    if [ -d "$dir" ]; then setup=(meson setup --reconfigure); else setup=(meson setup); fi
    if ! "${setup[@]}" "$dir" "$repo" -Dinject_bug="$bug" -Dhead_dims=128 -Ddtypes=bf16 >"$out/$bug.build.log" 2>&1 ||
       ! ninja -C "$dir" -j"$jobs" ptxattn-tests-gpu >>"$out/$bug.build.log" 2>&1; then
      echo "build of $dir failed: see $out/$bug.build.log"
      summary+=("bug $bug: BUILD FAILED")
      all_ok=0
      continue
    fi
  fi
  if [ ! -x "$binary" ]; then
    echo "no $binary (build it, or drop --no-build)"
    summary+=("bug $bug: NOT RUN (no binary)")
    all_ok=0
    continue
  fi

  # Own tests (own_tests): all of them on the baseline, its own on such a bug.
  judged_by=()
  if [ "$bug" = none ]; then
    judged_by=("${!own_tests[@]}")
  elif [ -n "${own_tests[$bug]:-}" ]; then
    judged_by=("$bug")
  fi
  no_gpu=0
  for own_bug in "${judged_by[@]}"; do
    own_test=${own_tests[$own_bug]}
    own_log=$out/$bug.${own_bug%%_*}.log  # <bug>.window.log, <bug>.merge.log
    echo "== $bug: $own_test"
    timeout "$run_timeout" "$binary" "$own_test" >"$own_log" 2>&1
    own_rc=$?
    own_line=$(grep -m1 -E '^(test cases:|All tests passed)' "$own_log")
    echo "$own_test: ${own_line:-no summary line} (status $own_rc)"
    if grep -q 'SKIPPED (no SM90 GPU' "$own_log"; then
      no_gpu=1
      break
    fi
    ran_any=1
    if [ "$bug" = none ]; then
      if [ "$own_rc" -ne 0 ]; then
        summary+=("baseline (no bug): $own_test FAILED (status $own_rc)")
        all_ok=0
      fi
    elif [ "$own_rc" -ne 0 ] && grep -qE '^test cases:.*failed' "$own_log"; then
      summary+=("bug $bug: caught by $own_test ($own_line)")
    else
      summary+=("bug $bug: NOT CAUGHT ($own_test status $own_rc)")
      all_ok=0
    fi
  done
  if [ "$no_gpu" -eq 1 ]; then
    summary+=("bug $bug: NOT RUN (no SM90 GPU)")
    all_ok=0
    continue
  fi
  [ "$bug" != none ] && [ "${#judged_by[@]}" -gt 0 ] && continue

  # stale_accumulator: the matrix's cases give each CTA of a persistent grid
  # about one item, so the random suite (2-CTA persistent runs) must fail.
  if [ "$bug" = stale_accumulator ]; then
    echo "== $bug: $random_test"
    timeout "$run_timeout" "$binary" "$random_test" >"$out/$bug.random.log" 2>&1
    random_rc=$?
    random_line=$(grep -m1 '^prefill random suite: [0-9]* cases' "$out/$bug.random.log")
    echo "random suite: ${random_line:-no summary line} (status $random_rc)"
    if grep -q 'SKIPPED (no SM90 GPU' "$out/$bug.random.log"; then
      summary+=("bug $bug: NOT RUN (no SM90 GPU)")
      all_ok=0
      continue
    fi
    ran_any=1
    if [ "$random_rc" -ne 0 ] && grep -qE '[1-9][0-9]* failed$' <<<"$random_line"; then
      summary+=("bug $bug: caught by the random suite ($random_line)")
    else
      summary+=("bug $bug: NOT CAUGHT (random suite status $random_rc)")
      all_ok=0
    fi
    continue
  fi

  echo "== $bug: $matrix_test"
  timeout "$run_timeout" "$binary" "$matrix_test" >"$log" 2>&1
  rc=$?
  if grep -q 'SKIPPED (no SM90 GPU' "$log"; then
    echo "no SM90 GPU here: $(grep -m1 'SKIPPED' "$log")"
    summary+=("bug $bug: NOT RUN (no SM90 GPU)")
    all_ok=0
    continue
  fi
  ran_any=1
  sed -n '/^pollution matrix: prefill: [0-9]* cases/,/^pollution matrix: prefill: failing rows/p' "$log"
  read_matrix_result "$log"
  note=""
  if [ "$rc" -eq 124 ]; then
    note=" (hung: killed after ${run_timeout}s)"
  elif [ -z "$failing" ]; then
    note=" (aborted with status $rc before the table: see $log)"
  fi
  # The baseline runs the random suite too whenever a bug is judged by it.
  random_rc=0
  if [ "$random" -eq 1 ] || { [ "$bug" = none ] && [[ ",$bugs," == *",stale_accumulator,"* ]]; }; then
    timeout "$run_timeout" "$binary" "$random_test" >"$out/$bug.random.log" 2>&1
    random_rc=$?
    random_line=$(grep -m1 '^prefill random suite:' "$out/$bug.random.log")
    echo "random suite: ${random_line:-no summary line} (status $random_rc)"
    [ "$random_rc" -ne 0 ] && note+="; random suite fails (${random_line:-status $random_rc})"
  fi

  if [ "$bug" = none ]; then
    if [ "$rc" -eq 0 ] && [ "$failing" = none ] && [ "$random_rc" -eq 0 ]; then
      summary+=("baseline (no bug): clean$note")
    else
      summary+=("baseline (no bug): FAILED rows ${failing:-?} (status $rc)$note")
      all_ok=0
    fi
  elif [ -n "$failing" ] && [ "$failing" != none ]; then
    summary+=("bug $bug: caught by $(sed -E 's/\([0-9]+\)//g; s/ /, /g' <<<"$failing") ($failure_count failures)$note")
  elif [ "$rc" -ne 0 ]; then
    summary+=("bug $bug: caught only by an abnormal exit$note")
  else
    summary+=("bug $bug: NOT CAUGHT$note")
    all_ok=0
  fi
done

echo "== summary (logs in $out)"
printf '%s\n' "${summary[@]}"
[ "$ran_any" -eq 1 ] || exit 2
[ "$all_ok" -eq 1 ]
