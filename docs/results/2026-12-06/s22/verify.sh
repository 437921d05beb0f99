#!/usr/bin/env bash
# Device-side verification of one pack: .carry/pack/<name>_bins (and <name>_python).
#   OUT=dir .carry/tools/verify.sh <name> <label> step...
# steps: gpu | sanitize | validate | validate:decode | pytest | bugs (BUGLIST='bug:filter;...')
# Each step runs under timeout; a RESULT line per step; the log goes to $OUT/<label>.log.
set -uo pipefail
name=$1 label=$2; shift 2
root=$PWD
bins=$root/.carry/pack/${name}_bins
py=$root/.carry/pack/${name}_python
[ -d "$bins" ] || tar -C $root/.carry/pack -xJf $root/.carry/pack/${name}_bins.tar.xz
[ -d "$py" ] || { [ -f $root/.carry/pack/${name}_python.tar.xz ] && tar -C $root/.carry/pack -xJf $root/.carry/pack/${name}_python.tar.xz; }
export LD_LIBRARY_PATH=$bins${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
log=$OUT/$label.log
results=()
step() {  # name seconds command...
  local s=$1 t=$2; shift 2
  echo "==================== [$label] step: $s ($(date +%T))" | tee -a $log
  local t0=$SECONDS
  timeout -k 10 $t "$@" > $OUT/.step.log 2>&1; local rc=$?
  cat $OUT/.step.log >> $log
  local summary
  summary=$(grep -E "All tests passed|test cases:|rows:|sanitize:|passed|failed|caught|NOT CAUGHT" $OUT/.step.log | tail -3 | tr '\n' ' ')
  local r=PASS; [ $rc -eq 0 ] || r="FAIL(rc=$rc)"
  results+=("$r $s $((SECONDS - t0))s $summary")
  echo "RESULT ${results[-1]}" | tee -a $log
}
for s in "$@"; do
  case $s in
    gpu) step gpu 240 $bins/ptxattn-tests-gpu ;;
    sanitize) step sanitize 240 scripts/sanitize.sh --build $bins --out $OUT/sanitize-$label --timeout 200 ;;
    validate) step validate 200 $bins/ptxattn-validate --preset=full --pollute=all --only-failures --no-progress ;;
    validate:decode) step validate:decode 100 $bins/ptxattn-validate --preset=decode --pollute=all --only-failures --no-progress ;;
    pytest) step pytest 200 env PYTHONPATH=$py python3 -m pytest -q -p no:cacheprovider python/tests ;;
    bugs)
      IFS=';' read -ra items <<<"${BUGLIST:-}"
      for it in "${items[@]}"; do
        bug=${it%%:*} filter=${it#*:}
        b=$root/.carry/pack/${name}_bug_$bug
        [ -d $b ] || tar -C $root/.carry/pack -xJf $root/.carry/pack/${name}_bug_$bug.tar.xz
        step "bug:$bug" 120 bash -c "$b/ptxattn-tests-gpu '$filter'; rc=\$?; if [ \$rc -ne 0 ]; then echo 'bug $bug: caught'; exit 0; else echo 'bug $bug: NOT CAUGHT'; exit 1; fi"
      done ;;
    *) echo "unknown step $s" ;;
  esac
done
echo "==================== [$label] summary" | tee -a $log
printf '%s\n' "${results[@]}" | tee -a $log
