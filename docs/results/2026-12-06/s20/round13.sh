#!/usr/bin/env bash
# Twentieth session: the split rule (pack spl2 = 01ee8bd, branch feat/split-balance): the GPU suite, sanitizers,
# validator presets, examples, pytest; then compare.py (the #12 rows) and the decode shapes (sweep21.py) on spl2.
# Carry .carry/s20 .carry/tools .carry/pack/spl2_{bins,python}.tar.xz .carry/fa3_pkg.tar.gz
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r13 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
mkdir -p .fa3 && tar -xzf .carry/fa3_pkg.tar.gz -C .fa3
[ -d .carry/pack/spl2_python ] || tar -C .carry/pack -xJf .carry/pack/spl2_python.tar.xz
export PYTHONUNBUFFERED=1
keep() { tar -C $R -cJf $OUT/r13.tar.xz .; }
OUT=$R BUDGET=135 .carry/tools/verify.sh spl2 verify_01ee8bd gpu sanitize validate:decode validate examples pytest 2>&1 | tail -9
keep
echo "== compare spl2 ($((SECONDS - start)) s)"
PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/spl2_python timeout 30 python3 bench/compare.py --workloads decode,w2,w1 \
  --seq-lens 1024,4096 --out-dir $R/cmp_spl2 --time-per-system 0.2 --max-reps 20 --commit 01ee8bd > $R/cmp_spl2.log 2>&1
grep -A6 "K/V read bandwidth" $R/cmp_spl2.log | tail -3; grep "^| W" $R/cmp_spl2.log | cut -d'|' -f2,6,11
rm -f $R/cmp_spl2/compare.png; keep
echo "== sweep spl2 ($((SECONDS - start)) s)"
PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/spl2_python timeout 40 python3 .carry/s20/sweep21.py spl2 2>&1 | grep -v -i warn > $R/sweep21_spl2.out
cut -c1-200 $R/sweep21_spl2.out; keep
echo "done at $((SECONDS - start)) s"
