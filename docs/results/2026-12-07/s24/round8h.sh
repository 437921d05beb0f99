#!/usr/bin/env bash
# Session 24, an H100 call: verify pack `rule` (b8c423d; on the H100 the rule keeps 2 stages) and run the deep ring
# forced under the validator's full preset.
set -uo pipefail
start=$SECONDS
R=$OUT/r8h && mkdir -p $R
keep() { tar -C $R -cJf $OUT/r8h.tar.xz .; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.memory,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
.carry/tools/dram_attr | tee $R/dram_attr.txt
OUT=$R .carry/tools/verify.sh rule verify_rule ${STEPS:-gpu sanitize validate validate:decode} 2>&1 | grep RESULT
grep -h "K/V stages suite\|rule took\|sanitizer cases:" $R/verify_rule.log | head -4
rm -rf $R/sanitize-*/*.bin; keep
timeout 60 .carry/pack/rule_bins/ptxattn-validate --preset=full --pollute=all --kv-stages=3 --only-failures \
  --no-progress > $R/validate_kv_stages_3.log 2>&1; echo "validate full --kv-stages=3 rc=$?"; tail -2 $R/validate_kv_stages_3.log
keep
echo "done at $((SECONDS - start)) s"
