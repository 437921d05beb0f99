#!/usr/bin/env bash
# Session 22, round 1: verify main (aeb2dbb) and run compare.py twice.
# Carry .carry
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r1 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader | tee $R/gpu.txt
keep() { tar -C $R -cJf $OUT/r1.tar.xz .; }
# [Lines omitted from this copy: they built FlashAttention-3's hopper/ extension in the background into
#  /tmp/fa3/hopper (docs/benchmarks.md, "How to reproduce"); the repository keeps no recipe that builds a peer.]
export PYTHONUNBUFFERED=1
OUT=$R .carry/tools/verify.sh main verify_aeb2dbb gpu sanitize validate:decode validate pytest 2>&1 | tail -8
keep
# [omitted: waiting for that build]
# [omitted: the built FA3 package packed into $OUT]
tar -C .carry/pack -xJf .carry/pack/main_python.tar.xz
for pass in 1 2; do
  echo "== compare pass $pass ($((SECONDS - start)) s)"
  PYTHONPATH=/tmp/fa3/hopper:$ROOT/.carry/pack/main_python timeout 90 python3 bench/compare.py --workloads decode,w2,w1 \
    --seq-lens 1024,4096 --out-dir $R/cmp_main_$pass --time-per-system 0.2 --max-reps 20 --commit aeb2dbb > $R/cmp_main_$pass.log 2>&1
  grep -A6 "K/V read bandwidth" $R/cmp_main_$pass.log | tail -4; grep "^| W" $R/cmp_main_$pass.log | cut -d'|' -f2,6,11
  rm -f $R/cmp_main_$pass/compare.png; keep
done
if [ -f .carry/pack/st3_python.tar.xz ]; then
  tar -C .carry/pack -xJf .carry/pack/st3_python.tar.xz
  for p in st3 main st3; do
    echo "== decode $p ($((SECONDS - start)) s)"
    PYTHONPATH=/tmp/fa3/hopper:$ROOT/.carry/pack/${p}_python timeout 60 python3 bench/compare.py --workloads decode \
      --out-dir $R/dec_$p --time-per-system 0.2 --max-reps 20 > $R/dec_${p}_$SECONDS.log 2>&1
    grep -A6 "K/V read bandwidth" $(ls -t $R/dec_${p}_*.log | head -1) | tail -3; rm -f $R/dec_$p/compare.png
  done; keep
fi
echo "== sweep22 main ($((SECONDS - start)) s)"
PYTHONPATH=/tmp/fa3/hopper:$ROOT/.carry/pack/main_python timeout 75 python3 .carry/sweep22.py main 2>&1 | grep -v -i warn > $R/sweep22_main.out
cut -c1-200 $R/sweep22_main.out; keep
echo "done at $((SECONDS - start)) s"
