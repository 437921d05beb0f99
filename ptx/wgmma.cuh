// wgmma: warpgroup matrix multiply-accumulate (PTX ISA 9.7.15 "Asynchronous
// Warpgroup Level Matrix Multiply-Accumulate").
//
// f32 accumulator layout of m64nN (verified on the GPU by tests/gpu/test_ptx_gpu.cu):
// thread t of the warpgroup (warp w = t/32, lane l), register i holds
//   row = 16*w + l/4 + 8*((i/2) & 1),  col = 8*(i/4) + 2*(l%4) + (i & 1).
// A row lives in one quad of 4 lanes, so row reductions are thread-local plus
// shfl_xor 1 and 2. The RS A-fragment of k16 slice j of such an accumulator is
// pack(d[8j],d[8j+1]), pack(d[8j+2],d[8j+3]), pack(d[8j+4],d[8j+5]), pack(d[8j+6],d[8j+7]).
#pragma once

#include <cstdint>

#include "ptx/swizzle.hpp"
#if defined(__CUDACC__)
#include "ptx/wgmma_ops.cuh"  // device code only: the descriptor encoders below are also for host C++
#endif

namespace ptxattn::ptx {

// ---------------------------------------------------------------------------
// Shared-memory matrix descriptor (PTX ISA 9.7.15.5.1 "Matrix Descriptor Format").
// bits 0-13 start address >> 4, 16-29 leading byte offset >> 4, 32-45 stride
// byte offset >> 4, 49-51 base offset, 62-63 swizzle (0 none, 1 128B, 2 64B, 3 32B).
PTXATTN_HOST_DEVICE constexpr uint64_t matrix_descriptor_encode(uint32_t x) {
  return static_cast<uint64_t>((x & 0x3FFFFu) >> 4);
}

PTXATTN_HOST_DEVICE constexpr uint64_t swizzle_descriptor_bits(Swizzle s) {
  return s == Swizzle::k128B ? 1ull : s == Swizzle::k64B ? 2ull : s == Swizzle::k32B ? 3ull : 0ull;
}

// Leading byte offset: K-major swizzled layouts ignore it (pass 16); MN-major
// swizzled layouts use it as the distance between swizzle-width column blocks
// along MN. Stride byte offset: distance between 8-row groups (1024 B for
// 128B-swizzled K-major rows of 128 bytes).
PTXATTN_HOST_DEVICE constexpr uint64_t make_smem_descriptor(uint32_t smem_addr, uint32_t leading_byte_offset,
                                                            uint32_t stride_byte_offset, Swizzle swizzle,
                                                            uint32_t base_offset = 0) {
  return matrix_descriptor_encode(smem_addr) | (matrix_descriptor_encode(leading_byte_offset) << 16) |
         (matrix_descriptor_encode(stride_byte_offset) << 32) | (static_cast<uint64_t>(base_offset & 0x7u) << 49) |
         (swizzle_descriptor_bits(swizzle) << 62);
}

// Moves the start address by `bytes` (a multiple of 16). K-major 128B swizzle:
// the next k16 slice of a 128-byte row is +32 bytes; the hardware applies the
// swizzle to the final address, so this stays valid inside the 1024-B atom.
PTXATTN_HOST_DEVICE constexpr uint64_t descriptor_advance(uint64_t desc, uint32_t bytes) {
  return desc + static_cast<uint64_t>(bytes >> 4);
}

// Fields back out of a descriptor (tests and debugging).
struct DescriptorFields {
  uint32_t start_address, leading_byte_offset, stride_byte_offset, base_offset, swizzle_bits;
};
PTXATTN_HOST_DEVICE constexpr DescriptorFields descriptor_decode(uint64_t d) {
  return {static_cast<uint32_t>(d & 0x3FFF) << 4, static_cast<uint32_t>((d >> 16) & 0x3FFF) << 4,
          static_cast<uint32_t>((d >> 32) & 0x3FFF) << 4, static_cast<uint32_t>((d >> 49) & 0x7),
          static_cast<uint32_t>(d >> 62)};
}

#if defined(__CUDACC__)

// wgmma.fence.sync.aligned (9.7.15.5.3): before the first wgmma, and whenever
// the accumulator or A-fragment registers were touched by other instructions.
// All threads of the warpgroup.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

// wgmma.commit_group.sync.aligned (9.7.15.5.4). All threads of the warpgroup.
__device__ __forceinline__ void wgmma_commit_group() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

// wgmma.wait_group.sync.aligned N (9.7.15.5.5): at most N groups still pending.
// Reading D before the covering wait is undefined. All threads of the warpgroup.
template <int kPending>
__device__ __forceinline__ void wgmma_wait_group() {
  static_assert(kPending >= 0 && kPending <= 7, "wgmma.wait_group takes 0..7");
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// Keeps the compiler from moving reads or writes of accumulator registers
// across the asynchronous MMA (no instruction is emitted).
template <int kCount>
__device__ __forceinline__ void accumulator_fence(float (&d)[kCount]) {
#pragma unroll
  for (int i = 0; i < kCount; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
template <int kCount>
__device__ __forceinline__ void accumulator_fence(uint32_t (&r)[kCount]) {
#pragma unroll
  for (int i = 0; i < kCount; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// Input element type of a wgmma: __nv_bfloat16 or __half (only the tag matters).
enum class MmaType { kBF16, kFP16 };

template <int N>
constexpr bool kSupportedWgmmaN = N == 64 || N == 96 || N == 128 || N == 176 || N == 192 || N == 256;

// D(64xN, f32) (+)= A(64x16) * B(16xN), A and B from shared memory.
// kTransA/kTransB: 0 = K-major, 1 = MN-major.
template <int N, MmaType kType, int kTransA, int kTransB>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, bool scale_d) {
  static_assert(kSupportedWgmmaN<N>, "wgmma N not generated: add it to scripts/gen_wgmma.py");
#define PTXATTN_WGMMA_SS_CASE(n)                                                                   \
  if constexpr (N == n) {                                                                          \
    if constexpr (kType == MmaType::kBF16)                                                         \
      detail::wgmma_m64n##n##k16_ss_bf16<kTransA, kTransB>(d, desc_a, desc_b, scale_d);           \
    else                                                                                           \
      detail::wgmma_m64n##n##k16_ss_f16<kTransA, kTransB>(d, desc_a, desc_b, scale_d);            \
  }
  PTXATTN_WGMMA_SS_CASE(64) PTXATTN_WGMMA_SS_CASE(96) PTXATTN_WGMMA_SS_CASE(128)
  PTXATTN_WGMMA_SS_CASE(176) PTXATTN_WGMMA_SS_CASE(192) PTXATTN_WGMMA_SS_CASE(256)
#undef PTXATTN_WGMMA_SS_CASE
}

// D(64xN, f32) (+)= A(64x16, registers) * B(16xN, shared memory).
template <int N, MmaType kType, int kTransB>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, bool scale_d) {
  static_assert(kSupportedWgmmaN<N>, "wgmma N not generated: add it to scripts/gen_wgmma.py");
#define PTXATTN_WGMMA_RS_CASE(n)                                                 \
  if constexpr (N == n) {                                                        \
    if constexpr (kType == MmaType::kBF16)                                       \
      detail::wgmma_m64n##n##k16_rs_bf16<kTransB>(d, a, desc_b, scale_d);        \
    else                                                                         \
      detail::wgmma_m64n##n##k16_rs_f16<kTransB>(d, a, desc_b, scale_d);         \
  }
  PTXATTN_WGMMA_RS_CASE(64) PTXATTN_WGMMA_RS_CASE(96) PTXATTN_WGMMA_RS_CASE(128)
  PTXATTN_WGMMA_RS_CASE(176) PTXATTN_WGMMA_RS_CASE(192) PTXATTN_WGMMA_RS_CASE(256)
#undef PTXATTN_WGMMA_RS_CASE
}

#endif  // __CUDACC__

}  // namespace ptxattn::ptx
