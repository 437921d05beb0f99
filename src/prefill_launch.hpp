// Host-side entry points of the per-head-dim kernel translation units
// (prefill_hd64.cu, prefill_hd128.cu, prefill_hd256.cu), so each head dim
// compiles in parallel and a build can leave head dims out.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "prefill_params.hpp"
#include "ptxattn/ptxattn.hpp"

namespace ptxattn::detail {

struct PrefillLaunch {
  PrefillParams params;
  CUtensorMap q_map;
  CUtensorMap k_map;  // TMA path only
  CUtensorMap v_map;  // TMA path only
  DType dtype;
  bool tma;
  int32_t block_kv;  // the plan's KV block; selects the traits (prefill_launch.cuh)
  int32_t kv_stages;  // the plan's K/V ring stages; selects the traits
  uint32_t num_ctas;
};

// Zeroes the dynamic schedule's claim counter in a kernel the prefill kernel
// launched next may overlap (src/work_counter.cu).
cudaError_t zero_work_counter(int32_t* counter, cudaStream_t stream);

// Defined only for head dims this build enables (PTXATTN_ENABLE_HD<N>).
template <int kHeadDim>
cudaError_t launch_prefill(const PrefillLaunch& launch, cudaStream_t stream);

}  // namespace ptxattn::detail
