#!/usr/bin/env bash
# Runs compute-sanitizer's memcheck, racecheck, synccheck and initcheck over
# the Catch test "sanitizer cases" (tests/gpu/test_pollution_gpu.cu: tiny
# launches of every kernel: prefill head_dim 64/128/256, bf16 and fp16,
# gather and TMA, paged with page size 7 and partial last pages, causal and
# sliding window; RoPE, its cos/sin cache, plain and fused append) and
# reports the error count per tool. The goal is 0 for all four;
# docs/validation.md "Sanitizers" explains any exception.
#
#   scripts/sanitize.sh [--build DIR] [--out DIR] [--tools LIST] [--timeout S]
#
#   --build DIR    build dir holding ptxattn-tests-gpu (default build-release;
#                  only the binary is needed, e.g. carried from another machine)
#   --out DIR      logs (default build-sanitize-logs)
#   --tools LIST   comma list (default memcheck,racecheck,synccheck,initcheck)
#   --timeout S    per tool (default 540)
#
# Output ends with a table (tool, errors, test status) and one line:
#   "sanitize: 0 errors from every tool" or "sanitize: ERRORS ...".
# Exit status: 0 all clean; 1 errors, a failed test or a missing summary;
# 2 no compute-sanitizer, binary or SM90 GPU; 3 the kernel is gVisor's
# (compute-sanitizer cannot attach there: nothing was checked).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

build=$repo/build-release out=build-sanitize-logs tools=memcheck,racecheck,synccheck,initcheck tool_timeout=540
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift ;;
    --out) out=$2; shift ;;
    --tools) tools=$2; shift ;;
    --timeout) tool_timeout=$2; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "sanitize.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
test_name="sanitizer cases"
binary=$build/ptxattn-tests-gpu

# compute-sanitizer needs the GPU driver's debugger interface, which works
# in Firecracker VMs (kernel release "...-fc-...") but not under gVisor,
# whose kernel reports release 4.4.0.
kernel=$(uname -r)
if [ "$kernel" = 4.4.0 ]; then
  echo "sanitize: kernel $kernel is gVisor's: compute-sanitizer cannot run here; nothing was checked"
  exit 3
fi
case $kernel in
  *-fc-*) ;;
  *) echo "sanitize: note: kernel $kernel is not a Firecracker VM's (-fc-); trying anyway" ;;
esac

sanitizer=$(command -v compute-sanitizer || true)
[ -z "$sanitizer" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && sanitizer=/usr/local/cuda/bin/compute-sanitizer
if [ -z "$sanitizer" ]; then
  echo "sanitize: compute-sanitizer not found (PATH, /usr/local/cuda/bin)"
  exit 2
fi
if [ ! -x "$binary" ]; then
  echo "sanitize: no $binary (build it first: ninja -C $build ptxattn-tests-gpu)"
  exit 2
fi

# The cases must pass on their own first; this also tells whether there is a GPU.
"$binary" "$test_name" >"$out/plain.log" 2>&1
plain_rc=$?
if grep -q 'SKIPPED (no SM90 GPU' "$out/plain.log"; then
  echo "sanitize: no SM90 GPU: $(grep -m1 SKIPPED "$out/plain.log")"
  exit 2
fi
echo "sanitize: \"$test_name\" without a sanitizer: status $plain_rc ($(grep -m1 '^sanitizer cases:' "$out/plain.log"))"

rows=() bad=0
for tool in ${tools//,/ }; do
  log=$out/$tool.log
  echo "== $tool"
  # --error-exitcode 0: the status is the test's own; the errors come from the summary.
  timeout "$tool_timeout" "$sanitizer" --tool "$tool" --error-exitcode 0 --print-limit 20 \
    "$binary" "$test_name" >"$log" 2>&1
  rc=$?
  # racecheck ends with "RACECHECK SUMMARY: N hazards displayed (E errors, W warnings)"
  # instead of an ERROR SUMMARY line.
  errors=$(sed -nE -e 's/^========= ERROR SUMMARY: ([0-9]+) errors?.*/\1/p' \
    -e 's/^========= RACECHECK SUMMARY: .*\(([0-9]+) errors?, .*/\1/p' "$log" | tail -n 1)
  if [ -z "$errors" ]; then
    status="no ERROR SUMMARY (status $rc$([ "$rc" -eq 124 ] && echo ", timed out after ${tool_timeout}s"))"
    errors="?"
    bad=1
  else
    status="test status $rc"
    { [ "$errors" -ne 0 ] || [ "$rc" -ne 0 ]; } && bad=1
  fi
  grep -E '^========= (ERROR SUMMARY|RACECHECK SUMMARY)' "$log"
  grep -m5 -E '^========= (Invalid|Race|Uninitialized|Barrier|Error|Warning)' "$log"
  rows+=("$(printf '%-10s %7s   %s' "$tool" "$errors" "$status")")
done

echo "== summary (logs in $out)"
printf '%-10s %7s   %s\n' tool errors status
printf '%s\n' "${rows[@]}"
if [ "$bad" -eq 0 ] && [ "$plain_rc" -eq 0 ]; then
  echo "sanitize: 0 errors from every tool"
else
  echo "sanitize: ERRORS (or a failed test run): see the table and $out"
  exit 1
fi
