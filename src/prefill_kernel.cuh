// Batch prefill attention over a paged (or ragged) KV cache for SM90.
//
// A work item is BLOCK_Q = 128 query rows of one request: 128 tokens of one
// qo head, or with GQA packing fewer tokens of several qo heads of one KV
// group (and with split-KV, over one chunk of their KV blocks;
// prefill_params.hpp). A
// CTA takes its items from the plan's list (prefill_scheduler.cuh; one item,
// or a persistent list) or, under the dynamic schedule, as producer thread 0
// claims them at run time (prefill_pipeline.cuh), and every role loops over
// them:
//   warpgroup 0  producer: each item's KV blocks from last to first into a
//                K/V ring of kStages stages, by TMA (one box per page and
//                64-column slice) or by a cp.async gather with zero-fill (any
//                page size);
//   warpgroups 1-2 consumers (64 rows each): S = Q K^T (wgmma SS), online
//                softmax in registers (exp2, scale folded into one FMA),
//                O += P V (wgmma RS, P never leaves registers), then the epilogue
//                normalises O and writes O and LSE (natural log). Consumer
//                thread 0 loads each item's Q (TMA) once both are done with
//                the last. Where the traits say so (kPingPong) the two take
//                turns issuing wgmma.
// The rings' phases carry across items (PipelineState); docs/kernels.md
// draws the roles and barriers. This file is the skeleton: shared storage,
// barrier init, register budgets and each role's work loop; the parts are
// prefill_scheduler.cuh, prefill_pipeline.cuh, prefill_load.cuh,
// prefill_mainloop.cuh and prefill_epilogue.cuh.
//
// The state rules of docs/kernels.md ("State rules") are marked "RULE:" where
// they hold, here and in the parts.
#pragma once

#include <cuda.h>

#include <cmath>
#include <cstdint>

#include "ptx/griddepcontrol.cuh"
#include "ptx/mbarrier.cuh"
#include "ptx/setmaxnreg.cuh"
#include "ptx/tma.cuh"
#include "prefill_epilogue.cuh"
#include "prefill_load.cuh"
#include "prefill_mainloop.cuh"
#include "prefill_params.hpp"
#include "prefill_pipeline.cuh"
#include "prefill_scheduler.cuh"
#include "prefill_traits.cuh"

