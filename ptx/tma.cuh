// TMA: bulk tensor copies between global and shared memory (PTX ISA 9.7.9.27
// "cp.async.bulk.tensor", 9.7.9.28 "cp.async.bulk" groups, 9.7.9.29
// "prefetch.tensormap"). Host-side encoding with validation: ptx/tma_host.hpp.
//
// NOTES: coordinates are innermost first (s32). Boxes that reach past the
// tensor's bounds are zero-filled there, but only there: the unused tail of a
// page INSIDE a paged pool is copied as whatever it holds.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "ptx/smem.cuh"

namespace ptxattn::ptx {

// prefetch.tensormap [map] (9.7.9.29): warms the descriptor cache. One thread.
__device__ __forceinline__ void prefetch_tensormap(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// cp.async.bulk.tensor.Nd.shared::cluster.global.tile.mbarrier::complete_tx::bytes
// (9.7.9.27.1): loads one box; its bytes complete the transaction count of `bar`.
// One thread issues it.
template <int kRank>
__device__ __forceinline__ void cp_async_bulk_tensor_load(void* smem_dst, const CUtensorMap* map, uint64_t* bar,
                                                          const int32_t (&c)[kRank]) {
  static_assert(kRank >= 1 && kRank <= 5, "TMA tensors have rank 1..5");
  const uint64_t m = reinterpret_cast<uint64_t>(map);
  const uint32_t dst = smem_u32(smem_dst), b = smem_u32(bar);
  if constexpr (kRank == 1)
    asm volatile(
        "cp.async.bulk.tensor.1d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3}], [%2];\n" ::
            "r"(dst), "l"(m), "r"(b), "r"(c[0])
        : "memory");
  else if constexpr (kRank == 2)
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::
            "r"(dst), "l"(m), "r"(b), "r"(c[0]), "r"(c[1])
        : "memory");
  else if constexpr (kRank == 3)
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
        "[%2];\n" ::"r"(dst),
        "l"(m), "r"(b), "r"(c[0]), "r"(c[1]), "r"(c[2])
        : "memory");
  else if constexpr (kRank == 4)
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, "
        "%6}], [%2];\n" ::"r"(dst),
        "l"(m), "r"(b), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3])
        : "memory");
  else
    asm volatile(
        "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, "
        "%6, %7}], [%2];\n" ::"r"(dst),
        "l"(m), "r"(b), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]), "r"(c[4])
        : "memory");
}

// cp.async.bulk.tensor.Nd.global.shared::cta.tile.bulk_group (9.7.9.27.1):
// stores one box; complete with commit_group + wait_group_read. One thread,
// after fence_proxy_async_shared_cta() by the threads that wrote the tile.
template <int kRank>
__device__ __forceinline__ void cp_async_bulk_tensor_store(const CUtensorMap* map, const void* smem_src,
                                                           const int32_t (&c)[kRank]) {
  static_assert(kRank >= 1 && kRank <= 5, "TMA tensors have rank 1..5");
  const uint64_t m = reinterpret_cast<uint64_t>(map);
  const uint32_t src = smem_u32(smem_src);
  if constexpr (kRank == 1)
    asm volatile("cp.async.bulk.tensor.1d.global.shared::cta.tile.bulk_group [%0, {%2}], [%1];\n" ::"l"(m), "r"(src),
                 "r"(c[0])
                 : "memory");
  else if constexpr (kRank == 2)
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.tile.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(m),
                 "r"(src), "r"(c[0]), "r"(c[1])
                 : "memory");
  else if constexpr (kRank == 3)
    asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.tile.bulk_group [%0, {%2, %3, %4}], [%1];\n" ::"l"(m),
                 "r"(src), "r"(c[0]), "r"(c[1]), "r"(c[2])
                 : "memory");
  else if constexpr (kRank == 4)
    asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.tile.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(
                     m),
                 "r"(src), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3])
                 : "memory");
  else
    asm volatile("cp.async.bulk.tensor.5d.global.shared::cta.tile.bulk_group [%0, {%2, %3, %4, %5, %6}], [%1];\n" ::"l"(
                     m),
                 "r"(src), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]), "r"(c[4])
                 : "memory");
}

// cp.async.bulk.commit_group (9.7.9.28.1): closes this thread's bulk group.
__device__ __forceinline__ void cp_async_bulk_commit_group() {
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}

// cp.async.bulk.wait_group.read N (9.7.9.28.2): the source shared memory of all
// but N groups may be reused.
template <int kPending>
__device__ __forceinline__ void cp_async_bulk_wait_group_read() {
  static_assert(kPending >= 0 && kPending <= 7, "cp.async.bulk.wait_group takes a small immediate");
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(kPending) : "memory");
}

}  // namespace ptxattn::ptx
