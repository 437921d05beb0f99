#!/usr/bin/env bash
# Session 27: W1 and W2 before #12 (469074d, its own ctypes compare.py and libptxattn.so, head_dim 128 bf16)
# against main d8a1b21 (pack m27, compare.py through the package), alternating in one call, in B seconds.
# .carry/pre12 held 469074d's bench/ and its build's libptxattn.so (meson setup --buildtype=release
# -Dhead_dims=128 -Ddtypes=bf16 -Dtests=disabled -Dvalidator=disabled -Dbench=disabled).
set -uo pipefail
start=$SECONDS; B=${B:-160}; ROOT=$PWD
R=$OUT/r11 && mkdir -p $R
keep() { find $R -name compare.png -delete; tar -C $R -cJf $OUT/r11.tar.xz .; }
mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
tar -C .carry/pack -xJf .carry/pack/m27_python.tar.xz
nvidia-smi --query-gpu=name --format=csv,noheader | tee $R/gpu.txt
export PYTHONUNBUFFERED=1
for i in 1 2; do
  for who in pre main; do
    left=$((B - 5 - (SECONDS - start))); [ $left -lt 20 ] && break 2
    t=$(( left < 45 ? left : 45 ))
    if [ $who = pre ]; then
      PYTHONPATH=/tmp/fa3p timeout $t python3 .carry/pre12/bench/compare.py --lib .carry/pre12/libptxattn.so --workloads w1,w2 \
        --commit 469074d --time-per-system 0.1 --max-reps 20 --out-dir $R/pre_$i > $R/pre_$i.log 2>&1
    else
      PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/m27_python timeout $t python3 bench/compare.py --workloads w1,w2 \
        --commit d8a1b21 --time-per-system 0.1 --max-reps 20 --out-dir $R/main_$i > $R/main_$i.log 2>&1
    fi
    echo "== $who $i rc=$? at $((SECONDS - start)) s"; keep
  done
done
keep