namespace ptxattn::detail {

// ============================================================================
// Roles
// ============================================================================

// Producer warpgroup: the KV blocks of each item, from last to first. TMA:
// one thread issues everything; gather: all 128 threads copy.
template <class T>
__device__ void producer(PrefillSharedStorage<T>& s, const PrefillParams& p, const CUtensorMap* k_map,
                         const CUtensorMap* v_map, int tid) {
  if (T::kPath == LoadPath::kTma && tid != 0) return;
  PipelineState<T::kStages> kv;
  auto produce_item = [&](int item) {
    const Work w = work_at<T>(p, item);
    if (w.range.count() == 0) return;
    const int kv_head = w.head / p.group_size;
    if constexpr (T::kPath == LoadPath::kTma)
      produce_tma<T>(s, p, k_map, v_map, w.req, w.range, kv_head, kv);
    else
      produce_gather<T>(s, p, w.req, w.range, kv_head, tid, kv);
  };
  if constexpr (!T::kDynamic) {
    const WorkRange work = cta_work(p);
    for (int position = work.begin; position < work.end; ++position) produce_item(work_item(p, position));
  } else {
    // Producer thread 0 claims each next item once it has issued every load
    // of the one before (as late as the ring allows), so CTAs on faster SMs
    // take more items.
    ItemFeed feed;
    if (tid == 0) claim_item<T>(s, p);
    for (int item; (item = next_item<T, T::kPath == LoadPath::kGather>(s, p, feed, tid % 32)) >= 0;) {
      produce_item(item);
      if (tid == 0) claim_item<T>(s, p);
    }
  }
}

// Consumer warpgroup `consumer` (rows [64 * consumer, 64 * consumer + 64) of
// every tile): each item's attention, then its epilogue. An item without
// KV blocks (no visible key) stores O = 0 and LSE = -inf (with split-KV, as
// its chunk's state). Consumer thread 0 loads each item's Q ahead: the
// first item's before the loop, every later one's while the item before it
// ends (`next_q`: under a static schedule from the CTA's list, which it
// searches past items without KV blocks; under the dynamic one the item
// claimed next, whose Q an item without KV blocks loads in its turn).
template <class T>
__device__ void consumer(PrefillSharedStorage<T>& s, const PrefillParams& p, const CUtensorMap* q_map, int consumer,
                         int tid) {
  constexpr int kO = T::kHeadDim / 2;
  // This thread's first accumulator row within the tile; its second is 8 further.
  const int row_in_tile = consumer * T::kRowsPerConsumer + 16 * (tid / 32) + (tid % 32) / 4;
  PipelineState<T::kStages> kv;
  uint32_t q_phase = 0;
  float out[kO];
  RowState rows;
  auto consume = [&](int item, bool first_item, auto&& next_q) {
    const Work w = work_at<T>(p, item);
    // RULE: registers gained by setmaxnreg are undefined, and the last item's
    // values are stale: the accumulator and the row state are written before
    // anything reads them, for every item.
#ifdef PTXATTN_INJECT_BUG_STALE_ACCUMULATOR
    if (first_item)  // the bug: later items start from the last item's O and row state
#endif
    {
#pragma unroll
      for (int i = 0; i < kO; ++i) out[i] = 0.f;
      rows = {{-INFINITY, -INFINITY}, {0.f, 0.f}};
    }
    (void)first_item;
    if (w.range.count() == 0) {
      if constexpr (T::kDynamic)
        if (consumer == 0 && tid == 0) next_q();
#ifdef PTXATTN_INJECT_BUG_SPLIT_STATE_UNWRITTEN
      if (w.tile.splits > 1) return;  // the bug: a chunk without visible keys leaves its state unwritten
#endif
      store_result<T>(p, out, rows, item, row_in_tile, tid % 32, nullptr);
      return;
    }
    // Consumer 1 passes an item none of whose rows holds a query
    // (pass_blocks), and consumer 0 then computes alone. The two paths meet
    // again at the consumers' barriers below, one instruction each: bar.sync
    // is aligned.
    // NOTES: both answers are votes, which ptxas knows to be the same in
    // every lane. Computed in each lane, or broadcast from lane 0 by
    // __shfl_sync (where ping-pong turns depend on it), the answer moved the
    // ring state of the dynamic kernels' block loop to per-thread registers
    // (the SASS loops of docs/benchmarks.md, eighteenth session); `passes` as
    // `alone && consumer == 1` (consumer not known to be warp-uniform) moved
    // the static head_dim-128 kernels' K stage address there, and cost W1's
    // short rows 2-3% (twenty-eighth session).
    const bool alone = __all_sync(0xffffffffu, tile_rows_filled(p, w) <= T::kRowsPerConsumer);
    const bool passes = __all_sync(0xffffffffu, alone && consumer == 1);
    if constexpr (T::kPath == LoadPath::kTma) zero_v_tail<T>(s, p, w.req, w.range, kv, consumer * 128 + tid);
    uint32_t probs[T::kBlockKV / 4];
    if (passes)
      pass_blocks<T>(s, p, w, kv, tid);
    else
      consume_blocks<T>(s, p, w, kv, q_phase, out, rows, probs, row_in_tile, consumer, alone, tid);
    // Every S of both warpgroups has retired: the next item's Q load
    // overlaps the last P V and the epilogue.
    consumers_meet<T>();
    if (consumer == 0 && tid == 0) next_q();
    const auto last = kv.plus(w.range.count() - 1);
    wait_full<T>(s, p, &s.v_full[last.stage], last.phase);
    if (!passes) finish_item<T>(out, probs, s.v[last.stage], consumer, alone);
    kv = kv.plus(w.range.count());
    q_phase ^= 1;
    const int warp = consumer * 4 + tid / 32;
    if constexpr (T::kOwnStaging) {
      // This warpgroup's P V has retired: the V stage goes back at once, and
      // the epilogue stages O in the warps' own shares, so neither
      // warpgroup waits for the other's last P V.
      release_stage(&s.v_empty[last.stage], tid % 32);
      if (!passes)
        store_result<T>(p, out, rows, item, row_in_tile, tid % 32, s.o_staging + warp * T::kEpilogueWarpBytes);
    } else {
      // The epilogue stages O in the V stage of the last block walked: both
      // warpgroups' P V have read it first. RULE: generic-proxy accesses are
      // fenced before the stage goes back to the producer, whose TMA (async
      // proxy) refills it.
      consumers_meet<T>();
      if (!passes) {
        store_result<T>(p, out, rows, item, row_in_tile, tid % 32, s.v[last.stage] + warp * T::kEpilogueWarpBytes);
        ptx::fence_proxy_async_shared_cta();
      }
      release_stage(&s.v_empty[last.stage], tid % 32);
    }
  };
  if constexpr (!T::kDynamic) {
    const WorkRange work = cta_work(p);
    if (consumer == 0 && tid == 0) {
      ptx::prefetch_tensormap(q_map);
      load_next_q<T>(s, p, q_map, work.begin, work.end);
    }
    for (int position = work.begin; position < work.end; ++position)
      consume(work_item(p, position), position == work.begin,
              [&] { load_next_q<T>(s, p, q_map, position + 1, work.end); });
  } else {
    ItemFeed feed;
    if (consumer == 0 && tid == 0) {
      ptx::prefetch_tensormap(q_map);
      load_claimed_q<T>(s, p, q_map, feed);
    }
    bool first_item = true;
    for (int item; (item = next_item<T, true>(s, p, feed, tid % 32)) >= 0; first_item = false)
      consume(item, first_item, [&] { load_claimed_q<T>(s, p, q_map, feed); });
  }
}

// ============================================================================
// Kernel
// ============================================================================

template <class T>
__global__ void __launch_bounds__(T::kThreads, 1)
    prefill_kernel(const __grid_constant__ PrefillParams p, const __grid_constant__ CUtensorMap q_map,
                   const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map) {
  // Shared memory: the dynamic base is only 16-byte aligned; swizzled tiles need 1024.
  extern __shared__ uint8_t smem_raw[];
  auto& s = *reinterpret_cast<PrefillSharedStorage<T>*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) &
                                                        ~uintptr_t(1023));
  const int warpgroup = threadIdx.x / 128;
  const int tid = threadIdx.x % 128;

  // Barriers. Full: gather = every producer thread arrives; TMA = one arrival
  // plus the transaction bytes. Empty: one arrival per consumer warp.
  if (threadIdx.x == 0) {
    constexpr uint32_t kFullArrivals = T::kPath == LoadPath::kGather ? 128 : 1;
    constexpr uint32_t kEmptyArrivals = T::kConsumerWarpgroups * 4;
    ptx::mbarrier_init(&s.q_full, 1);
    for (int i = 0; i < T::kStages; ++i) {
      ptx::mbarrier_init(&s.k_full[i], kFullArrivals);
      ptx::mbarrier_init(&s.v_full[i], kFullArrivals);
      ptx::mbarrier_init(&s.k_empty[i], kEmptyArrivals);
      ptx::mbarrier_init(&s.v_empty[i], kEmptyArrivals);
    }
    if constexpr (T::kDynamic) {
      s.item_claims = 0;
      for (int i = 0; i < T::kItemSlots; ++i) {
        ptx::mbarrier_init(&s.item_full[i], 1);
        ptx::mbarrier_init(&s.item_empty[i], item_slot_readers<T>());
      }
    }
    ptx::fence_mbarrier_init();
    // Split-KV: the merge of the chunks is launched right after this grid as
    // its programmatic dependent (prefill_run.cpp), and waits for this grid's
    // writes before it reads any (merge_states.cu). Letting it be scheduled
    // now puts its CTAs on SMs this grid leaves free, so it starts as soon as
    // this grid ends instead of a launch later. Without a split no dependent
    // of ours is told anything: the next kernel is the caller's.
    if (p.kv_splits > 1) ptx::griddepcontrol_launch_dependents();
  }
  __syncthreads();

  if (warpgroup == 0) {
    ptx::setmaxnreg_dec<T::kProducerRegs>();
    producer<T>(s, p, &k_map, &v_map, tid);
  } else {
    ptx::setmaxnreg_inc<T::kConsumerRegs>();
    consumer<T>(s, p, &q_map, warpgroup - 1, tid);
  }
}

}  // namespace ptxattn::detail
