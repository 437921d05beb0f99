#!/usr/bin/env bash
# Twentieth session: what round 7 left unrun on pack pdl (dabe4f6 = main's 6897e95 code): examples, pytest,
# the injected bugs and the bounded-wait suite; then compare.py (the #12 run) twice.
# Usage: bash .carry/s20/round9.sh
# Carry .carry/s20 .carry/tools .carry/pack/pdl_{bins,extra,python}.tar.xz .carry/fa3_pkg.tar.gz
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r9 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
mkdir -p .fa3 && tar -xzf .carry/fa3_pkg.tar.gz -C .fa3
[ -d .carry/pack/pdl_python ] || tar -C .carry/pack -xJf .carry/pack/pdl_python.tar.xz
export PYTHONUNBUFFERED=1
keep() { tar -C $R -cJf $OUT/r9.tar.xz .; }
OUT=$R BUDGET=200 T_BUGS=60 T_BW=90 .carry/tools/verify.sh pdl verify_dabe4f6_rest examples pytest bugs bw 2>&1 | tail -10
keep
cmp() {  # pass
  echo "== pdl pass $1 ($((SECONDS - start)) s)"
  PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/pdl_python timeout 40 python3 bench/compare.py --workloads decode,w2,w1 \
    --seq-lens 1024,4096 --out-dir $R/cmp_pdl_$1 --time-per-system 0.2 --max-reps 20 --commit dabe4f6 > $R/cmp_pdl_$1.log 2>&1
  grep -A6 "K/V read bandwidth" $R/cmp_pdl_$1.log | tail -3; grep "^| W" $R/cmp_pdl_$1.log | cut -d'|' -f2,6,11
  rm -f $R/cmp_pdl_$1/compare.png
}
cmp 1; keep
cmp 2; keep
echo "done at $((SECONDS - start)) s"
