// Prefill kernels for head_dim 64 (compiled when the build enables it).
#include "prefill_launch.cuh"

PTXATTN_DEFINE_PREFILL_LAUNCH(64)
