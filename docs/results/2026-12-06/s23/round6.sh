#!/usr/bin/env bash
# Session 23, round 6: pack stg with the sanitizer cases on the forced 3-stage ring: the four sanitizers, the
# [kv-stages] and [sanitize] GPU tests; then, the rule's ring against 2 stages forced on the decode and W rows.
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r6 && mkdir -p $R
keep() { tar -C $R -cJf $OUT/r6.tar.xz .; }
cp .carry/stg_src/compare.py bench/compare.py
mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
tar -C .carry/pack -xJf .carry/pack/stg_python.tar.xz
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.memory,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
OUT=$R .carry/tools/verify.sh stg verify_stg sanitize 2>&1 | grep RESULT
grep -h "sanitizer cases:" $R/verify_stg.log | head -2
tar -C .carry/pack -xJf .carry/pack/stg_bins.tar.xz 2>/dev/null
timeout 120 .carry/pack/stg_bins/ptxattn-tests-gpu "[kv-stages],[sanitize]" > $R/gpu_kv_stages.log 2>&1; echo "gpu [kv-stages],[sanitize] rc=$?"
grep -h "K/V stages suite\|test cases" $R/gpu_kv_stages.log
rm -rf $R/sanitize-*/*.bin; keep
export PYTHONUNBUFFERED=1
PY=/tmp/fa3p:$ROOT/.carry/pack/stg_python
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
cmp decode dec_rule_b
cmp decode dec_st2_b --kv-stages 2
echo "done at $((SECONDS - start)) s"
