// Batch prefill attention over a paged (or ragged) KV cache for SM90.
//
// A work item is BLOCK_Q = 128 query rows of one request for one qo head. A
// CTA takes its items from the plan's list (Scheduler below; one item, or a
// persistent list), and every role loops over them:
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
// draws the roles and barriers.
//
// The state rules of docs/kernels.md ("State rules") are marked "RULE:" where
// they hold.
#pragma once

#include <cuda.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "ptx/barrier.cuh"
#include "ptx/cp_async.cuh"
#include "ptx/cvt.cuh"
#include "ptx/mbarrier.cuh"
#include "ptx/setmaxnreg.cuh"
#include "ptx/tma.cuh"
#include "ptx/wgmma.cuh"
#include "prefill_params.hpp"
#include "prefill_traits.cuh"
#include "wait_timeout.cuh"

namespace ptxattn::detail {

// Named barrier ids (0 is __syncthreads).
// kTurnOfConsumer0 + c: consumer warpgroup c may issue its wgmma (ping-pong).
enum class NamedBarrier : uint32_t { kConsumers = 1, kTurnOfConsumer0 = 2, kTurnOfConsumer1 = 3 };

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

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

// ============================================================================
// Barrier waits
// ============================================================================

// Timeout handler of the kernel's waits (PTXATTN_BOUNDED_WAITS): names the
// barrier `bar` is and records the wait (src/wait_timeout.cuh), then traps.
template <class T>
__device__ __forceinline__ void record_prefill_wait_timeout(const PrefillSharedStorage<T>& s, const PrefillParams& p,
                                                            const uint64_t* bar, uint32_t parity) {
  WaitBarrier barrier = bar == &s.q_full ? WaitBarrier::kQFull : WaitBarrier::kUnknown;
  uint32_t index = 0;
  auto find_in_ring = [&](const uint64_t* ring, WaitBarrier name) {
    if (bar >= ring && bar < ring + T::kStages) barrier = name, index = uint32_t(bar - ring);
  };
  find_in_ring(s.k_full, WaitBarrier::kKFull);
  find_in_ring(s.v_full, WaitBarrier::kVFull);
  find_in_ring(s.k_empty, WaitBarrier::kKEmpty);
  find_in_ring(s.v_empty, WaitBarrier::kVEmpty);
  constexpr uint32_t kVariant = uint32_t(T::kHeadDim) | (T::kPath == LoadPath::kGather ? kWaitVariantGather : 0u) |
                                (T::kType == ptx::MmaType::kFP16 ? kWaitVariantFP16 : 0u);
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

// ============================================================================
// Scheduler
// ============================================================================

// The work items this CTA takes, in order: positions [begin, end) of its
// list in the persistent schedule, or its own index (prefill_params.hpp).
struct WorkRange {
  int begin;
  int end;
};
__device__ __forceinline__ WorkRange cta_work(const PrefillParams& p) {
  if (p.cta_work_indptr == nullptr) return {int(blockIdx.x), int(blockIdx.x) + 1};
  return {p.cta_work_indptr[blockIdx.x], p.cta_work_indptr[blockIdx.x + 1]};
}
__device__ __forceinline__ int work_item(const PrefillParams& p, int position) {
  return p.cta_work_items == nullptr ? position : p.cta_work_items[position];
}

// What a role needs of one work item: its request, tile, qo head and KV blocks.
struct Work {
  RequestInfo req;
  int q_block;
  int head;
  KvBlockRange range;
};
template <class T>
__device__ __forceinline__ Work work_at(const PrefillParams& p, int item) {
  const WorkTile tile = p.tiles[item / p.num_qo_heads];
  const RequestInfo req = p.requests[tile.request];
  return {req, tile.q_block, item % p.num_qo_heads,
          kv_block_range(req, tile.q_block, T::kBlockQ, T::kBlockKV, p.causal, p.window_left)};
}

// ============================================================================
// Producer
// ============================================================================

// TMA path: one K or V block. Paged: one box per page (and 64-column
// slice) of rows_per_box = min(page_size, BLOCK_KV) rows, only for pages the
// request owns; a page larger than the block holds it at slot offset
// (n % blocks_per_page) * BLOCK_KV. Ragged: one BLOCK_KV-row box per slice.
template <class T>
__device__ __forceinline__ void load_kv_block_tma(const PrefillParams& p, const CUtensorMap* map, uint8_t* tile,
                                                  uint64_t* bar, const RequestInfo& req, int kv_head, int n) {
  const int first = n * T::kBlockKV;
  if (!p.paged) {
    ptx::mbarrier_arrive_expect_tx(bar, T::kKvTileBytes);
#pragma unroll
    for (int slice = 0; slice < T::kSlices; ++slice) {
      const int32_t coord[3] = {slice * T::kSliceCols, kv_head, req.kv_start + first};
      ptx::cp_async_bulk_tensor_load<3>(tile + slice * T::kKvSliceBytes, map, bar, coord);
    }
    return;
  }
  const int rows_per_box = min(p.page_size, T::kBlockKV);
  const int boxes = (min(T::kBlockKV, req.kv_len - first) + rows_per_box - 1) / rows_per_box;
  const int first_entry = req.kv_start + first / p.page_size;
  const int32_t slot = first % p.page_size;
  ptx::mbarrier_arrive_expect_tx(bar, boxes * rows_per_box * T::kRowBytes * T::kSlices);
  for (int box = 0; box < boxes; ++box) {
    const int32_t page = p.kv_indices[first_entry + box];
#pragma unroll
    for (int slice = 0; slice < T::kSlices; ++slice) {
      // The map's dims are (d, head, slot, page) for NHD and (d, slot, head, page) for HND.
      const int32_t coord[4] = {slice * T::kSliceCols, p.hnd ? slot : kv_head, p.hnd ? kv_head : slot, page};
      ptx::cp_async_bulk_tensor_load<4>(tile + slice * T::kKvSliceBytes + box * rows_per_box * T::kRowBytes, map,
                                        bar, coord);
    }
  }
}

// Writes zeros over rows [first_row, BLOCK_KV) of a K/V tile (all slices),
// shared among kThreads threads. Whole rows are zeroed, so the swizzle does
// not matter.
template <class T, int kThreads>
__device__ __forceinline__ void zero_tile_rows(uint8_t* tile, int first_row, int tid) {
  constexpr int kChunksPerSliceRow = T::kRowBytes / 16;
  constexpr int kChunks = T::kSlices * T::kBlockKV * kChunksPerSliceRow;
#pragma unroll 4
  for (int i = tid; i < kChunks; i += kThreads) {
    const int row = (i / kChunksPerSliceRow) % T::kBlockKV;
    const int slice = i / (kChunksPerSliceRow * T::kBlockKV);
    if (row >= first_row)
      *reinterpret_cast<uint4*>(tile + slice * T::kKvSliceBytes + row * T::kRowBytes +
                                (i % kChunksPerSliceRow) * 16) = make_uint4(0, 0, 0, 0);
  }
}

template <class T>
__device__ void produce_tma(PrefillSharedStorage<T>& s, const PrefillParams& p, const CUtensorMap* k_map,
                            const CUtensorMap* v_map, const RequestInfo& req, KvBlockRange range, int kv_head,
                            PipelineState<T::kStages>& kv) {
  // K and V rows past kv_len land as whatever the pool (or the next ragged
  // request) holds there, NaN included: K is harmless because the mask
  // selects -inf for those scores; V is zeroed by the consumers before P V
  // (zero_v_tail), since TMA fills zeros only outside the pool.
  for (int i = 0; i < range.count(); ++i) {
    const int n = range.end - 1 - i;
    const auto st = kv.plus(i);
    wait_barrier<T>(s, p, &s.k_empty[st.stage], st.phase ^ 1);
    load_kv_block_tma<T>(p, k_map, s.k[st.stage], &s.k_full[st.stage], req, kv_head, n);
    wait_barrier<T>(s, p, &s.v_empty[st.stage], st.phase ^ 1);
    load_kv_block_tma<T>(p, v_map, s.v[st.stage], &s.v_full[st.stage], req, kv_head, n);
  }
  kv = kv.plus(range.count());
}

// Gather path: the pool page holding `token` (paged only; 0 past the sequence
// end, where nothing is read).
__device__ __forceinline__ int32_t kv_page(const PrefillParams& p, const RequestInfo& req, int token) {
  return p.paged && token < req.kv_len ? p.kv_indices[req.kv_start + token / p.page_size] : 0;
}

// Gather path: element offset of K/V token `token` in `page` (kv_page), 0 past
// the sequence end (such rows are zero-filled; the address is never read).
__device__ __forceinline__ int64_t kv_row_offset(const PrefillParams& p, const RequestInfo& req, int kv_head,
                                                 int token, int32_t page) {
  if (token >= req.kv_len) return 0;
  if (!p.paged) return int64_t(req.kv_start + token) * p.page_stride + kv_head * p.head_stride;
  return int64_t(page) * p.page_stride + int64_t(token % p.page_size) * p.slot_stride + kv_head * p.head_stride;
}

// Where one producer lane's 16-byte chunks go in a K/V tile: the lane group
// (lane / 8) picks the row within a step, the lane its chunk. A warp's rows
// start on a multiple of 8, so in step s the row's swizzle phase is
// (4 * (s & 1) + group): two precomputed offsets serve every step.
struct GatherLane {
  uint32_t tile_offset[2];  // byte offset in the tile (slice 0) of this lane's chunk in steps of parity 0 / 1
  int element_offset;       // element offset of the chunk within a row of the source
};

template <class T>
__device__ __forceinline__ GatherLane gather_lane(int warp, int lane) {
  const int group = lane / T::kGatherLanesPerRow, chunk = lane % T::kGatherLanesPerRow;
  const uint32_t row_offset = (warp * T::kGatherRowsPerWarp + group) * T::kRowBytes;
  return {{row_offset + ((chunk ^ group) << 4), row_offset + ((chunk ^ (group + 4)) << 4)}, chunk * 8};
}

// Copies this warp's rows of one K or V block into the swizzled layout: per
// step 4 rows, each by 8 lanes (one 128-byte line per slice, coalesced), one
// cp.async per slice. `lane_base` is the tensor plus this lane's chunk;
// `my_offset` the offset of row `lane` of the warp's rows, `valid_rows` how
// many of the warp's rows hold keys. Each warp works alone, so the producer
// needs no barrier of its own.
template <class T>
__device__ __forceinline__ void gather_kv_rows(uint8_t* tile, const typename T::Element* lane_base, int64_t my_offset,
                                               const GatherLane& at, int valid_rows, int lane) {
  const uint32_t tile_addr = ptx::smem_u32(tile);
#pragma unroll
  for (int step = 0; step < T::kGatherRowsPerWarp / T::kGatherRowsPerStep; ++step) {
    const int local_row = step * T::kGatherRowsPerStep + lane / T::kGatherLanesPerRow;
    const int64_t offset = __shfl_sync(0xffffffffu, my_offset, local_row);
    const bool valid = local_row < valid_rows;
#ifdef PTXATTN_INJECT_BUG_SKIP_TAIL_ZERO
    if (!valid) continue;  // the seed bug: rows past the end keep stale shared memory
#endif
    const uint32_t dst = tile_addr + at.tile_offset[step & 1] + step * T::kGatherRowsPerStep * T::kRowBytes;
    // RULE: rows past the sequence end become exact zeros (src-size 0 zero-fill).
#pragma unroll
    for (int slice = 0; slice < T::kSlices; ++slice)
      ptx::cp_async_cg_16_zfill(dst + slice * T::kKvSliceBytes, lane_base + offset + slice * T::kSliceCols, valid);
  }
}

template <class T>
__device__ void produce_gather(PrefillSharedStorage<T>& s, const PrefillParams& p, const RequestInfo& req,
                               KvBlockRange range, int kv_head, int tid, PipelineState<T::kStages>& kv) {
  using Element = typename T::Element;
  const int warp = tid / 32, lane = tid % 32;
  const GatherLane at = gather_lane<T>(warp, lane);
  const auto* k = static_cast<const Element*>(p.k) + at.element_offset;
  const auto* v = static_cast<const Element*>(p.v) + at.element_offset;
  // Lane l holds the offset of row l of the warp's share of each block (lanes
  // past the share hold none), and reads the page of its next block's row
  // one block ahead, so the page-table load is off the copy's critical path.
  const bool holds_row = lane < T::kGatherRowsPerWarp;
  const int first_row = warp * T::kGatherRowsPerWarp;
  auto token_of = [&](int n) { return n * T::kBlockKV + first_row + lane; };
  int32_t page = holds_row && range.count() > 0 ? kv_page(p, req, token_of(range.end - 1)) : 0;
  for (int i = 0; i < range.count(); ++i) {
    const int n = range.end - 1 - i;
    const auto st = kv.plus(i);
    const int64_t my_offset = holds_row ? kv_row_offset(p, req, kv_head, token_of(n), page) : 0;
    if (holds_row && i + 1 < range.count()) page = kv_page(p, req, token_of(n - 1));
    const int valid_rows = req.kv_len - n * T::kBlockKV - first_row;
    // Each thread's arrival fires when its own copies have landed (noinc: the
    // 128 arrivals are the barrier's expected count), so the producer never
    // waits for data, only for free stages.
    wait_barrier<T>(s, p, &s.k_empty[st.stage], st.phase ^ 1);
    gather_kv_rows<T>(s.k[st.stage], k, my_offset, at, valid_rows, lane);
    ptx::cp_async_mbarrier_arrive_noinc(&s.k_full[st.stage]);
    wait_barrier<T>(s, p, &s.v_empty[st.stage], st.phase ^ 1);
    gather_kv_rows<T>(s.v[st.stage], v, my_offset, at, valid_rows, lane);
    ptx::cp_async_mbarrier_arrive_noinc(&s.v_full[st.stage]);
  }
  kv = kv.plus(range.count());
}

// Consumers of gathered tiles: cp.async writes are generic-proxy writes.
// RULE: fence them into the async proxy before wgmma reads them. The fence
// sits after the acquire of the full barrier, in the causal chain between
// the copies and the wgmma.
template <class T>
__device__ __forceinline__ void wait_full(const PrefillSharedStorage<T>& s, const PrefillParams& p, uint64_t* full,
                                          uint32_t phase) {
  wait_barrier<T>(s, p, full, phase);
#ifndef PTXATTN_INJECT_BUG_SKIP_PROXY_FENCE
  if constexpr (T::kPath == LoadPath::kGather) ptx::fence_proxy_async_shared_cta();
#endif
}

// ============================================================================
// Consumer
// ============================================================================

// Hides a value from the optimiser so that descriptors derived from it are
// computed next to their wgmma instead of being hoisted out of the KV loop,
// where 2 x (HEAD_DIM/16 + BLOCK_KV/16) live 64-bit descriptors would crowd
// out the accumulators.
__device__ __forceinline__ uint64_t opaque(uint64_t x) {
  asm volatile("" : "+l"(x));
  return x;
}

// Issues S (64 x BLOCK_KV) = Q (64 x D) K^T for this warpgroup's 64 rows
// (one commit group; the caller waits).
template <class T>
__device__ __forceinline__ void issue_scores(float (&scores)[T::kBlockKV / 2], const uint8_t* q_rows,
                                             const uint8_t* k_tile) {
  constexpr int kStepsPerSlice = T::kSliceCols / 16;
  // K-major 128B swizzle: 8-row groups 1024 B apart, LBO unused.
  const uint64_t q_desc = opaque(ptx::make_smem_descriptor(ptx::smem_u32(q_rows), 16, 1024, ptx::Swizzle::k128B));
  const uint64_t k_desc = opaque(ptx::make_smem_descriptor(ptx::smem_u32(k_tile), 16, 1024, ptx::Swizzle::k128B));
#pragma unroll
  for (int step = 0; step < T::kHeadDim / 16; ++step) {
    const int slice = step / kStepsPerSlice;
    const uint32_t k_offset = (step % kStepsPerSlice) * 32;  // 16 elements along K = 32 bytes in a swizzled row
#ifdef PTXATTN_INJECT_BUG_SKIP_FIRST_SCALE_D0
    const bool accumulate = true;  // the first step adds onto stale registers
#else
    const bool accumulate = step > 0;  // RULE: the first wgmma of an accumulation uses scale-d = 0
#endif
    ptx::wgmma_ss<T::kBlockKV, T::kType, 0, 0>(
        scores, ptx::descriptor_advance(q_desc, slice * T::kQSliceBytes + k_offset),
        ptx::descriptor_advance(k_desc, slice * T::kKvSliceBytes + k_offset), accumulate);
  }
  ptx::wgmma_commit_group();
}

// Issues O (64 x D) += P (64 x BLOCK_KV, registers) V (BLOCK_KV x D, MN-major)
// (one commit group; the caller waits).
template <class T>
__device__ __forceinline__ void issue_pv(float (&out)[T::kHeadDim / 2], const uint32_t (&probs)[T::kBlockKV / 4],
                                         const uint8_t* v_tile) {
  // MN-major 128B swizzle: LBO = distance between 64-column slices, SBO = 8 rows.
  const uint64_t v_desc =
      opaque(ptx::make_smem_descriptor(ptx::smem_u32(v_tile), T::kKvSliceBytes, 1024, ptx::Swizzle::k128B));
#pragma unroll
  for (int step = 0; step < T::kBlockKV / 16; ++step) {
    const uint32_t a[4] = {probs[4 * step], probs[4 * step + 1], probs[4 * step + 2], probs[4 * step + 3]};
    ptx::wgmma_rs<T::kHeadDim, T::kType, 1>(out, a, ptx::descriptor_advance(v_desc, step * 16 * T::kRowBytes), true);
  }
  ptx::wgmma_commit_group();
}

// Per-thread view of the two rows it owns in the m64 accumulator layout.
struct RowState {
  float max[2];          // running max of the (capped) raw scores; -inf until a visible key was seen
  float partial_sum[2];  // this thread's share of the row sum; reduced over the quad at the end
};

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// What the mask needs about this thread's rows: the absolute position of its
// first row (the second is 8 rows further) and of the tile's first row.
struct RowPositions {
  int first_row_pos;
  int tile_first_pos;
};

// Soft cap, mask and online softmax of one score block; leaves P (packed as
// wgmma A-fragments: register m = S registers 2m, 2m+1) in `probs` and the factors
// the accumulator must be rescaled by in `rescale`.
template <class T>
__device__ __forceinline__ void softmax_block(float (&scores)[T::kBlockKV / 2], uint32_t (&probs)[T::kBlockKV / 4],
                                              float (&rescale)[2], RowState& rows, const PrefillParams& p,
                                              const RequestInfo& req, const RowPositions& at, int n, int lane) {
  constexpr int kS = T::kBlockKV / 2;
  if (p.soft_cap) {
#pragma unroll
    for (int j = 0; j < kS; ++j) scores[j] = tanhf(scores[j] * p.score_prescale);
  }
  // Only blocks that cross the sequence end, the causal diagonal or the
  // window's left edge need per-element masks.
  const int key0 = n * T::kBlockKV;
  const bool crosses_end = key0 + T::kBlockKV > req.kv_len;
  const bool crosses_diagonal = p.causal && key0 + T::kBlockKV - 1 > at.tile_first_pos;
  const bool crosses_window = p.window_left >= 0 && key0 < at.tile_first_pos + T::kBlockQ - 1 - p.window_left;
  if (crosses_end || crosses_diagonal || crosses_window) {
    // Key of register j = key_base + 8*(j/4) + (j&1). The visible keys of each
    // row form [first, end) relative to key_base, so the per-register test
    // compares against immediates (no per-register key stays live).
    // Positions, keys and the window (below every kv_len: the plan turns a
    // longer one off) are all under 2^30, and the window's left edge is
    // clamped at key 0 before key_base is subtracted, so nothing here wraps.
    const int key_base = key0 + 2 * (lane % 4);
    int first[2], end[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int pos = at.first_row_pos + 8 * h;
      end[h] = (p.causal ? min(req.kv_len, pos + 1) : req.kv_len) - key_base;
#ifdef PTXATTN_INJECT_BUG_WINDOW_OVERFLOW
      first[h] = p.window_left >= 0 ? pos - p.window_left - key_base : INT_MIN;  // the bug: wraps
#else
      first[h] = p.window_left >= 0 ? max(pos - p.window_left, 0) - key_base : INT_MIN;
#endif
    }
#pragma unroll
    for (int j = 0; j < kS; ++j) {
      const int key = 8 * (j / 4) + (j & 1);
      const int h = (j / 2) & 1;
      // RULE: mask by selection, never by arithmetic.
      scores[j] = key >= first[h] && key < end[h] ? scores[j] : -INFINITY;
    }
  }

  // RULE: a row with no visible key yet keeps max = -inf; it is shifted by 0
  // instead, so exp2 gives 0 rather than exp2(-inf + inf) = NaN.
  float shift[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float block_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kS; ++j)
      if (((j / 2) & 1) == h) block_max = fmaxf(block_max, scores[j]);
    const float new_max = fmaxf(rows.max[h], quad_max(block_max));
    const float safe_max = new_max == -INFINITY ? 0.f : new_max;
    shift[h] = safe_max * p.score_scale_log2;
    rescale[h] = ptx::ex2_approx(rows.max[h] * p.score_scale_log2 - shift[h]);  // 0 while max was -inf
    rows.max[h] = new_max;
  }
  float block_sum[2] = {0.f, 0.f};
#pragma unroll
  for (int j = 0; j < kS; ++j) {
    const int h = (j / 2) & 1;
    scores[j] = ptx::ex2_approx(fmaf(scores[j], p.score_scale_log2, -shift[h]));
    block_sum[h] += scores[j];
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) rows.partial_sum[h] = rows.partial_sum[h] * rescale[h] + block_sum[h];
  // S registers 2m, 2m+1 are two neighbouring columns of one row: packed, they
  // are A-fragment register m, and k16 slice j is registers 4j..4j+3 (ptx/wgmma.cuh).
#pragma unroll
  for (int m = 0; m < T::kBlockKV / 4; ++m) probs[m] = ptx::cvt_pack_f32x2<T::kType>(scores[2 * m], scores[2 * m + 1]);
}

template <int kCount>
__device__ __forceinline__ void scale_accumulator(float (&out)[kCount], const float (&rescale)[2]) {
#pragma unroll
  for (int j = 0; j < kCount; ++j) out[j] *= rescale[(j / 2) & 1];
}

// One warp's share of releasing a stage: all its wgmma reading the stage have
// retired (the caller waited), so one lane arrives for the warp.
__device__ __forceinline__ void release_stage(uint64_t* empty, int lane) {
  __syncwarp();
  if (lane == 0) ptx::mbarrier_arrive(empty);
}

// TMA path, first block walked (the only one that can end inside the block).
// RULE: V rows past the sequence end must be zero before P V reads them
// (P = 0 there, but 0 * NaN = NaN). TMA fills zeros only outside the pool,
// never in the unused tail of a page inside it, nor in rows of pages the
// request does not own, so both consumer warpgroups overwrite those rows once
// the block has landed, fence, and meet before either issues P V.
template <class T>
__device__ __forceinline__ void zero_v_tail(PrefillSharedStorage<T>& s, const PrefillParams& p, const RequestInfo& req,
                                            KvBlockRange range, const PipelineState<T::kStages>& first,
                                            int consumer_tid) {
  constexpr int kConsumerThreads = T::kConsumerWarpgroups * 128;
  const int tail_rows_from = req.kv_len - (range.end - 1) * T::kBlockKV;
  if (tail_rows_from >= T::kBlockKV) return;
  wait_full<T>(s, p, &s.v_full[first.stage], first.phase);
#ifndef PTXATTN_INJECT_BUG_SKIP_TAIL_ZERO
  zero_tile_rows<T, kConsumerThreads>(s.v[first.stage], tail_rows_from, consumer_tid);
#endif
#ifndef PTXATTN_INJECT_BUG_SKIP_PROXY_FENCE
  // RULE: generic-proxy stores must be fenced before wgmma (async proxy) reads them.
  ptx::fence_proxy_async_shared_cta();
#endif
  ptx::named_barrier_sync(static_cast<uint32_t>(NamedBarrier::kConsumers), kConsumerThreads);
}

// Epilogue: normalise and write O (and LSE) of this thread's two rows
// (`row_in_tile` is the first). The item is loaded again here rather than
// kept live through the KV loop, where every register is needed.
template <class T>
__device__ __forceinline__ void store_output(const PrefillParams& p, const float (&out)[T::kHeadDim / 2],
                                             const RowState& rows, int item, int row_in_tile, int lane) {
  const WorkTile tile = p.tiles[item / p.num_qo_heads];
  const RequestInfo req = p.requests[tile.request];
  const int head = item % p.num_qo_heads;
  const int first_q_row = tile.q_block * T::kBlockQ + row_in_tile;
  auto* o = static_cast<typename T::Element*>(p.o);
  // RULE: a fully masked row has sum 0: output 0 and LSE -inf.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float sum = quad_sum(rows.partial_sum[h]);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    const int q_row = first_q_row + 8 * h;
    if (q_row >= req.qo_len) continue;
    const int64_t row = int64_t(req.qo_start + q_row) * p.num_qo_heads + head;
    uint32_t* dst = reinterpret_cast<uint32_t*>(o + row * T::kHeadDim);
#pragma unroll
    for (int j = 0; j < T::kHeadDim / 2; j += 2) {
      if (((j / 2) & 1) != h) continue;
      const int col = 8 * (j / 4) + 2 * (lane % 4);
      dst[col / 2] = ptx::cvt_pack_f32x2<T::kType>(out[j] * inv, out[j + 1] * inv);
    }
    if (p.lse != nullptr && lane % 4 == 0)
      p.lse[row] = sum > 0.f ? (rows.max[h] * p.score_scale_log2 + __log2f(sum)) * kLn2 : -INFINITY;
  }
}

