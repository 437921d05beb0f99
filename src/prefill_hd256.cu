// Prefill kernels for head_dim 256 (compiled when the build enables it).
#include "prefill_launch.cuh"

PTXATTN_DEFINE_PREFILL_LAUNCH(256)
