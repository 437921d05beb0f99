// ldmatrix / stmatrix: warp-collective moves of 8x8 matrices of 16-bit
// elements between shared memory and MMA-fragment registers (PTX ISA
// 9.7.14.5.15 "ldmatrix", 9.7.14.5.16 "stmatrix"; stmatrix needs sm_90);
// and the plain 16-byte shared-memory load that reads such a tile back by
// rows (9.7.9.8 "ld").
//
// Fragment of matrix j (register j of every lane): lane l holds row l/4,
// columns 2*(l%4) (low 16 bits) and 2*(l%4)+1 (high 16 bits) -- the same
// quad layout as a row of the wgmma accumulator. With .trans the fragment is
// the transpose of the matrix in memory: lane l holds memory rows 2*(l%4)
// (low half) and 2*(l%4)+1 (high half) of memory column l/4.
// Row addresses: lane 8*j + r passes the address of row r of matrix j (16
// contiguous bytes, 16-byte aligned); lanes 8*count..31 pass anything in
// shared memory (ignored). All 32 lanes execute the call (.sync.aligned).
// Layout tables: docs/ptx.md.
#pragma once

#include <cstdint>

#include "ptx/smem.cuh"

namespace ptxattn::ptx {

// ldmatrix.sync.aligned.m8n8.x1{.trans}.shared.b16 (9.7.14.5.15). Whole warp.
template <bool kTrans = false>
__device__ __forceinline__ void ldmatrix_x1(uint32_t& r, const void* row) {
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
                 : "=r"(r)
                 : "r"(smem_u32(row))
                 : "memory");
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r) : "r"(smem_u32(row)) : "memory");
}

// ldmatrix.sync.aligned.m8n8.x2{.trans}.shared.b16 (9.7.14.5.15). Whole warp.
template <bool kTrans = false>
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(smem_u32(row))
                 : "memory");
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(smem_u32(row))
                 : "memory");
}

// ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16 (9.7.14.5.15). Whole warp.
template <bool kTrans = false>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(row))
                 : "memory");
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(row))
                 : "memory");
}

// stmatrix.sync.aligned.m8n8.x1{.trans}.shared.b16 (9.7.14.5.16). Whole warp.
template <bool kTrans = false>
__device__ __forceinline__ void stmatrix_x1(void* row, uint32_t r) {
  if constexpr (kTrans)
    asm volatile("stmatrix.sync.aligned.m8n8.x1.trans.shared.b16 [%0], {%1};\n" ::"r"(smem_u32(row)), "r"(r)
                 : "memory");
  else
    asm volatile("stmatrix.sync.aligned.m8n8.x1.shared.b16 [%0], {%1};\n" ::"r"(smem_u32(row)), "r"(r) : "memory");
}

// stmatrix.sync.aligned.m8n8.x2{.trans}.shared.b16 (9.7.14.5.16). Whole warp.
template <bool kTrans = false>
__device__ __forceinline__ void stmatrix_x2(void* row, const uint32_t (&r)[2]) {
  if constexpr (kTrans)
    asm volatile("stmatrix.sync.aligned.m8n8.x2.trans.shared.b16 [%0], {%1, %2};\n" ::"r"(smem_u32(row)), "r"(r[0]),
                 "r"(r[1])
                 : "memory");
  else
    asm volatile("stmatrix.sync.aligned.m8n8.x2.shared.b16 [%0], {%1, %2};\n" ::"r"(smem_u32(row)), "r"(r[0]), "r"(r[1])
                 : "memory");
}

// stmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16 (9.7.14.5.16). Whole warp.
template <bool kTrans = false>
__device__ __forceinline__ void stmatrix_x4(void* row, const uint32_t (&r)[4]) {
  if constexpr (kTrans)
    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(smem_u32(row)),
                 "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
                 : "memory");
  else
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(smem_u32(row)), "r"(r[0]),
                 "r"(r[1]), "r"(r[2]), "r"(r[3])
                 : "memory");
}

// ld.shared.v4.b32 (9.7.9.8 "ld"): 16 bytes, 16-byte aligned. Any thread.
__device__ __forceinline__ uint4 ld_shared_v4(const void* ptr) {
  uint4 v;
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(smem_u32(ptr))
               : "memory");
  return v;
}

}  // namespace ptxattn::ptx
