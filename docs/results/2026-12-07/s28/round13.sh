#!/usr/bin/env bash
# Session 28. (1) Verify pack fix (6795404: consumer 1's pass a vote of its own). (2) W1 S=512,1024,4096,
# interleaved twice: 469074d (pre, ctypes), 11e585f 0fc6742 98b6666 3da1edb (ctypes, each its own compare.py
# and libptxattn.so), 0f5fdaf (first package-timed compare.py), c4e19fa, 6c425ef, main d8a1b21 (m27), fix.
# (3) The claim candidate: fix's full compare.py (w1,w2,decode) and pre's w1,w2, same call. B seconds.
set -uo pipefail
start=$SECONDS; B=${B:-540}; ROOT=$PWD
R=$OUT/r13 && mkdir -p $R
keep() { rm -rf $R/sanitize-*/*.bin; find $R -name compare.png -delete; tar -C $R -cJf $OUT/r13.tar.xz .; }
mkdir -p /tmp/fa3p /tmp/bis && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
for f in .carry/bis/c4e19fa.tar.xz .carry/bis/6c425ef.tar.xz .carry/bis2/*.tar.xz; do tar -C /tmp/bis -xJf $f; done
for p in m27 fix; do tar -C .carry/pack -xJf .carry/pack/${p}_python.tar.xz; done
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
OUT=$R .carry/tools/verify.sh fix verify_fix gpu sanitize validate:decode validate pytest 2>&1 | grep RESULT
grep -h "sanitizer cases:" $R/verify_fix.log | head -2
keep; echo "== verified at $((SECONDS - start)) s"
export PYTHONUNBUFFERED=1
ARGS="--workloads w1 --seq-lens 512,1024,4096 --time-per-system 0.1 --max-reps 20"
one() {  # tag
  local t=$1 left=$((B - 5 - (SECONDS - start))); [ $left -lt 15 ] && return 1
  local tl=$(( left < 40 ? left : 40 ))
  case $t in
    pre) PYTHONPATH=/tmp/fa3p timeout $tl python3 .carry/pre12/bench/compare.py --lib .carry/pre12/libptxattn.so $ARGS --commit 469074d --out-dir $R/$t.$i ;;
    11e585f|0fc6742|98b6666|3da1edb) PYTHONPATH=/tmp/fa3p timeout $tl python3 /tmp/bis/$t/bench/compare.py --lib /tmp/bis/$t/libptxattn.so $ARGS --commit $t --out-dir $R/$t.$i ;;
    main) PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/m27_python timeout $tl python3 bench/compare.py $ARGS --commit d8a1b21 --out-dir $R/$t.$i ;;
    fix) PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/fix_python timeout $tl python3 bench/compare.py $ARGS --commit 6795404 --out-dir $R/$t.$i ;;
    *) PYTHONPATH=/tmp/fa3p:/tmp/bis/$t timeout $tl python3 /tmp/bis/$t/bench/compare.py $ARGS --commit $t --out-dir $R/$t.$i ;;
  esac > $R/$t.$i.log 2>&1
  echo "== $t $i rc=$? at $((SECONDS - start)) s"; grep -E "^\| W1 S=(512|1024) full" $R/$t.$i.log | head -2 | cut -d'|' -f2-7
}
for i in 1 2; do
  for t in pre 11e585f 0fc6742 98b6666 3da1edb 0f5fdaf c4e19fa 6c425ef main fix; do one $t || break 2; done
  keep
done
# the claim candidate, with the code before #12 beside it
left=$((B - 10 - (SECONDS - start)))
if [ $left -gt 100 ]; then
  PYTHONPATH=/tmp/fa3p timeout 45 python3 .carry/pre12/bench/compare.py --lib .carry/pre12/libptxattn.so --workloads w1,w2 \
    --commit 469074d --time-per-system 0.1 --max-reps 20 --out-dir $R/claim_pre > $R/claim_pre.log 2>&1; echo "== claim pre rc=$?"
  left=$((B - 10 - (SECONDS - start)))
  PYTHONPATH=/tmp/fa3p:$ROOT/.carry/pack/fix_python PTXATTN_COMMIT=6795404 timeout $left python3 bench/compare.py --workloads w1,w2,decode \
    --commit 6795404 --out-dir $R/claim_fix > $R/claim_fix.log 2>&1; echo "== claim fix rc=$?"
  grep -E "^\| decode" $R/claim_fix.log | tail -3
fi
keep; echo "done at $((SECONDS - start)) s"
