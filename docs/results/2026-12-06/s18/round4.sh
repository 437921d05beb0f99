#!/usr/bin/env bash
# Session 18, device round 4: pack st2c (07427da: head_dim 128 at 2 K/V stages; head_dim 128 only, both dtypes):
# GPU suite, sanitizers, validator (full and decode presets), examples, pytest, then one compare.py pass.
# Carry .carry/s18 .carry/tools .carry/pack/st2c_bins.tar.xz .carry/pack/st2c_python.tar.xz .carry/fa3_pkg.tar.gz
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r4 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
mkdir -p .fa3 && tar -xzf .carry/fa3_pkg.tar.gz -C .fa3
[ -d .carry/pack/st2c_python ] || tar -C .carry/pack -xJf .carry/pack/st2c_python.tar.xz
export PYTHONUNBUFFERED=1
OUT=$R BUDGET=140 T_GPU=70 T_PYTEST=45 .carry/tools/verify.sh st2c verify_07427da gpu sanitize validate validate:decode examples pytest 2>&1 | tail -9
echo "verify done at $((SECONDS - start)) s"
[ $((SECONDS - start)) -lt 160 ] && PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/st2c_python timeout 30 python3 bench/compare.py \
  --workloads decode,w2,w1 --seq-lens 1024,4096 --out-dir $R/cmp_st2c --time-per-system 0.2 --max-reps 20 --commit 07427da > $R/cmp_st2c.log 2>&1
grep -A6 "K/V read bandwidth" $R/cmp_st2c.log | tail -3; grep "^| W" $R/cmp_st2c.log | cut -c1-80; rm -f $R/cmp_st2c/compare.png
tar -C $R -cJf $OUT/r4.tar.xz .
echo "done at $((SECONDS - start)) s"
