#!/usr/bin/env bash
# Session 28: the long GQA rows of round17 (GQA 32/8 S=8192, and W1 S=8192/16384 full paged16 beside them),
# fix 6795404 against cand bb00015, alternating three times. B seconds.
set -uo pipefail
start=$SECONDS; B=${B:-120}; R=$OUT/r18 && mkdir -p $R
for p in fix cand; do tar -C .carry/pack -xJf .carry/pack/${p}_bins.tar.xz; done
F='GQA32-8/S:8192|W1/S:8192/full/paged16/|W1/S:16384/full/paged16/'
for i in 1 2 3; do
  for t in fix cand; do
    left=$((B - 3 - (SECONDS - start))); [ $left -lt 10 ] && break 2
    LD_LIBRARY_PATH=.carry/pack/${t}_bins timeout $left .carry/pack/${t}_bins/ptxattn-bench --benchmark_filter="$F" \
      --benchmark_min_time=0.2 > $R/$t.$i.log 2>&1
    echo "== $t $i rc=$? at $((SECONDS - start)) s"; grep "^prefill" $R/$t.$i.log | awk '{print $1, $2, $3}'
  done
done
tar -C $R -cJf $OUT/r18.tar.xz .
