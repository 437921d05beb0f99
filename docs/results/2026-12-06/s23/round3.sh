#!/usr/bin/env bash
# Session 23, round 3: B=1's per-call times and clocks (b1probe), B=1 under ncu (both systems), pages of 64.
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r3 && mkdir -p $R
keep() { tar -C $R -cJf $OUT/r3.tar.xz .; }
mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
for p in main st3; do tar -C .carry/pack -xJf .carry/pack/${p}_python.tar.xz; done
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -lms 100 > $R/smi.csv 2>&1 &
smi=$!
export PYTHONUNBUFFERED=1
echo "== b1probe main ($((SECONDS - start)) s)"
PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/main_python timeout 60 python3 .carry/b1probe.py main 2>&1 | grep -v -i warn | tee $R/b1probe.out | cut -c1-160
keep
echo "== ncu B=1 ($((SECONDS - start)) s)"
PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/main_python timeout 120 ncu --profile-from-start off --clock-control none \
  --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum,launch__grid_size,launch__block_size,sm__cycles_active.avg,sm__cycles_elapsed.avg,lts__t_sector_hit_rate.pct \
  python3 .carry/b1ncu.py > $R/b1ncu.out 2>&1
grep -E "splits|^  [a-zA-Z_]+.*\(|gpu__time|dram__|launch__grid|sm__cycles|lts__" $R/b1ncu.out | cut -c1-150 | head -90
keep
for p in main st3; do
  echo "== page64 $p ($((SECONDS - start)) s)"
  PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/${p}_python timeout 90 python3 .carry/page64.py $p 2>&1 | grep -v -i warn | tee -a $R/page64.out
  keep
done
kill $smi; keep
echo "done at $((SECONDS - start)) s"
