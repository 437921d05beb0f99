#!/usr/bin/env bash
# Twenty-first session, again after the stale test objects: per-tile split counts (pack tsp = 3ce45f3, branch feat/tile-splits): the GPU suite,
# sanitizers, validator presets, examples, pytest, the two bugs of split-KV; then compare.py (the #12 rows)
# and the decode shapes (sweep22.py) on tsp and on spl2 (main's split rule).
# Carry .carry/s21 .carry/tools .carry/pack/{tsp,spl2}_{bins,python}.tar.xz .carry/pack/tsp_extra .carry/fa3_pkg.tar.gz
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r15 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
mkdir -p .fa3 && tar -xzf .carry/fa3_pkg.tar.gz -C .fa3
for p in tsp spl2; do [ -d .carry/pack/${p}_python ] || tar -C .carry/pack -xJf .carry/pack/${p}_python.tar.xz; done
export PYTHONUNBUFFERED=1
keep() { tar -C $R -cJf $OUT/r15.tar.xz .; }
OUT=$R BUDGET=150 .carry/tools/verify.sh tsp verify_tsp gpu sanitize validate:decode validate examples pytest 2>&1 | tail -9
keep
OUT=$R BUDGET=60 BUGLIST='merge_other_tokens_states:[split-kv];split_state_unwritten:[split-kv]' .carry/tools/verify.sh tsp bugs_tsp bugs 2>&1 | tail -4
keep
echo "== compare tsp ($((SECONDS - start)) s)"
PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/tsp_python timeout 30 python3 bench/compare.py --workloads decode,w2,w1 \
  --seq-lens 1024,4096 --out-dir $R/cmp_tsp --time-per-system 0.2 --max-reps 20 --commit 3ce45f3 > $R/cmp_tsp.log 2>&1
grep -A6 "K/V read bandwidth" $R/cmp_tsp.log | tail -3; grep "^| W" $R/cmp_tsp.log | cut -d'|' -f2,6,11
rm -f $R/cmp_tsp/compare.png; keep
for p in tsp; do
  echo "== sweep $p ($((SECONDS - start)) s)"
  PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/${p}_python timeout 60 python3 .carry/s21/sweep22.py $p 2>&1 | grep -v -i warn > $R/sweep22_$p.out
  cut -c1-200 $R/sweep22_$p.out; keep
done
echo "done at $((SECONDS - start)) s"
