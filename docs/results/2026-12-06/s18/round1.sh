#!/usr/bin/env bash
# Session 18, device round 1: pack idle1 (0a2ea49, hd128 bf16 only: consumer 1 idle on items whose rows all lie
# in consumer 0's half) against pack cand (main's kernels): GPU suite and decode validator on idle1, persm.py
# per-SM rates, compare.py passes.
# Carry .carry/s18 .carry/tools .carry/pack/idle1_bins.tar.xz .carry/pack/idle1_python.tar.xz
#       .carry/pack/cand_python.tar.xz .carry/fa3_pkg.tar.gz
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r1 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
mkdir -p .fa3 && tar -xzf .carry/fa3_pkg.tar.gz -C .fa3
for p in cand idle1; do [ -d .carry/pack/${p}_python ] || tar -C .carry/pack -xJf .carry/pack/${p}_python.tar.xz; done
export PYTHONUNBUFFERED=1
OUT=$R BUDGET=230 T_GPU=120 T_SANITIZE=80 .carry/tools/verify.sh idle1 verify_idle1 gpu validate:decode sanitize:synccheck,racecheck 2>&1 | tail -14
echo "verify done at $((SECONDS - start)) s"
run() { echo "## $*" >> $R/persm.out; PYTHONPATH=.fa3/pkg:.carry/pack/$1_python timeout 90 python3 .carry/s18/persm.py "${@:2}" >> $R/persm.out 2>&1; }
run cand 16 dynamic
run idle1 16 dynamic
run cand 64 dynamic
run idle1 64 dynamic
cat $R/persm.out
echo "persm done at $((SECONDS - start)) s"
cmp() {  # pack name pass
  echo "== $2 pass $3 ($((SECONDS - start)) s)"
  PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/$1_python timeout 80 python3 bench/compare.py --workloads decode,w2,w1 \
    --seq-lens 1024,4096 --out-dir $R/cmp_$2_$3 --time-per-system 0.2 --max-reps 20 --commit $4 > $R/cmp_$2_$3.log 2>&1
  echo "status $?"
  grep -A6 "K/V read bandwidth" $R/cmp_$2_$3.log | tail -4; grep "^| W" $R/cmp_$2_$3.log | cut -c1-110
  rm -f $R/cmp_$2_$3/compare.png
}
cmp idle1 idle1 1 0a2ea49
cmp cand cand 1 3b1afb7
[ $((SECONDS - start)) -lt 500 ] && cmp idle1 idle1 2 0a2ea49
tar -C $R -cJf $OUT/r1.tar.xz .
echo "done at $((SECONDS - start)) s"