// Q is loaded by consumer thread 0: the consumers know when they are done
// with the last Q, and the producer then never waits on anything but its
// rings. Loads the Q tile of one item.
template <class T>
__device__ __forceinline__ void load_q(PrefillSharedStorage<T>& s, const CUtensorMap* q_map, const RequestInfo& req,
                                       int q_block, int head) {
  // Rows past the request belong to the next request (or are zero-filled past
  // the tensor): their results are never stored, and rows of S and O are
  // independent, so they cannot reach a stored row.
  ptx::mbarrier_arrive_expect_tx(&s.q_full, T::kSlices * T::kQSliceBytes);
#pragma unroll
  for (int slice = 0; slice < T::kSlices; ++slice) {
    const int32_t coord[3] = {slice * T::kSliceCols, head, req.qo_start + q_block * T::kBlockQ};
    ptx::cp_async_bulk_tensor_load<3>(s.q + slice * T::kQSliceBytes, q_map, &s.q_full, coord);
  }
}

// Loads Q of the first item with KV blocks among positions [position, end)
// of this CTA's list (none if there is none).
template <class T>
__device__ __forceinline__ void load_next_q(PrefillSharedStorage<T>& s, const PrefillParams& p,
                                            const CUtensorMap* q_map, int position, int end) {
  for (; position < end; ++position) {
    const Work w = work_at<T>(p, work_item(p, position));
    if (w.range.count() > 0) {
      load_q<T>(s, q_map, w.req, w.q_block, w.head);
      return;
    }
  }
}

