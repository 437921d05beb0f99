#!/usr/bin/env bash
# Session 28: ptxattn-bench, fix 6795404 against cand bb00015 on shapes no issue names (GQA 32/8, pages of 1 and
# 7, the one-item-per-CTA schedule, head dims 64 and 256 whose kernels the candidate leaves alone) and W1 S=512/1024,
# alternating twice. B seconds.
set -uo pipefail
start=$SECONDS; B=${B:-220}; R=$OUT/r17 && mkdir -p $R
keep() { tar -C $R -cJf $OUT/r17.tar.xz .; }
for p in fix cand; do tar -C .carry/pack -xJf .carry/pack/${p}_bins.tar.xz; done
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $R/gpu.txt
F='GQA32-8|/paged1/|/paged7/|W1/S:512/|W1/S:1024/|D64/S:1024|D256/S:1024|W2/causal/paged1/'
for i in 1 2; do
  for t in fix cand; do
    left=$((B - 5 - (SECONDS - start))); [ $left -lt 20 ] && break 2
    LD_LIBRARY_PATH=.carry/pack/${t}_bins timeout $left .carry/pack/${t}_bins/ptxattn-bench --benchmark_filter="$F" --benchmark_min_time=0.15 \
      --benchmark_out=$R/$t.$i.json --benchmark_out_format=json > $R/$t.$i.log 2>&1
    echo "== $t $i rc=$? at $((SECONDS - start)) s"; keep
  done
done
keep; echo "done at $((SECONDS - start)) s"
