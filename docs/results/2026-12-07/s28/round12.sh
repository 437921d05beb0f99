#!/usr/bin/env bash
# Prepared in session 27 (not run). Which commit costs W1 S=512/1024 full 2-4% (H100, session 27's r11)?
# Interleaved rounds on W1 S=512,1024,4096: 469074d (before #12, ctypes, .carry/pre12), c4e19fa (s13),
# 0a2ea49 (idle consumer, 3 stages), 6c425ef (2 stages at head_dim 128), d26d225 (idle warpgroup at every
# head dim), main d8a1b21 (pack m27), and main with --kv-stages 3 (gather rows only). Each old commit runs
# its own bench/compare.py on its own package (.carry/bis/<commit>.tar.xz, head_dim 128 bf16). First the
# validator with --kv-stages=3 (decode and full presets, about 40 s). B seconds.
set -uo pipefail
start=$SECONDS; B=${B:-300}; ROOT=$PWD
R=$OUT/r12 && mkdir -p $R
keep() { find $R -name compare.png -delete; tar -C $R -cJf $OUT/r12.tar.xz .; }
mkdir -p /tmp/fa3p /tmp/bis && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
for c in c4e19fa 0a2ea49 6c425ef d26d225; do tar -C /tmp/bis -xJf .carry/bis/$c.tar.xz; done
tar -C .carry/pack -xJf .carry/pack/m27_python.tar.xz
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $R/gpu.txt
# the validator on the forced deep ring (never run on a device yet): decode and full presets
tar -C .carry/pack -xJf .carry/pack/m27_bins.tar.xz
for preset in decode full; do
  LD_LIBRARY_PATH=.carry/pack/m27_bins timeout 120 .carry/pack/m27_bins/ptxattn-validate --preset=$preset --pollute=all \
    --kv-stages=3 --only-failures --no-progress > $R/validate_st3_$preset.log 2>&1; echo "validate --kv-stages=3 $preset rc=$?"
  tail -2 $R/validate_st3_$preset.log
done
export PYTHONUNBUFFERED=1
ARGS="--workloads w1 --seq-lens 512,1024,4096 --time-per-system 0.1 --max-reps 20"
one() {  # tag
  local t=$1 left=$((B - 5 - (SECONDS - start))); [ $left -lt 15 ] && return 1
  local tl=$(( left < 40 ? left : 40 ))
  case $t in
    pre) PYTHONPATH=/tmp/fa3p timeout $tl python3 .carry/pre12/bench/compare.py --lib .carry/pre12/libptxattn.so $ARGS --commit 469074d --out-dir $R/$t.$i ;;
    main) PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/m27_python timeout $tl python3 bench/compare.py $ARGS --commit d8a1b21 --out-dir $R/$t.$i ;;
    st3) PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/m27_python timeout $tl python3 bench/compare.py $ARGS --kv-stages 3 --commit d8a1b21 --out-dir $R/$t.$i ;;
    *) PYTHONPATH=/tmp/fa3p:/tmp/bis/$t timeout $tl python3 /tmp/bis/$t/bench/compare.py $ARGS --commit $t --out-dir $R/$t.$i ;;
  esac > $R/$t.$i.log 2>&1
  echo "== $t $i rc=$? at $((SECONDS - start)) s"; grep -E "^\| W1 S=(512|1024) full" $R/$t.$i.log | head -2 | cut -d'|' -f2-7
}
for i in 1 2; do
  for t in pre c4e19fa 0a2ea49 6c425ef d26d225 main st3; do one $t || break 2; done
  keep
done
keep; echo "done at $((SECONDS - start)) s"
