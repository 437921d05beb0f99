#!/usr/bin/env bash
# Twenty-first session, again after the stale test objects: per-tile split counts (pack tsp = 7db3815, branch feat/tile-splits): the GPU suite,
# sanitizers, validator presets, the two bugs of split-KV; no examples, pytest, compare or sweep:
# r14 ran them on the same library (3ce45f3).
# Carry .carry/s21 .carry/tools .carry/pack/{tsp,spl2}_{bins,python}.tar.xz .carry/pack/tsp_extra .carry/fa3_pkg.tar.gz
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r17 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
export PYTHONUNBUFFERED=1
keep() { tar -C $R -cJf $OUT/r17.tar.xz .; }
OUT=$R BUDGET=150 .carry/tools/verify.sh tsp verify_tsp gpu sanitize validate:decode validate 2>&1 | tail -9
keep
OUT=$R BUDGET=60 BUGLIST='merge_other_tokens_states:[split-kv];split_state_unwritten:[split-kv]' .carry/tools/verify.sh tsp bugs_tsp bugs 2>&1 | tail -4
keep
echo "done at $((SECONDS - start)) s"
