#!/usr/bin/env bash
# Session 28: ncu of W1 full ragged S=512 and S=4096 on pack fix (6795404): per-instruction stall samples, by role.
set -uo pipefail
start=$SECONDS; R=$OUT/r15 && mkdir -p $R
keep() { tar -C $R -cJf $OUT/r15.tar.xz .; }
mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
tar -C .carry/pack -xJf .carry/pack/fix_python.tar.xz
for S in 512 4096; do
  PYTHONPATH=/tmp/fa3p:$PWD/.carry/pack/fix_python timeout 200 ncu --profile-from-start off -k regex:prefill_kernel -c 1 \
    --section SourceCounters --section WarpStateStats --section SpeedOfLight --import-source yes \
    -o $R/s$S python3 .carry/w1ncu.py $S > $R/ncu_s$S.log 2>&1; echo "ncu S=$S rc=$? at $((SECONDS - start)) s"
  tail -3 $R/ncu_s$S.log
  ncu -i $R/s$S.ncu-rep --page source --csv --print-source sass > $R/s$S.csv 2>$R/s$S.err
  ncu -i $R/s$S.ncu-rep --page details > $R/s$S.details.txt 2>&1
  python3 scripts/ncu_by_role.py $R/s$S.csv > $R/s$S.roles.txt 2>&1; head -40 $R/s$S.roles.txt
  xz -9 $R/s$S.csv; rm -f $R/s$S.ncu-rep
  keep
done
echo "done at $((SECONDS - start)) s"
