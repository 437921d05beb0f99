#!/usr/bin/env bash
# Session 28: the claim run for #12. Interleaved rounds, identical settings: 469074d (pre: before #12, its own
# ctypes compare.py) w1,w2; main d8a1b21 (pack m27) w1,w2; fix 6795404 (pack fix) w1,w2,decode. B seconds.
set -uo pipefail
start=$SECONDS; B=${B:-420}; ROOT=$PWD
R=$OUT/r14 && mkdir -p $R
keep() { find $R -name compare.png -delete; tar -C $R -cJf $OUT/r14.tar.xz .; }
mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
for p in m27 fix; do tar -C .carry/pack -xJf .carry/pack/${p}_python.tar.xz; done
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
export PYTHONUNBUFFERED=1
S="--time-per-system 0.1 --max-reps 20"
for i in 1 2 3; do
  for t in pre fix main; do
    left=$((B - 5 - (SECONDS - start))); [ $left -lt 40 ] && break 2
    tl=$(( left < 90 ? left : 90 ))
    case $t in
      pre) PYTHONPATH=/tmp/fa3p timeout $tl python3 .carry/pre12/bench/compare.py --lib .carry/pre12/libptxattn.so --workloads w1,w2 $S --commit 469074d --out-dir $R/$t.$i ;;
      main) PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/m27_python timeout $tl python3 bench/compare.py --workloads w1,w2 $S --commit d8a1b21 --out-dir $R/$t.$i ;;
      fix) PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/fix_python timeout $tl python3 bench/compare.py --workloads w1,w2,decode $S --commit 6795404 --out-dir $R/$t.$i ;;
    esac > $R/$t.$i.log 2>&1
    echo "== $t $i rc=$? at $((SECONDS - start)) s"; grep -E "^\| W1 S=512 full|^\| decode" $R/$t.$i.log | head -4 | cut -d'|' -f2-8
    keep
  done
done
keep; echo "done at $((SECONDS - start)) s"
