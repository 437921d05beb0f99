#!/usr/bin/env bash
# Session 18, device round 2: the full verification of pack idlef (0a2ea49, every head dim and dtype, the bug and
# bounded-wait builds), ncu DRAM and L2 traffic of B=64 (idlef against FA3 paged16), and compare.py on idlef.
# and decode-only compare.py passes of pack st2 (5551da0: 2 K/V stages) against idlef.
# Carry .carry/s18 .carry/tools .carry/pack/idlef_{bins,extra,python}.tar.xz .carry/pack/st2_python.tar.xz .carry/fa3_pkg.tar.gz
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r2 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
mkdir -p .fa3 && tar -xzf .carry/fa3_pkg.tar.gz -C .fa3
for p in idlef st2; do [ -d .carry/pack/${p}_python ] || tar -C .carry/pack -xJf .carry/pack/${p}_python.tar.xz; done
export PYTHONUNBUFFERED=1
OUT=$R BUDGET=300 T_BUGS=110 T_BW=110 .carry/tools/verify.sh idlef verify_0a2ea49 gpu sanitize validate validate:decode examples bugs pytest bw 2>&1 | tail -16
echo "verify done at $((SECONDS - start)) s"
cmp() {  # pack name pass commit [workloads]
  echo "== $2 pass $3 ($((SECONDS - start)) s)"
  PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/$1_python timeout 80 python3 bench/compare.py --workloads ${5:-decode,w2,w1} \
    --seq-lens 1024,4096 --out-dir $R/cmp_$2_$3 --time-per-system 0.2 --max-reps 20 --commit $4 > $R/cmp_$2_$3.log 2>&1
  echo "status $?"
  grep -A6 "K/V read bandwidth" $R/cmp_$2_$3.log | tail -4; grep "^| W" $R/cmp_$2_$3.log | cut -c1-110
  rm -f $R/cmp_$2_$3/compare.png
}
[ $((SECONDS - start)) -lt 420 ] && cmp idlef idlef 1 0a2ea49
for i in 1 2; do
  [ $((SECONDS - start)) -lt 440 ] && cmp st2 st2 $i 5551da0 decode
  [ $((SECONDS - start)) -lt 450 ] && cmp idlef idlefd $i 0a2ea49 decode
done
M="gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum,lts__t_sectors_srcunit_ltcfabric.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__cycles_active.avg,sm__cycles_active.max,gpc__cycles_elapsed.max"
[ $((SECONDS - start)) -lt 480 ] && PYTHONPATH=.fa3/pkg:.carry/pack/idlef_python timeout 100 ncu --metrics $M --csv --kernel-name regex:"prefill_kernel|FlashAttn|flash" \
  python3 .carry/s18/ncu_decode.py dynamic "decode qo=1 kv=32768 B=64" > $R/ncu_b64_dram.csv 2> $R/ncu_b64_dram.err
echo "ncu status $? at $((SECONDS - start)) s"
python3 - $R/ncu_b64_dram.csv <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 14 and r[0] != "ID"]
by = collections.defaultdict(dict)
for r in rows: by[(r[0], r[4][:60])][r[12]] = r[14]
for (i, k), m in sorted(by.items(), key=lambda x: int(x[0][0])):
    print(i, k, "  ".join(f"{n.split('.')[0].split('__')[-1]}={v}" for n, v in m.items()))
PY
tar -C $R -cJf $OUT/r2.tar.xz .
echo "done at $((SECONDS - start)) s"
