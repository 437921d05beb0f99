#!/usr/bin/env bash
# Prepared in session 25 (not run: no device machine started): round8.sh reordered for a short budget.
# Pack `rule` = branch feat/kv-stages-rule b8c423d. Verifies it, then the full compare.py (w1,w2,decode) on the
# rule (the run #12 asks for), then W1/W2 with --kv-stages 2 (main's 2-stage ring) in the time left, then
# page64.py if time is still left. B = seconds this call may take:  B=370 bash round9.sh
set -uo pipefail
start=$SECONDS
B=${B:-370}
ROOT=$PWD
R=$OUT/r9 && mkdir -p $R
keep() { tar -C $R -cJf $OUT/r9.tar.xz .; }
mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
tar -C .carry/pack -xJf .carry/pack/rule_python.tar.xz
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.memory,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
.carry/tools/dram_attr | tee $R/dram_attr.txt
OUT=$R .carry/tools/verify.sh rule verify_rule ${STEPS-gpu sanitize validate:decode validate pytest} 2>&1 | grep RESULT
grep -h "K/V stages suite\|rule took\|sanitizer cases:" $R/verify_rule.log | head -4
rm -rf $R/sanitize-*/*.bin; keep
echo "== verified at $((SECONDS - start)) s"
export PYTHONUNBUFFERED=1 PTXATTN_COMMIT=b8c423d
PY=/tmp/fa3p:$ROOT/.carry/pack/rule_python
cmp() {  # workloads tag timeout [args]
  local wl=$1 tag=$2 t=$3; shift 3
  [ $t -gt 30 ] || { echo "== $tag skipped: ${t}s left"; return; }
  echo "== compare $wl $tag $* ($((SECONDS - start)) s)"
  PYTHONPATH=$PY timeout $t python3 bench/compare.py --workloads $wl --out-dir $R/$tag "$@" > $R/$tag.log 2>&1
  grep -E "^\| " $R/$tag.log | head -40
  rm -f $R/$tag/compare.png; keep
}
left() { echo $((B - 8 - (SECONDS - start))); }
t=$(left); [ $t -gt 100 ] && t=100
cmp w1,w2,decode full_rule $t
cmp w1,w2 w_st2 $(left) --kv-stages 2
t=$(left); [ $t -gt 30 ] && PYTHONPATH=$PY timeout $t python3 .carry/page64.py rule 2>&1 | grep -v -i warn | tee $R/page64.out
keep
echo "done at $((SECONDS - start)) s"
