// Named barriers (PTX ISA 9.7.13.1 "bar, barrier"). Ids 1..15 are free for
// kernels (0 is __syncthreads); thread counts are multiples of 32.
#pragma once

#include <cstdint>

namespace ptxattn::ptx {

// bar.sync id, count: wait until `count` threads have arrived at barrier `id`.
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

// bar.arrive id, count: arrive without waiting (a producer signalling consumers).
__device__ __forceinline__ void named_barrier_arrive(uint32_t id, uint32_t count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

}  // namespace ptxattn::ptx
