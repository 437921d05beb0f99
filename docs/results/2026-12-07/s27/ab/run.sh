#!/usr/bin/env bash
# The twenty-seventh session's third H100 call, as run (one line there): compare.py on the `main` and
# `rule` packs in turn, twice. The `main` pack predates --kv-stages and failed to plan, so only the
# rule's logs are kept. Packs and the FA3 package are the session's carried files, not in the repository.
set -u; mkdir -p /tmp/fa3p && tar xzf .carry/fa3_pkg.tar.gz -C /tmp/fa3p
cd .carry/pack && for p in main rule; do tar -xJf ${p}_python.tar.xz; done; cd ../..
R=$OUT/ab; mkdir -p $R; export PYTHONUNBUFFERED=1
for p in main rule main rule; do
  PYTHONPATH=/tmp/fa3p:$PWD/.carry/pack/${p}_python timeout 70 python3 bench/compare.py --workloads w2,w1,decode \
    --seq-lens 1024,4096,16384 --time-per-system 0.2 --max-reps 20 --out-dir $R/$p.$RANDOM >> $R/$p.log 2>&1
done
