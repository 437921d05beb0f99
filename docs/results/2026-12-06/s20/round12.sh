#!/usr/bin/env bash
# Twentieth session: the split rule (pack spl = e3a0d3a, branch feat/split-balance): the GPU suite, sanitizers,
# validator presets, examples, pytest; then decode shapes (sweep21.py) on spl and pdl (main) against FA3, and
# compare.py (the #12 rows) on spl.
# Carry .carry/s20 .carry/tools .carry/pack/spl_{bins,python}.tar.xz .carry/pack/pdl_python.tar.xz .carry/fa3_pkg.tar.gz
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r12 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
mkdir -p .fa3 && tar -xzf .carry/fa3_pkg.tar.gz -C .fa3
for p in spl pdl; do [ -d .carry/pack/${p}_python ] || tar -C .carry/pack -xJf .carry/pack/${p}_python.tar.xz; done
export PYTHONUNBUFFERED=1
keep() { tar -C $R -cJf $OUT/r12.tar.xz .; }
OUT=$R BUDGET=240 .carry/tools/verify.sh spl verify_e3a0d3a gpu sanitize validate:decode validate examples pytest 2>&1 | tail -9
keep
sweep() {  # pack
  echo "== sweep $1 ($((SECONDS - start)) s)"
  PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/$1_python timeout 100 python3 .carry/s20/sweep21.py $1 2>&1 | grep -v -i warn | tee $R/sweep21_$1.out | cut -c1-200
}
sweep spl; keep
sweep pdl; keep
echo "== compare spl ($((SECONDS - start)) s)"
PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/spl_python timeout 45 python3 bench/compare.py --workloads decode,w2,w1 \
  --seq-lens 1024,4096 --out-dir $R/cmp_spl --time-per-system 0.2 --max-reps 20 --commit e3a0d3a > $R/cmp_spl.log 2>&1
grep -A6 "K/V read bandwidth" $R/cmp_spl.log | tail -3; grep "^| W" $R/cmp_spl.log | cut -d'|' -f2,6,11
rm -f $R/cmp_spl/compare.png; keep
echo "done at $((SECONDS - start)) s"
