#!/usr/bin/env bash
# Prepared in session 23 for the next H200 call (not run): pack `rule` built from branch feat/kv-stages-rule
# (kv_stages 0 takes the 3-stage ring at head_dim 128 on the gather path where the DRAM bandwidth per SM reaches
# 30 GB/s). Verifies it (the rule then runs the deep ring in every gather case at head_dim 128), prints the device's
# DRAM attributes, validates the deep ring forced (--kv-stages=3) under the full preset, and times the rule against
# --kv-stages 2 on one binary, interleaved. Rebuild the pack from the rebased branch first (pack.sh <build> rule).
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r7 && mkdir -p $R
keep() { tar -C $R -cJf $OUT/r7.tar.xz .; }
mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
tar -C .carry/pack -xJf .carry/pack/rule_python.tar.xz
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.memory,power.limit --format=csv,noheader | tee $R/gpu.txt
.carry/tools/dram_attr | tee $R/dram_attr.txt
OUT=$R .carry/tools/verify.sh rule verify_rule gpu sanitize validate:decode validate pytest 2>&1 | grep RESULT
grep -h "K/V stages suite\|sanitizer cases:" $R/verify_rule.log | head -3
timeout 200 .carry/pack/rule_bins/ptxattn-validate --preset=full --pollute=all --kv-stages=3 --only-failures \
  --no-progress > $R/validate_kv_stages_3.log 2>&1; echo "validate full --kv-stages=3 rc=$?"; tail -2 $R/validate_kv_stages_3.log
rm -rf $R/sanitize-*/*.bin; keep
export PYTHONUNBUFFERED=1
PY=/tmp/fa3p:$ROOT/.carry/pack/rule_python
cmp() {  # workloads tag [args]
  local wl=$1 tag=$2; shift 2
  echo "== compare $wl $tag $* ($((SECONDS - start)) s)"
  PYTHONPATH=$PY timeout 120 python3 bench/compare.py --workloads $wl --out-dir $R/$tag --time-per-system 0.2 \
    --max-reps 20 "$@" > $R/$tag.log 2>&1
  grep -E "^\| (decode|W)" $R/$tag.log | tail -8 | cut -d'|' -f2-6,10,11
  rm -f $R/$tag/compare.png; keep
}
cmp decode dec_rule_a
cmp decode dec_st2_a --kv-stages 2
cmp w2,w1 w_rule --seq-lens 1024,4096
cmp w2,w1 w_st2 --seq-lens 1024,4096 --kv-stages 2
cmp decode dec_st2_b --kv-stages 2
cmp decode dec_rule_b
PYTHONPATH=$PY timeout 90 python3 .carry/page64.py rule 2>&1 | grep -v -i warn | tee $R/page64.out
keep
echo "done at $((SECONDS - start)) s"
