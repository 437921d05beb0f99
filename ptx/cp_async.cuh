// cp.async: asynchronous 16-byte global-to-shared copies (PTX ISA 9.7.9.25.3).
//
// NOTES: the zero-fill form is how rows past a sequence end become exact
// zeros in shared memory (src-size 0 reads nothing and writes 16 zero bytes):
// rule 1 of docs/kernels.md "State rules" on the gather path.
#pragma once

#include <cstdint>

#include "ptx/smem.cuh"

namespace ptxattn::ptx {

// cp.async.cg.shared.global [dst], [src], 16, src_size (9.7.9.25.3.1): copies
// src_size bytes (0 or 16) and zero-fills the rest of the 16. Any thread.
// `smem_dst` is a shared-window address (smem_u32), so callers can add
// constant offsets to it without a conversion per copy.
__device__ __forceinline__ void cp_async_cg_16_zfill(uint32_t smem_dst, const void* gmem_src, bool valid) {
  const uint32_t src_size = valid ? 16u : 0u;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_dst), "l"(gmem_src), "r"(src_size)
               : "memory");
}
__device__ __forceinline__ void cp_async_cg_16_zfill(void* smem_dst, const void* gmem_src, bool valid) {
  cp_async_cg_16_zfill(smem_u32(smem_dst), gmem_src, valid);
}

// cp.async.commit_group (9.7.9.25.3.2): closes this thread's current group.
__device__ __forceinline__ void cp_async_commit_group() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// cp.async.wait_group N (9.7.9.25.3.3): at most N of this thread's groups pending.
template <int kPending>
__device__ __forceinline__ void cp_async_wait_group() {
  static_assert(kPending >= 0 && kPending <= 7, "cp.async.wait_group takes a small immediate");
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// cp.async.mbarrier.arrive.noinc.shared::cta.b64 (9.7.9.25.3.4): the barrier
// receives one arrival from this thread once all its prior cp.async complete;
// noinc: the arrival is counted in the barrier's expected count.
__device__ __forceinline__ void cp_async_mbarrier_arrive_noinc(uint64_t* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}

}  // namespace ptxattn::ptx
