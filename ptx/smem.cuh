// Generic-to-shared address conversion used by every wrapper that names a
// shared-memory operand. PTX ISA 9.7.9.21 "cvta".
#pragma once

#include <cstdint>

namespace ptxattn::ptx {

// 32-bit shared-window address of a generic pointer into shared memory.
__device__ __forceinline__ uint32_t smem_u32(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

}  // namespace ptxattn::ptx
