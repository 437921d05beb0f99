#!/usr/bin/env bash
# Twentieth session: forced split counts on mixed-length decode batches (pack pdl) against FA3.
# Carry .carry/s20 .carry/pack/pdl_python.tar.xz .carry/fa3_pkg.tar.gz
set -uo pipefail
start=$SECONDS
ROOT=$PWD
R=$OUT/r11 && mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
mkdir -p .fa3 && tar -xzf .carry/fa3_pkg.tar.gz -C .fa3
[ -d .carry/pack/pdl_python ] || tar -C .carry/pack -xJf .carry/pack/pdl_python.tar.xz
export PYTHONUNBUFFERED=1
PYTHONPATH=$ROOT/.fa3/pkg:$ROOT/.carry/pack/pdl_python timeout 240 python3 .carry/s20/splits20.py 2>&1 | grep -v -i warn | tee $R/splits20_pdl.out
tar -C $R -cJf $OUT/r11.tar.xz .
echo "done at $((SECONDS - start)) s"