// One work item of one consumer warpgroup: O and the row state of its 64
// rows over the item's KV blocks, walked from last to first. `kv` is the
// ring state of the item's first block and leaves past its last;
// q_phase is the item's parity of q_full. Once every score block has
// retired, consumer thread 0 loads Q of the next item with KV blocks among
// positions [next, end) of the CTA's list.
template <class T>
__device__ __forceinline__ void consume_item(PrefillSharedStorage<T>& s, const PrefillParams& p,
                                             const CUtensorMap* q_map, const Work& w, int next, int end,
                                             PipelineState<T::kStages>& kv, uint32_t q_phase,
                                             float (&out)[T::kHeadDim / 2], RowState& rows, int row_in_tile,
                                             int consumer, int tid) {
  using Probs = uint32_t[T::kBlockKV / 4];
  const int lane = tid % 32;
  const RequestInfo& req = w.req;
  const int shift_to_pos = req.kv_len - req.qo_len;
  const RowPositions at{shift_to_pos + w.q_block * T::kBlockQ + row_in_tile, shift_to_pos + w.q_block * T::kBlockQ};
  const uint8_t* q_rows = s.q + consumer * T::kRowsPerConsumer * T::kRowBytes;
  const int count = w.range.count();

  // Ping-pong (T::kPingPong): the two consumer warpgroups take turns issuing
  // wgmma, so one's softmax runs while the other's GEMMs hold the tensor
  // cores. A warpgroup waits on its own turn barrier before issuing and
  // arrives on the other's after. Both take count + 1 turns per item;
  // consumer 1 opens consumer 0's first turn and skips its own last arrival,
  // so every barrier phase completes and none is left open between items.
  constexpr uint32_t kTurnThreads = 2 * 128;
  const uint32_t my_turn = uint32_t(NamedBarrier::kTurnOfConsumer0) + consumer;
  const uint32_t other_turn = uint32_t(NamedBarrier::kTurnOfConsumer0) + (consumer ^ 1);
  auto begin_turn = [&] {
    if constexpr (T::kPingPong) ptx::named_barrier_sync(my_turn, kTurnThreads);
  };
  auto end_turn = [&](bool last) {
    if constexpr (T::kPingPong)
      if (!last || consumer == 0) ptx::named_barrier_arrive(other_turn, kTurnThreads);
  };

  if constexpr (T::kPingPong)
    if (consumer == 1) ptx::named_barrier_arrive(other_turn, kTurnThreads);
  wait_barrier<T>(s, p, &s.q_full, q_phase);
  if constexpr (T::kPath == LoadPath::kTma) zero_v_tail<T>(s, p, req, w.range, kv, consumer * 128 + tid);
  // Block 0: scores and softmax only; its P V is issued with the next scores.
  float scores[T::kBlockKV / 2];
  Probs probs;
  float rescale[2];
  wait_full<T>(s, p, &s.k_full[kv.stage], kv.phase);
  begin_turn();
  ptx::wgmma_fence();
  issue_scores<T>(scores, q_rows, s.k[kv.stage]);
  end_turn(false);
  ptx::wgmma_wait_group<0>();
  ptx::accumulator_fence(scores);
  release_stage(&s.k_empty[kv.stage], lane);
  softmax_block<T>(scores, probs, rescale, rows, p, req, at, w.range.end - 1, lane);

  // Steady state: S(i) and O += P(i-1) V(i-1) are in flight together, and
  // the softmax of S(i) runs while P V still occupies the tensor cores.
  // P(i-1) and P(i) live in two buffers that swap roles every block (a copy
  // between them would serialise the wgmma pipeline: ptxas C7513).
  auto overlapped_block = [&](int i, Probs& in_flight, Probs& produced) {
    const auto st = kv.plus(i), prev = kv.plus(i - 1);
    wait_full<T>(s, p, &s.k_full[st.stage], st.phase);
    wait_full<T>(s, p, &s.v_full[prev.stage], prev.phase);
    begin_turn();
    ptx::wgmma_fence();  // the accumulator and P were written since the last wgmma
    issue_scores<T>(scores, q_rows, s.k[st.stage]);
    issue_pv<T>(out, in_flight, s.v[prev.stage]);
    end_turn(false);
    ptx::wgmma_wait_group<1>();  // S(i) retired; P(i-1) V(i-1) may still run
    ptx::accumulator_fence(scores);
    release_stage(&s.k_empty[st.stage], lane);
    softmax_block<T>(scores, produced, rescale, rows, p, req, at, w.range.end - 1 - i, lane);
    ptx::wgmma_wait_group<0>();
    // Keeps P(i-1) alive (the MMA reads its registers until here) and orders
    // the rescale after the accumulation.
    ptx::accumulator_fence(in_flight);
    ptx::accumulator_fence(out);
    release_stage(&s.v_empty[prev.stage], lane);
    scale_accumulator(out, rescale);
  };
  // Every score block of both warpgroups has retired: the next item's Q
  // load overlaps the last P V and the epilogue.
  auto last_block = [&](const Probs& last_probs) {
    const auto prev = kv.plus(count - 1);
    ptx::named_barrier_sync(static_cast<uint32_t>(NamedBarrier::kConsumers), T::kConsumerWarpgroups * 128);
    if (consumer == 0 && tid == 0) load_next_q<T>(s, p, q_map, next, end);
    wait_full<T>(s, p, &s.v_full[prev.stage], prev.phase);
    begin_turn();
    ptx::wgmma_fence();
    issue_pv<T>(out, last_probs, s.v[prev.stage]);
    end_turn(true);
    ptx::wgmma_wait_group<0>();
    ptx::accumulator_fence(out);
    release_stage(&s.v_empty[prev.stage], lane);
  };
  Probs other_probs;
  int i = 1;
  for (; i + 1 < count; i += 2) {
    overlapped_block(i, probs, other_probs);
    overlapped_block(i + 1, other_probs, probs);
  }
  if (i < count) {
    overlapped_block(i, probs, other_probs);
    last_block(other_probs);
  } else {
    last_block(probs);
  }
  kv = kv.plus(count);
}

