#!/usr/bin/env bash
# Session 22, round 2 (prepared, not run: the device time was spent): B=1's slow passes (per-call times and clocks),
# 3 K/V stages at head_dim 128 (pack st3) against main on the decode rows, pages of 64 under both schedules, W1/W2.
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r2 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
keep() { tar -C $R -cJf $OUT/r2.tar.xz .; }
mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
for p in main st3; do tar -C .carry/pack -xJf .carry/pack/${p}_python.tar.xz; done
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -lms 100 > $R/smi.csv 2>&1 &
smi=$!
export PYTHONUNBUFFERED=1
for p in main st3 main; do
  echo "== b1probe $p ($((SECONDS - start)) s)"
  PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/${p}_python timeout 60 python3 .carry/b1probe.py $p 2>&1 | grep -v -i warn | tee -a $R/b1probe.out
  keep
done
for p in st3 main st3 main; do
  echo "== decode $p ($((SECONDS - start)) s)"
  PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/${p}_python timeout 60 python3 bench/compare.py --workloads decode \
    --out-dir $R/dec_${p}_$SECONDS --time-per-system 0.2 --max-reps 20 > $R/dec_${p}_$SECONDS.log 2>&1
  grep -A6 "K/V read bandwidth" $(ls -t $R/dec_${p}_*.log | head -1) | tail -3
  keep
done
echo "== compare st3 w1,w2 ($((SECONDS - start)) s)"
PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/st3_python timeout 90 python3 bench/compare.py --workloads w2,w1 \
  --seq-lens 1024,4096 --out-dir $R/cmp_st3 --time-per-system 0.2 --max-reps 20 > $R/cmp_st3.log 2>&1
grep "^| W" $R/cmp_st3.log | cut -d'|' -f2,6,11
kill $smi; rm -f $R/*/compare.png; keep
echo "done at $((SECONDS - start)) s"
