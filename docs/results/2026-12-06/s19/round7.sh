#!/usr/bin/env bash
# Nineteenth session, round 7 (the planned round 6, never lent a machine, cut to the device time left): pack pdl (feat/pdl-counter) timed first
# (timeline.py, compare.py; pack cand18 = main's kernels beside it), then verified, each step only while time is left.
# Usage: bash .carry/s19/round7.sh <commit of pack pdl> <seconds available>
set -uo pipefail
commit=${1:?commit} avail=${2:?seconds}
start=$SECONDS
ROOT=$PWD
R=$OUT/r7 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
mkdir -p .fa3 && tar -xzf .carry/fa3_pkg.tar.gz -C .fa3
for p in pdl cand18; do [ -d .carry/pack/${p}_python ] || tar -C .carry/pack -xJf .carry/pack/${p}_python.tar.xz; done
export PYTHONUNBUFFERED=1
keep() { tar -C $R -cJf $OUT/r7.tar.xz .; }
tl() {  # pack label systems
  echo "== timeline $1 $2 ($((SECONDS - start)) s)"
  PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/$1_python timeout 30 python3 .carry/s19/timeline.py $3 2>&1 | grep -v -i warn > $R/timeline_$1_$2.out
  grep -E "^==|span|prefill_kernel" $R/timeline_$1_$2.out | cut -c1-110
}
cmp() {  # pack pass commit
  echo "== $1 pass $2 ($((SECONDS - start)) s)"
  PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/$1_python timeout 30 python3 bench/compare.py --workloads decode,w2,w1 \
    --seq-lens 1024,4096 --out-dir $R/cmp_$1_$2 --time-per-system 0.2 --max-reps 20 --commit $3 > $R/cmp_$1_$2.log 2>&1
  grep -A6 "K/V read bandwidth" $R/cmp_$1_$2.log | tail -3; grep "^| W" $R/cmp_$1_$2.log | cut -d'|' -f2,6,11
  rm -f $R/cmp_$1_$2/compare.png
}
tl pdl 1 ptxattn,FA3; tl cand18 1 ptxattn; keep
cmp pdl 1 $commit; cmp cand18 1 5be4d0a; keep
left=$((avail - (SECONDS - start) - 8))
echo "verify with $left s ($((SECONDS - start)) s)"
OUT=$R BUDGET=$left T_BUGS=30 T_BW=60 .carry/tools/verify.sh pdl verify_$commit gpu sanitize validate:decode validate examples pytest bugs bw 2>&1 | tail -12
keep
echo "done at $((SECONDS - start)) s"