// ============================================================================
// Roles
// ============================================================================

// Producer warpgroup: the KV blocks of each item, from last to first. TMA:
// one thread issues everything; gather: all 128 threads copy.
template <class T>
__device__ void producer(PrefillSharedStorage<T>& s, const PrefillParams& p, const CUtensorMap* k_map,
                         const CUtensorMap* v_map, int tid) {
  if (T::kPath == LoadPath::kTma && tid != 0) return;
  const WorkRange work = cta_work(p);
  PipelineState<T::kStages> kv;
  for (int position = work.begin; position < work.end; ++position) {
    const Work w = work_at<T>(p, work_item(p, position));
    if (w.range.count() == 0) continue;
    const int kv_head = w.head / p.group_size;
    if constexpr (T::kPath == LoadPath::kTma)
      produce_tma<T>(s, p, k_map, v_map, w.req, w.range, kv_head, kv);
    else
      produce_gather<T>(s, p, w.req, w.range, kv_head, tid, kv);
  }
}

// Consumer warpgroup `consumer` (rows [64 * consumer, 64 * consumer + 64) of
// every tile): each item's attention, then its epilogue. An item without
// KV blocks (no visible key) stores O = 0 and LSE = -inf.
template <class T>
__device__ void consumer(PrefillSharedStorage<T>& s, const PrefillParams& p, const CUtensorMap* q_map, int consumer,
                         int tid) {
  constexpr int kO = T::kHeadDim / 2;
  // This thread's first accumulator row within the tile; its second is 8 further.
  const int row_in_tile = consumer * T::kRowsPerConsumer + 16 * (tid / 32) + (tid % 32) / 4;
  const WorkRange work = cta_work(p);
  if (consumer == 0 && tid == 0) {
    ptx::prefetch_tensormap(q_map);
    load_next_q<T>(s, p, q_map, work.begin, work.end);
  }
  PipelineState<T::kStages> kv;
  uint32_t q_phase = 0;
  float out[kO];
  RowState rows;
  for (int position = work.begin; position < work.end; ++position) {
    const int item = work_item(p, position);
    const Work w = work_at<T>(p, item);
    // RULE: registers gained by setmaxnreg are undefined, and the last item's
    // values are stale: the accumulator and the row state are written before
    // anything reads them, for every item.
#ifdef PTXATTN_INJECT_BUG_STALE_ACCUMULATOR
    if (position == work.begin)  // the bug: later items start from the last item's O and row state
#endif
    {
#pragma unroll
      for (int i = 0; i < kO; ++i) out[i] = 0.f;
      rows = {{-INFINITY, -INFINITY}, {0.f, 0.f}};
    }
    if (w.range.count() > 0) {
      consume_item<T>(s, p, q_map, w, position + 1, work.end, kv, q_phase, out, rows, row_in_tile, consumer, tid);
      q_phase ^= 1;
    }
    store_output<T>(p, out, rows, item, row_in_tile, tid % 32);
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
    ptx::fence_mbarrier_init();
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
