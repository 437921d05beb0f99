// Plain data shared by the prefill host code and kernels: the per-request
// summary and work items the plan uploads, and the kernel's parameter block.
#pragma once

#include <cstdint>

#include "ptx/swizzle.hpp"  // PTXATTN_HOST_DEVICE
#include "wait_timeout.hpp"

namespace ptxattn::detail {

// Tile shape, shared by the plan (scheduling, TMA eligibility) and the kernel traits.
constexpr int32_t kPrefillBlockQ = 128;
// KV block rows: 128, 64 at head_dim 256. The wide block (head_dim 128 only)
// spreads each block's softmax bookkeeping, O rescale and barrier traffic
// over 176 keys; the plan takes it (config.kv_block kAuto or kWide) only
// where no block is cut short by a mask and the loads are whole boxes
// (prefill_plan.hpp, wide_kv_block_obstacle), and kAuto only over long KV
// ranges (auto_block_kv).
constexpr int32_t kWideBlockKV = 176;
PTXATTN_HOST_DEVICE constexpr int32_t prefill_block_kv(int32_t head_dim, bool wide) {
  return head_dim == 256 ? 64 : head_dim == 128 && wide ? kWideBlockKV : 128;
}

// K/V stages in the kernel's shared-memory ring (prefill_traits.cuh): as
// many as fit beside Q at head_dim 64 (4); 2 at 128, where the third that
// fits measured slower on the H100; 2 at 256 (all that fit). The deep ring
// (head_dim 128 on the gather path with the standard block) holds 3: a
// candidate, taken only where PrefillConfig::kv_stages forces it
// (docs/kernels.md, "K/V stages").
PTXATTN_HOST_DEVICE constexpr int32_t default_kv_stages(int32_t head_dim) { return head_dim == 64 ? 4 : 2; }
constexpr int32_t kDeepKvStages = 3;

// The kernel's TMA boxes, one description for the host's tensor-map encoding
// (prefill_run.cpp) and the device's expected transaction bytes
// (prefill_load.cuh): a box is kTmaBoxCols columns of one head (a 128-byte
// swizzled row of 16-bit elements) by some rows. A Q box holds a tile's
// rows: tile_tokens tokens of tile_heads heads (GQA packing, below), the
// head fastest, 128 rows in all; a K/V box holds a block's rows (ragged),
// or the rows of one page within a block (paged: the block's pages are
// boxes of their own).
constexpr int32_t kTmaBoxCols = 64;
constexpr int32_t kTmaBoxRowBytes = kTmaBoxCols * 2;
PTXATTN_HOST_DEVICE constexpr int32_t q_box_rows() { return kPrefillBlockQ; }
PTXATTN_HOST_DEVICE constexpr int32_t kv_box_rows(int32_t block_kv, bool paged, int32_t page_size) {
  return paged && page_size < block_kv ? page_size : block_kv;
}
PTXATTN_HOST_DEVICE constexpr int32_t tma_box_bytes(int32_t rows) { return rows * kTmaBoxRowBytes; }

// One request as the kernel sees it (made by the plan from the index arrays).
struct RequestInfo {
  int32_t qo_start;  // first query row in q / o / lse
  int32_t qo_len;
  int32_t kv_start;  // paged: first entry in kv_indices; ragged: first K/V row
  int32_t kv_len;
};

// GQA packing: a tile's BLOCK_Q rows are (token, head) pairs of
// 2^heads_log2 qo heads of one KV group, the head fastest: row r is token
// r >> heads_log2 of the tile and head r & (2^heads_log2 - 1) of its heads.
// heads_log2 = 0 is token-major (one head, BLOCK_Q tokens). Packed, the
// tile covers fewer tokens, and one pass over a KV head's blocks serves
// several qo heads (decode: one token per request fills 1/BLOCK_Q of a
// token-major tile).
PTXATTN_HOST_DEVICE constexpr int32_t tile_tokens(int32_t heads_log2) { return kPrefillBlockQ >> heads_log2; }

// BLOCK_Q query rows of one request (tile_tokens tokens of its heads), over
// chunk `split` of `splits` of their KV blocks (split-KV, kv_split_range
// below; 0 of 1 without it). A work item is a tile for one group of tile
// heads (1 << heads_log2 of them), numbered tile_index * (num_qo_heads >>
// heads_log2) + head group over the plan's tile list.
struct WorkTile {
  int32_t request;
  int32_t q_block;
  int32_t split;
  int32_t splits;  // the query tile's chunks: at most PrefillParams::kv_splits
  // Split-KV, a tile of 2 chunks or more: the state row of the tile's first
  // token, chunk 0. Token t of the tile (0 first), chunk k, is row
  // first_state + t * splits + k: a token's chunks are consecutive rows,
  // the batch's tokens in order. A tile of one chunk has no rows: it stores
  // O and LSE itself. Rows are at most 2^22 split tiles x 128 tokens (the
  // plan's limits): int32.
  int32_t first_state;
};

// A bad page-table entry as the kernel records it: the entry's position in
// the high word (the lowest is kept: atomicMin), its value in the low word.
constexpr unsigned long long kNoPageTableError = ~0ull;
PTXATTN_HOST_DEVICE constexpr unsigned long long kv_page_error_code(int32_t entry, int32_t value) {
  return (static_cast<unsigned long long>(static_cast<uint32_t>(entry)) << 32) | static_cast<uint32_t>(value);
}

// Split-KV: at most this many chunks per tile (PrefillConfig::kv_splits).
constexpr int32_t kMaxKvSplits = 64;

struct PrefillParams {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  int64_t o_row_stride;  // elements from one token's row of o to the next
  float* lse;  // null: not written
  const RequestInfo* requests;
  const WorkTile* tiles;
  // CTA c takes the items cta_work_items[cta_work_indptr[c] .. cta_work_indptr[c + 1])
  // (persistent), or cta_work_items[c] when cta_work_indptr is null (one item
  // per CTA), or item c when both are null (batches too large to list).
  const int32_t* cta_work_indptr;
  const int32_t* cta_work_items;
  // Paged only: the page table (the plan's copy, or the caller's device
  // table at run), read through pool_page (prefill_load.cuh), which never
  // lets an entry outside [0, num_pages) address K or V and records the
  // first such entry in page_table_error.
  const int32_t* kv_indices;
  int32_t num_pages;
  // The lowest bad entry seen, as kv_page_error_code(entry, value); all ones
  // when none (plan-owned, cleared by check_page_table_errors).
  unsigned long long* page_table_error;
  // Split-KV (kv_splits > 1): each tile's KV blocks are cut into its
  // WorkTile::splits chunks (kv_split_range), at most kv_splits; where they
  // are 2 or more, the item of chunk k writes its rows' state, normalised O
  // in float32 and LSE, to partial_o[row][head][d] and partial_lse[row][head]
  // (row: the token's chunk k, WorkTile::first_state) instead of o and lse,
  // and merge_states then combines each token's chunks. A tile of one chunk
  // (the split rule's short ones) and kv_splits == 1: o and lse.
  int32_t kv_splits;
  float* partial_o;
  float* partial_lse;
  int32_t num_qo_heads;
  int32_t group_size;  // num_qo_heads / num_kv_heads
  int32_t heads_log2;  // GQA packing: a tile holds 1 << heads_log2 qo heads (0: token-major)
  int32_t item_heads;  // head groups per tile: num_qo_heads >> heads_log2
  int32_t page_size;   // paged only
  bool paged;
  bool hnd;  // paged only: [page][head][slot][d] instead of [page][slot][head][d]
  // K/V element strides. Paged: of a page, a slot and a head; ragged: of a row
  // (page_stride) and a head, slot_stride unused.
  int64_t page_stride, slot_stride, head_stride;
  bool causal;
  int32_t window_left;      // -1: off; else below every kv_len (the plan turns longer windows off)
  bool soft_cap;            // s = cap * tanh(s_raw * sm_scale / cap)
  float score_prescale;     // soft cap: sm_scale / cap; otherwise 1
  float score_scale_log2;   // multiplies the (capped) score before exp2: sm_scale*log2e or cap*log2e
  // Bounded waits (PTXATTN_BOUNDED_WAITS): where a timed-out wait records
  // itself (host-mapped, src/wait_timeout.cpp); null when the option is off.
  WaitTimeoutRecord* wait_timeout;
  // Dynamic schedule: CTA c takes item cta_work_items[c] first, then the
  // CTAs claim items cta_work_items[gridDim.x + i], i = 0, 1, ..., in order
  // through this counter (zeroed by a kernel the run launches just before
  // this one, prefill_run.cpp); null otherwise. (Last, so the static kernels' offsets
  // of the fields above are those they had before the schedule existed.)
  int32_t* work_counter;
  int32_t num_items;
};

// The KV blocks a work tile must visit: [first, end). Host (plan ordering)
// and device (producer and consumers) use this one definition, so they agree.
// Lengths are at most 2^30 and window_left below every kv_len (the plan's
// limits), so no sum or difference here leaves int32.
struct KvBlockRange {
  int32_t first;
  int32_t end;
  PTXATTN_HOST_DEVICE int32_t count() const { return end > first ? end - first : 0; }
};

PTXATTN_HOST_DEVICE KvBlockRange kv_block_range(const RequestInfo& r, int32_t q_block, int32_t block_q,
                                                int32_t block_kv, bool causal, int32_t window_left) {
  const int32_t q_first = q_block * block_q;
  const int32_t q_last = (q_first + block_q < r.qo_len ? q_first + block_q : r.qo_len) - 1;
  // Absolute positions of the first and last query of the tile (bottom-right aligned).
  const int32_t pos_first = r.kv_len - r.qo_len + q_first;
  const int32_t pos_last = r.kv_len - r.qo_len + q_last;
  int32_t key_end = r.kv_len;
  if (causal && pos_last + 1 < key_end) key_end = pos_last + 1;
  int32_t key_first = 0;
  if (window_left >= 0 && pos_first - window_left > 0) key_first = pos_first - window_left;
  if (key_end <= key_first) return {0, 0};
  return {key_first / block_kv, (key_end + block_kv - 1) / block_kv};
}

// Chunk `split` of `splits` of a tile's KV blocks: near-equal, in order,
// together exactly `range` (a chunk may be empty when range has fewer blocks
// than splits). A range holds at most 2^30 / 64 = 2^24 blocks and splits is at
// most kMaxKvSplits, so the products stay inside int32.
PTXATTN_HOST_DEVICE KvBlockRange kv_split_range(KvBlockRange range, int32_t split, int32_t splits) {
  if (splits == 1) return range;
  const int32_t count = range.count();
  return {range.first + count * split / splits, range.first + count * (split + 1) / splits};
}

}  // namespace ptxattn::detail
