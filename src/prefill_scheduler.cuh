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

// What a role needs of one work item: its request, tile, qo head and KV
// blocks (its chunk of them, with split-KV).
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
  const KvBlockRange blocks = kv_block_range(req, tile.q_block, T::kBlockQ, T::kBlockKV, p.causal, p.window_left);
  return {req, tile.q_block, item % p.num_qo_heads, kv_split_range(blocks, tile.split, p.kv_splits)};
}

}  // namespace ptxattn::detail
