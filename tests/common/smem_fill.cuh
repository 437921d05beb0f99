// Device-side poisoning of the shared memory a test kernel is about to use,
// so a test cannot pass on memory that happens to be clean (zeros left by an
// earlier kernel). Complements pollute_shared_memory() in gpu_test.hpp, which
// poisons every SM from the host but cannot promise what a later CTA sees.
#pragma once

#include <cstdint>

#include "ptx/mbarrier.cuh"
#include "tests/common/gpu_test.hpp"

namespace ptxattn::testing {

// Every thread of the block calls it. Fills `bytes` (a multiple of 4) at
// `smem` with `word` (default: a NaN in f32, bf16 and fp16 alike), then orders
// those generic-proxy stores before later async-proxy writes and reads (TMA,
// wgmma) and synchronises the block, so whatever the test writes next lands
// on poisoned memory and nothing it reads can be clean by chance.
__device__ __forceinline__ void fill_shared(void* smem, uint32_t bytes, uint32_t word = pattern::kQuietNaN) {
  uint32_t* words = static_cast<uint32_t*>(smem);
  for (uint32_t i = threadIdx.x; i < bytes / 4; i += blockDim.x) words[i] = word;
  ptx::fence_proxy_async_shared_cta();
  __syncthreads();
}

}  // namespace ptxattn::testing
