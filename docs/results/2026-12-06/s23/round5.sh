#!/usr/bin/env bash
# Session 23, round 5: pack stg (branch feat/kv-stages: the 3-stage ring at head_dim 128 on the gather path,
# chosen by DRAM bandwidth per SM, forced by kv_stages) verified, then timed against itself forced to 2 stages.
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r5 && mkdir -p $R
keep() { tar -C $R -cJf $OUT/r5.tar.xz .; }
cp .carry/stg_src/compare.py bench/compare.py && rm -rf python/tests && cp -r .carry/stg_src/python_tests python/tests
mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
tar -C .carry/pack -xJf .carry/pack/stg_python.tar.xz
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.memory,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
echo "== verify stg ($((SECONDS - start)) s)"
OUT=$R .carry/tools/verify.sh stg verify_stg gpu sanitize validate:decode validate pytest 2>&1 | grep RESULT
grep -h "K/V stages suite" $R/verify_stg.log
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
cmp decode dec_rule_b
cmp decode dec_st2_b --kv-stages 2
grep -h "ptxattn paged16" $R/dec_rule_a.log | head -3 | cut -c1-30,100-
cmp w2,w1 w_rule --seq-lens 1024,4096
cmp w2,w1 w_st2 --seq-lens 1024,4096 --kv-stages 2
echo "== page64 stg ($((SECONDS - start)) s)"
PYTHONPATH=$PY timeout 90 python3 .carry/stg_src/page64.py stg 2>&1 | grep -v -i warn | tee -a $R/page64.out
keep
echo "done at $((SECONDS - start)) s"
