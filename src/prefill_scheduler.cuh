// The prefill kernel's scheduler: which work items a CTA takes, in which
// order (the plan's lists: src/prefill_schedule.hpp), and what each role
// needs to know of one item.
#pragma once

#include "prefill_params.hpp"

namespace ptxattn::detail {

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

// What a role needs of one work item: its request, tile, first qo head (of
// 1 << heads_log2, GQA packing) and KV blocks (its chunk of them, with
// split-KV).
struct Work {
  RequestInfo req;
  WorkTile tile;
  int head;
  KvBlockRange range;
};
template <class T>
__device__ __forceinline__ Work work_at(const PrefillParams& p, int item) {
  const WorkTile tile = p.tiles[item / p.item_heads];
  const RequestInfo req = p.requests[tile.request];
  const KvBlockRange blocks =
      kv_block_range(req, tile.q_block, tile_tokens(p.heads_log2), T::kBlockKV, p.causal, p.window_left);
  return {req, tile, (item % p.item_heads) << p.heads_log2, kv_split_range(blocks, tile.split, tile.splits)};
}

// Where row `row` (0 .. BLOCK_Q - 1) of a work item's tile belongs: its
// query token within the request and its qo head (prefill_params.hpp, GQA
// packing).
struct TileRow {
  int q_row;
  int head;
};
__device__ __forceinline__ TileRow tile_row(const PrefillParams& p, const Work& w, int row) {
  return {w.tile.q_block * tile_tokens(p.heads_log2) + (row >> p.heads_log2),
          w.head + (row & ((1 << p.heads_log2) - 1))};
}

// The tile's rows that hold a query: the first tokens_in_tile << heads_log2
// (tile_row: a row's token is row >> heads_log2). A decode tile packs
// fewer rows than BLOCK_Q, and a request's last tile may hold fewer tokens.
__device__ __forceinline__ int tile_rows_filled(const PrefillParams& p, const Work& w) {
  const int tokens = min(tile_tokens(p.heads_log2), w.req.qo_len - w.tile.q_block * tile_tokens(p.heads_log2));
#ifdef PTXATTN_INJECT_BUG_IDLE_ROWS_AS_TOKENS
  return tokens;  // the bug: packed tiles count a token's heads as one row
#else
  return tokens << p.heads_log2;
#endif
}

}  // namespace ptxattn::detail
