// The prefill kernel's loads: Q by TMA (issued by a consumer thread), and
// the two K/V load paths, TMA boxes and the cp.async gather, which fill the
// same swizzled ring (docs/kernels.md, "Load paths").
#pragma once

#include <cuda.h>

#include <cstdint>

#include "ptx/cp_async.cuh"
#include "ptx/mbarrier.cuh"
#include "ptx/tma.cuh"
#include "prefill_pipeline.cuh"
#include "prefill_scheduler.cuh"
#include "prefill_traits.cuh"

namespace ptxattn::detail {

// The pool page of page-table entry `entry`. RULE: an entry outside the pool
// is never used as an address: page 0 stands in (the request's output is
// then wrong, and the run reports it), and the lowest such entry is recorded
// for check_page_table_errors.
__device__ __forceinline__ int32_t pool_page(const PrefillParams& p, int32_t entry) {
  const int32_t page = p.kv_indices[entry];
#ifndef PTXATTN_INJECT_BUG_PAGE_INDEX_UNCHECKED
  if (page < 0 || page >= p.num_pages) {
    atomicMin(p.page_table_error, kv_page_error_code(entry, page));
    return 0;
  }
#endif
  return page;
}

// TMA path: one K or V block, in the boxes prefill_params.hpp describes.
// Paged: one box per page (and 64-column slice) of kv_box_rows = min(page_size,
// BLOCK_KV) rows, only for pages the request owns; a page larger than the
// block holds it at slot offset (n % blocks_per_page) * BLOCK_KV. Ragged: one
// BLOCK_KV-row box per slice.
template <class T>
__device__ __forceinline__ void load_kv_block_tma(const PrefillParams& p, const CUtensorMap* map, uint8_t* tile,
                                                  uint64_t* bar, const RequestInfo& req, int kv_head, int n) {
  const int first = n * T::kBlockKV;
  if (!p.paged) {
    ptx::mbarrier_arrive_expect_tx(bar, T::kSlices * tma_box_bytes(kv_box_rows(T::kBlockKV, false, 0)));
#pragma unroll
    for (int slice = 0; slice < T::kSlices; ++slice) {
      const int32_t coord[3] = {slice * T::kSliceCols, kv_head, req.kv_start + first};
      ptx::cp_async_bulk_tensor_load<3>(tile + slice * T::kKvSliceBytes, map, bar, coord);
    }
    return;
  }
  const int rows_per_box = kv_box_rows(T::kBlockKV, true, p.page_size);
  const int boxes = (min(T::kBlockKV, req.kv_len - first) + rows_per_box - 1) / rows_per_box;
  const int first_entry = req.kv_start + first / p.page_size;
  const int32_t slot = first % p.page_size;
  ptx::mbarrier_arrive_expect_tx(bar, boxes * T::kSlices * tma_box_bytes(rows_per_box));
  for (int box = 0; box < boxes; ++box) {
    const int32_t page = pool_page(p, first_entry + box);
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
  // NOTES: unrolled, this loop (its trip count per thread) had ptxas move the
  // TMA consumers' ring state out of uniform registers in the dynamic
  // kernels, whose SM then streamed 4% slower below the DRAM's limit
  // (docs/benchmarks.md, 2026-12-06, seventeenth session). It runs once
  // per item.
#pragma unroll 1
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
  return p.paged && token < req.kv_len ? pool_page(p, req.kv_start + token / p.page_size) : 0;
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

// Q is loaded by consumer thread 0: the consumers know when they are done
// with the last Q, and the producer then never waits on anything but its
// rings. Loads the Q tile of one item: one box of its tokens x heads per
// column slice (the box shape is the plan's, prefill_params.hpp).
template <class T>
__device__ __forceinline__ void load_q(PrefillSharedStorage<T>& s, const PrefillParams& p, const CUtensorMap* q_map,
                                       const Work& w) {
  // Rows past the request belong to the next request (or are zero-filled past
  // the tensor): their results are never stored, and rows of S and O are
  // independent, so they cannot reach a stored row.
  ptx::mbarrier_arrive_expect_tx(&s.q_full, T::kSlices * tma_box_bytes(q_box_rows()));
  const int32_t first_token = w.req.qo_start + w.tile.q_block * tile_tokens(p.heads_log2);
#pragma unroll
  for (int slice = 0; slice < T::kSlices; ++slice) {
    const int32_t coord[3] = {slice * T::kSliceCols, w.head, first_token};
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
      load_q<T>(s, p, q_map, w);
      return;
    }
  }
}

// Dynamic schedule: loads Q of the item `feed` gives next (the one claimed
// after the current) if it has KV blocks (an item without them loads the Q
// of the one after it in its turn).
template <class T>
__device__ __forceinline__ void load_claimed_q(PrefillSharedStorage<T>& s, const PrefillParams& p,
                                               const CUtensorMap* q_map, const ItemFeed& feed) {
  const int item = peek_item<T>(s, p, feed);
  if (item < 0) return;
  const Work w = work_at<T>(p, item);
  if (w.range.count() > 0) load_q<T>(s, p, q_map, w);
}

}  // namespace ptxattn::detail
