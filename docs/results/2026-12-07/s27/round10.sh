#!/usr/bin/env bash
# Session 27: pack m27 = main d8a1b21 (the 2-stage ring by default, no rule). Verify it, then the full
# compare.py (w1,w2,decode) twice, in B seconds.
set -uo pipefail
start=$SECONDS; B=${B:-260}; ROOT=$PWD
R=$OUT/r10 && mkdir -p $R
keep() { rm -rf $R/sanitize-*/*.bin; find $R -name compare.png -delete; tar -C $R -cJf $OUT/r10.tar.xz .; }
mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
tar -C .carry/pack -xJf .carry/pack/m27_python.tar.xz
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.memory,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
OUT=$R .carry/tools/verify.sh m27 verify_m27 ${STEPS-gpu sanitize validate:decode validate pytest} 2>&1 | grep RESULT
grep -h "K/V stages suite\|sanitizer cases:" $R/verify_m27.log | head -3
keep; echo "== verified at $((SECONDS - start)) s"
export PYTHONUNBUFFERED=1 PTXATTN_COMMIT=d8a1b21
for i in 1 2; do
  left=$((B - 10 - (SECONDS - start))); [ $left -lt 30 ] && break
  PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/m27_python timeout $left python3 bench/compare.py --workloads w1,w2,decode \
    --out-dir $R/full_m27_$i > $R/full_m27_$i.log 2>&1
  grep -E "^\| W" $R/full_m27_$i.log | cut -d'|' -f2,6,11,22; grep -E "^\| decode" $R/full_m27_$i.log | tail -3; keep
done
echo "done at $((SECONDS - start)) s"
