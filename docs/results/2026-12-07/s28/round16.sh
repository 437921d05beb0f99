#!/usr/bin/env bash
# Session 28: candidate bb00015 (epilogue staging of its own at head_dim 128's standard ring) beside fix 6795404.
# Smoke first (W1 S=512 once, 60 s cap), then verify cand, then W1+W2 interleaved twice: pre (469074d), fix, cand
# (+ decode). B seconds.
set -uo pipefail
start=$SECONDS; B=${B:-420}; ROOT=$PWD
R=$OUT/r16 && mkdir -p $R
keep() { rm -rf $R/sanitize-*/*.bin; find $R -name compare.png -delete; tar -C $R -cJf $OUT/r16.tar.xz .; }
mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
for p in fix cand; do tar -C .carry/pack -xJf .carry/pack/${p}_python.tar.xz; done
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $R/gpu.txt
PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/cand_python timeout 60 python3 .carry/w1ncu.py 512 > $R/smoke.log 2>&1; rc=$?
echo "smoke rc=$rc"; tail -2 $R/smoke.log; [ $rc -eq 0 ] || { keep; exit 1; }
OUT=$R .carry/tools/verify.sh cand verify_cand gpu sanitize validate:decode validate pytest 2>&1 | grep RESULT
grep -h "sanitizer cases:" $R/verify_cand.log | head -1
keep; echo "== verified at $((SECONDS - start)) s"
export PYTHONUNBUFFERED=1
S="--time-per-system 0.1 --max-reps 20"
for i in 1 2; do
  for t in pre fix cand; do
    left=$((B - 5 - (SECONDS - start))); [ $left -lt 40 ] && break 2
    tl=$(( left < 90 ? left : 90 ))
    case $t in
      pre) PYTHONPATH=/tmp/fa3p timeout $tl python3 .carry/pre12/bench/compare.py --lib .carry/pre12/libptxattn.so --workloads w1,w2 $S --commit 469074d --out-dir $R/$t.$i ;;
      fix) PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/fix_python timeout $tl python3 bench/compare.py --workloads w1,w2 $S --commit 6795404 --out-dir $R/$t.$i ;;
      cand) PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/cand_python timeout $tl python3 bench/compare.py --workloads w1,w2,decode $S --commit bb00015 --out-dir $R/$t.$i ;;
    esac > $R/$t.$i.log 2>&1
    echo "== $t $i rc=$? at $((SECONDS - start)) s"; grep -E "^\| W1 S=(512|1024) full|^\| decode" $R/$t.$i.log | head -5 | cut -d'|' -f2-8
    keep
  done
done
keep; echo "done at $((SECONDS - start)) s"
