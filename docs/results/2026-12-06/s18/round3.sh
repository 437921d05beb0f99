#!/usr/bin/env bash
# Session 18, device round 3: pack st2 (5551da0, 2 K/V stages in every kernel, hd128 bf16) against idlef
# (0a2ea49): compare.py (decode, W1, W2) interleaved, persm.py, and ncu of FA3 paged16 on B=64 (DRAM, L2, SM
# active cycles), its kernel matched by demangled name.
# Carry .carry/s18 .carry/pack/idlef_python.tar.xz .carry/pack/st2_python.tar.xz .carry/fa3_pkg.tar.gz
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r3 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
mkdir -p .fa3 && tar -xzf .carry/fa3_pkg.tar.gz -C .fa3
for p in idlef st2; do [ -d .carry/pack/${p}_python ] || tar -C .carry/pack -xJf .carry/pack/${p}_python.tar.xz; done
export PYTHONUNBUFFERED=1
cmp() {  # pack name pass commit [workloads]
  echo "== $2 pass $3 ($((SECONDS - start)) s)"
  PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/$1_python timeout 80 python3 bench/compare.py --workloads ${5:-decode,w2,w1} \
    --seq-lens 1024,4096 --out-dir $R/cmp_$2_$3 --time-per-system 0.2 --max-reps 20 --commit $4 > $R/cmp_$2_$3.log 2>&1
  echo "status $?"
  grep -A6 "K/V read bandwidth" $R/cmp_$2_$3.log | tail -3; grep "^| W" $R/cmp_$2_$3.log | cut -c1-80
  rm -f $R/cmp_$2_$3/compare.png
}
for i in 1 2; do
  [ $((SECONDS - start)) -lt 200 ] && cmp st2 st2 $i 5551da0
  [ $((SECONDS - start)) -lt 210 ] && cmp idlef idlef $i 0a2ea49
done
run() { echo "## $*" >> $R/persm.out; PYTHONPATH=.fa3/pkg:.carry/pack/$1_python timeout 60 python3 .carry/s18/persm.py "${@:2}" >> $R/persm.out 2>&1; }
[ $((SECONDS - start)) -lt 230 ] && run st2 16 dynamic
[ $((SECONDS - start)) -lt 245 ] && run idlef 16 dynamic
cat $R/persm.out
M="gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_ltcfabric.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_active.min,gpc__cycles_elapsed.max"
[ $((SECONDS - start)) -lt 265 ] && PYTHONPATH=.fa3/pkg:.carry/pack/idlef_python timeout 70 ncu --metrics $M --csv \
  --kernel-name-base demangled --kernel-name regex:"prefill_kernel|FlashAttn" \
  python3 .carry/s18/ncu_decode.py dynamic "decode qo=1 kv=32768 B=64" > $R/ncu_b64_fa3.csv 2> $R/ncu_b64_fa3.err
echo "ncu status $? at $((SECONDS - start)) s"
python3 - $R/ncu_b64_fa3.csv <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 14 and r[0] != "ID"]
by = collections.defaultdict(dict)
for r in rows: by[(r[0], r[4][:40])][r[12]] = r[14]
for (i, k), m in sorted(by.items(), key=lambda x: int(x[0][0])):
    print(i, k, "  ".join(f"{n}={v}" for n, v in m.items()))
PY
tar -C $R -cJf $OUT/r3.tar.xz .
echo "done at $((SECONDS - start)) s"
