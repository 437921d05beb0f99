// The prefill kernel's synchronisation: named barrier ids, the ring state
// carried across work items, the mbarrier waits (bounded with
// PTXATTN_BOUNDED_WAITS: src/wait_timeout.cuh), the acquire of a full stage
// (with the proxy fence the gather path needs) and the release of a stage.
// docs/kernels.md draws who arrives on which barrier.
#pragma once

#include <cstdint>

#include "ptx/barrier.cuh"
#include "ptx/griddepcontrol.cuh"
#include "ptx/mbarrier.cuh"
#include "prefill_params.hpp"
#include "prefill_traits.cuh"
#include "wait_timeout.cuh"

namespace ptxattn::detail {

// Named barrier ids (0 is __syncthreads).
// kTurnOfConsumer0 + c: consumer warpgroup c may issue its wgmma (ping-pong).
enum class NamedBarrier : uint32_t { kConsumers = 1, kTurnOfConsumer0 = 2, kTurnOfConsumer1 = 3 };

// Named barrier kConsumers: the consumer warpgroups meet.
template <class T>
__device__ __forceinline__ void consumers_meet() {
  ptx::named_barrier_sync(static_cast<uint32_t>(NamedBarrier::kConsumers), T::kConsumerWarpgroups * 128);
}

// Stage and parity of a ring of kStages. Each role keeps the state of its
// next item's first block and moves it past the item's blocks, so a ring's
// phases carry across work items and never restart inside a CTA. Within an
// item, block i's state is derived from the item's first (plus(i)) rather
// than carried: two live states cost the consumers registers they lack.
template <int kStages>
struct PipelineState {
  int stage = 0;
  uint32_t phase = 0;
  __device__ __forceinline__ PipelineState plus(int blocks) const {
    const int position = stage + blocks;
    return {position % kStages, phase ^ uint32_t((position / kStages) & 1)};
  }
};

// Timeout handler of the kernel's waits (PTXATTN_BOUNDED_WAITS): names the
// barrier `bar` is and records the wait (src/wait_timeout.cuh), then traps.
template <class T>
__device__ __forceinline__ void record_prefill_wait_timeout(const PrefillSharedStorage<T>& s, const PrefillParams& p,
                                                            const uint64_t* bar, uint32_t parity) {
  WaitBarrier barrier = bar == &s.q_full ? WaitBarrier::kQFull : WaitBarrier::kUnknown;
  uint32_t index = 0;
  auto find_in_ring = [&](const uint64_t* ring, int size, WaitBarrier name) {
    if (bar >= ring && bar < ring + size) barrier = name, index = uint32_t(bar - ring);
  };
  find_in_ring(s.k_full, T::kStages, WaitBarrier::kKFull);
  find_in_ring(s.v_full, T::kStages, WaitBarrier::kVFull);
  find_in_ring(s.k_empty, T::kStages, WaitBarrier::kKEmpty);
  find_in_ring(s.v_empty, T::kStages, WaitBarrier::kVEmpty);
  find_in_ring(s.item_full, T::kItemSlots, WaitBarrier::kItemFull);
  find_in_ring(s.item_empty, T::kItemSlots, WaitBarrier::kItemEmpty);
  static_assert(T::kBlockKV <= int(kWaitVariantBlockMask), "the record holds the KV block in 8 bits");
  constexpr uint32_t kVariant = uint32_t(T::kHeadDim) | (T::kPath == LoadPath::kGather ? kWaitVariantGather : 0u) |
                                (T::kType == ptx::MmaType::kFP16 ? kWaitVariantFP16 : 0u) |
                                (uint32_t(T::kBlockKV) << kWaitVariantBlockShift);
  record_wait_timeout(p.wait_timeout, WaitKernel::kPrefill, kVariant, barrier, index, bar, parity);
}

// Every mbarrier wait of the kernel goes through here: with
// PTXATTN_BOUNDED_WAITS a wait that runs out of cycles records which barrier
// and parity hung and traps; without it this is the plain try_wait loop.
template <class T>
__device__ __forceinline__ void wait_barrier(const PrefillSharedStorage<T>& s, const PrefillParams& p, uint64_t* bar,
                                             uint32_t parity) {
  ptx::mbarrier_wait_parity(bar, parity, [&] { record_prefill_wait_timeout<T>(s, p, bar, parity); });
}

// Consumers of gathered tiles: cp.async writes are generic-proxy writes.
// RULE: fence them into the async proxy before wgmma reads them. The fence
// sits after the acquire of the full barrier, in the causal chain between
// the copies and the wgmma.
// One fence serves every full barrier acquired before it: wait_full_pair
// acquires K of one block and V of the one before, then fences once.
template <class T>
__device__ __forceinline__ void fence_gathered_tiles() {
#ifndef PTXATTN_INJECT_BUG_SKIP_PROXY_FENCE
  if constexpr (T::kPath == LoadPath::kGather) ptx::fence_proxy_async_shared_cta();
#endif
}
template <class T>
__device__ __forceinline__ void wait_full(const PrefillSharedStorage<T>& s, const PrefillParams& p, uint64_t* full,
                                          uint32_t phase) {
  wait_barrier<T>(s, p, full, phase);
  fence_gathered_tiles<T>();
}
template <class T>
__device__ __forceinline__ void wait_full_pair(const PrefillSharedStorage<T>& s, const PrefillParams& p,
                                               uint64_t* full_a, uint32_t phase_a, uint64_t* full_b,
                                               uint32_t phase_b) {
  wait_barrier<T>(s, p, full_a, phase_a);
  wait_barrier<T>(s, p, full_b, phase_b);
  fence_gathered_tiles<T>();
}

// Dynamic schedule (p.work_counter): producer thread 0 takes the items one
// at a time from the plan's order (claim_item) into a ring of kItemSlots
// shared slots, the next one once it has issued every load of the last;
// every role takes them from the slots in turn (next_item), each reader warp
// releasing a slot once read; -1 ends the CTA's work, and no claim follows
// it. A role's ItemFeed counts the slots it has read, which gives the next
// slot and its parity.
struct ItemFeed {
  int position = 0;
};
template <class T>
__device__ __forceinline__ PipelineState<T::kItemSlots> item_slot_of(int position) {
  static_assert((T::kItemSlots & (T::kItemSlots - 1)) == 0, "a power of two: slot and parity are bit fields");
  return {position & (T::kItemSlots - 1), uint32_t(position / T::kItemSlots) & 1u};
}
// Readers of each slot: the producer (its 4 warps, or its one thread on the
// TMA path) and the 8 consumer warps.
template <class T>
__host__ __device__ constexpr uint32_t item_slot_readers() {
  return (T::kPath == LoadPath::kTma ? 1 : 4) + T::kConsumerWarpgroups * 4;
}
// Producer thread 0 only. The claims made so far live in shared memory
// (s.item_claims, -1 once the work ran out), not in a register the producer
// would hold across its loop (at 40 registers it spilled). The first item is
// the CTA's own (position blockIdx.x of the order), so no CTA waits on the
// counter to start; the later ones come from the counter, which the run
// zeroes in a kernel this grid may overlap (launched as its programmatic
// dependent, prefill_run.cpp): the first claim waits for that kernel.
template <class T>
__device__ __forceinline__ void claim_item(PrefillSharedStorage<T>& s, const PrefillParams& p) {
  const int claims = s.item_claims;
  if (claims < 0) return;
  const PipelineState<T::kItemSlots> slot = item_slot_of<T>(claims);
  wait_barrier<T>(s, p, &s.item_empty[slot.stage], slot.phase ^ 1);
  int position = int(blockIdx.x);
  if (claims > 0) {
    if (claims == 1) ptx::griddepcontrol_wait();  // the counter's zero has landed
    position = int(gridDim.x) + atomicAdd(p.work_counter, 1);
  }
  const int item = position < p.num_items ? p.cta_work_items[position] : -1;
  s.item_slot[slot.stage] = item;
  s.item_claims = item < 0 ? -1 : claims + 1;
  ptx::mbarrier_arrive(&s.item_full[slot.stage]);  // release: the slot's store is seen by every acquiring reader
}
// kWholeWarp: every lane of the calling warp takes the item (the consumers,
// the gather producer); otherwise one thread alone (the TMA producer).
template <class T, bool kWholeWarp>
__device__ __forceinline__ int next_item(PrefillSharedStorage<T>& s, const PrefillParams& p, ItemFeed& f, int lane) {
  const PipelineState<T::kItemSlots> slot = item_slot_of<T>(f.position++);
  wait_barrier<T>(s, p, &s.item_full[slot.stage], slot.phase);
  int item = *static_cast<volatile int32_t*>(&s.item_slot[slot.stage]);
  // NOTES: read from shared memory, the item is not known to be the same in
  // every lane, and ptxas moved what derives from it (ring stages, wgmma
  // descriptors, loop bounds) from uniform to per-thread registers; one SM
  // then streamed 6% (gather) to 10% (TMA) slower below the DRAM's limit
  // (docs/benchmarks.md, 2026-12-06, seventeenth session). Lane 0's value,
  // broadcast, is known uniform.
  if constexpr (kWholeWarp) item = __shfl_sync(0xffffffffu, item, 0);
  if (item >= 0) {
    if constexpr (kWholeWarp) __syncwarp();
    if (!kWholeWarp || lane == 0) ptx::mbarrier_arrive(&s.item_empty[slot.stage]);
  }
  return item;
}
// The item next_item returns next, without taking it (consumer thread 0,
// for the next Q).
template <class T>
__device__ __forceinline__ int peek_item(PrefillSharedStorage<T>& s, const PrefillParams& p, const ItemFeed& f) {
  const PipelineState<T::kItemSlots> slot = item_slot_of<T>(f.position);
  wait_barrier<T>(s, p, &s.item_full[slot.stage], slot.phase);
  return *static_cast<volatile int32_t*>(&s.item_slot[slot.stage]);
}

// One warp's share of releasing a stage: all its wgmma reading the stage have
// retired (the caller waited), so one lane arrives for the warp.
__device__ __forceinline__ void release_stage(uint64_t* empty, int lane) {
  __syncwarp();
  if (lane == 0) ptx::mbarrier_arrive(empty);
}

}  // namespace ptxattn::detail
