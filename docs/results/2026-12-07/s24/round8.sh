#!/usr/bin/env bash
# Prepared in session 24 (not run: no device machine started). Pack `rule` = branch feat/kv-stages-rule b8c423d.
# Verifies it (on an H200 the rule runs the deep ring in every gather case at head_dim 128), prints the DRAM
# attributes the rule reads, times the rule against --kv-stages 2 (W1, W2, decode) on one package, then one full
# compare.py (w1,w2,decode) on the rule pack, the run #12 asks for, and page64.py. Fits its steps into B seconds;
# STEPS picks the verification steps (empty: none), FULL_S bounds the full compare.py.
#   B=440 bash round8.sh
set -uo pipefail
start=$SECONDS
B=${B:-440}  # seconds this call may take
ROOT=$PWD
R=$OUT/r8 && mkdir -p $R
keep() { tar -C $R -cJf $OUT/r8.tar.xz .; }
mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
tar -C .carry/pack -xJf .carry/pack/rule_python.tar.xz
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.memory,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
.carry/tools/dram_attr | tee $R/dram_attr.txt
OUT=$R .carry/tools/verify.sh rule verify_rule ${STEPS-gpu sanitize validate:decode validate pytest} 2>&1 | grep RESULT
grep -h "K/V stages suite\|rule took\|sanitizer cases:" $R/verify_rule.log | head -4
rm -rf $R/sanitize-*/*.bin; keep
echo "== verified at $((SECONDS - start)) s"
if grep -q H100 $R/gpu.txt; then  # the rule keeps 2 stages on the H100: no A/B, the full run only
  export PYTHONUNBUFFERED=1 PTXATTN_COMMIT=b8c423d
  PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/rule_python timeout $((B - 15 - (SECONDS - start))) python3 bench/compare.py --workloads w1,w2,decode \
    --out-dir $R/full_rule_h100 > $R/full_rule_h100.log 2>&1
  grep -E "^\| " $R/full_rule_h100.log | head -60; rm -f $R/full_rule_h100/compare.png; keep; exit 0
fi
export PYTHONUNBUFFERED=1
PY=/tmp/fa3p:$ROOT/.carry/pack/rule_python
export PTXATTN_COMMIT=b8c423d
cmp() {  # workloads tag timeout [args]
  local wl=$1 tag=$2 t=$3; shift 3
  echo "== compare $wl $tag $* ($((SECONDS - start)) s)"
  PYTHONPATH=$PY timeout $t python3 bench/compare.py --workloads $wl --out-dir $R/$tag "$@" > $R/$tag.log 2>&1
  grep -E "^\| (decode|W)" $R/$tag.log | tail -8 | cut -d'|' -f2-6,10,11
  rm -f $R/$tag/compare.png; keep
}
if [ $((B - (SECONDS - start))) -gt 110 ]; then
cmp w2,w1,decode ab_st2 70 --seq-lens 1024,4096 --time-per-system 0.2 --max-reps 20 --kv-stages 2
cmp w2,w1,decode ab_rule 70 --seq-lens 1024,4096 --time-per-system 0.2 --max-reps 20
fi
left=$((B - 10 - (SECONDS - start)))
[ $left -gt 150 ] && left=$((left - 60))  # room for page64.py
[ -n "${FULL_S:-}" ] && left=$FULL_S
[ $left -gt 40 ] && cmp w1,w2,decode full_rule $left
grep -E "^\| " $R/full_rule.log | head -60
left=$((B - 15 - (SECONDS - start)))
[ $left -gt 30 ] && PYTHONPATH=$PY timeout $left python3 .carry/page64.py rule 2>&1 | grep -v -i warn | tee $R/page64.out
keep
echo "done at $((SECONDS - start)) s"
