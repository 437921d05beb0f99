#!/usr/bin/env bash
# For the nineteenth session: pack cand18 (branch feat/idle-all-heads: head_dim 128 at 2 K/V stages, and the idle
# consumer warpgroup at every head dim; every head dim and dtype, the bug and bounded-wait builds): the full
# verification, then per-SM rates at head_dim 64/256 (cand18 against idlef = main's kernels) and 128, and
# compare.py (the #12 run) interleaved with idlef.
# Usage: bash .carry/s18/round5.sh <commit of pack cand18>
# Carry .carry/s18 .carry/tools .carry/pack/cand18_{bins,extra,python}.tar.xz .carry/pack/idlef_python.tar.xz
#       .carry/fa3_pkg.tar.gz
set -uo pipefail
commit=${1:?commit}
start=$SECONDS
ROOT=$PWD
R=$OUT/r5 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
mkdir -p .fa3 && tar -xzf .carry/fa3_pkg.tar.gz -C .fa3
for p in cand18 idlef; do [ -d .carry/pack/${p}_python ] || tar -C .carry/pack -xJf .carry/pack/${p}_python.tar.xz; done
export PYTHONUNBUFFERED=1
OUT=$R BUDGET=320 T_BUGS=110 T_BW=110 .carry/tools/verify.sh cand18 verify_$commit gpu sanitize validate validate:decode examples bugs pytest bw 2>&1 | tail -16
echo "verify done at $((SECONDS - start)) s"
cmp() {  # pack pass commit
  [ $((SECONDS - start)) -lt 500 ] || return
  echo "== $1 pass $2 ($((SECONDS - start)) s)"
  PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/$1_python timeout 40 python3 bench/compare.py --workloads decode,w2,w1 \
    --seq-lens 1024,4096 --out-dir $R/cmp_$1_$2 --time-per-system 0.2 --max-reps 20 --commit $3 > $R/cmp_$1_$2.log 2>&1
  grep -A6 "K/V read bandwidth" $R/cmp_$1_$2.log | tail -3; grep "^| W" $R/cmp_$1_$2.log | cut -c1-80
  rm -f $R/cmp_$1_$2/compare.png
}
cmp cand18 1 $commit
cmp idlef 1 0a2ea49
cmp cand18 2 $commit
for p in idlef cand18; do
  [ $((SECONDS - start)) -lt 520 ] || break
  echo "## $p" >> $R/persm_hd.out
  PYTHONPATH=.carry/pack/${p}_python timeout 40 python3 .carry/s18/persm_hd.py 16 >> $R/persm_hd.out 2>&1
done
cat $R/persm_hd.out
tar -C $R -cJf $OUT/r5.tar.xz .
echo "done at $((SECONDS - start)) s"
