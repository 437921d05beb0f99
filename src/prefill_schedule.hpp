// The order in which CTAs take the prefill's work items, made on the host by
// the plan (pure functions of the batch, tested on the CPU). A work item is
// one tile of `tiles` for one group of tile heads (one qo head, or with GQA
// packing 2^heads_log2 of one KV group), numbered
// tile_index * item_heads() + head group; with split-KV a tile is one chunk
// of a query block's KV blocks.
#pragma once

#include <cstdint>
#include <vector>

#include "prefill_params.hpp"
#include "ptxattn/ptxattn.hpp"

namespace ptxattn::detail {

// What scheduling needs to know of a batch.
struct ScheduleInputs {
  const std::vector<RequestInfo>* requests;
  int32_t num_qo_heads;
  int32_t group_size;  // qo heads per KV head
  int32_t head_dim;
  int32_t block_kv;  // KV block rows (prefill_params.hpp)
  bool causal;
  int32_t window_left;  // as the kernel sees it (-1: off)
  int32_t kv_splits = 1;  // chunks per query block, the most (split-KV; 1: none)
  // The split rule's chunks: each query block's in proportion to its KV
  // blocks (tile_kv_splits). Otherwise (a forced count) kv_splits for every
  // query block.
  bool splits_by_length = false;
  int32_t heads_log2 = 0;  // qo heads per tile, log2 (GQA packing; 0: token-major)
  int32_t item_heads() const { return num_qo_heads >> heads_log2; }  // head groups: items per tile
};

// Estimated time of a tile (for any head), in KV blocks: the blocks of its
// chunk plus one for loading Q and storing O.
int64_t tile_cost(const ScheduleInputs& in, const WorkTile& tile);

// The chunks of a query block of `blocks` KV blocks, where the batch's
// longest has `longest_blocks`: kv_splits for every block (a forced count,
// or no split), or with splits_by_length ceil(kv_splits x blocks /
// longest_blocks), at least 1, so that no chunk holds more blocks than the
// longest block's chunks and a short block is not cut into chunks that
// cost more than they hold.
int32_t tile_kv_splits(const ScheduleInputs& in, int32_t blocks, int32_t longest_blocks);

// The query tokens of a tile.
int32_t tile_token_count(const ScheduleInputs& in, const WorkTile& tile);

// Every tile of the batch (each query block once per chunk of it), longest
// first (stable): the numbering of items. Their state rows (first_state)
// follow the tokens in order, each token's chunks together.
std::vector<WorkTile> tiles_longest_first(const ScheduleInputs& in);

// GQA packing (prefill_params.hpp): a group of qo heads packs into a tile
// when it divides the tile's rows; log2_of is its exponent.
constexpr bool gqa_packable(int32_t group) { return group >= 1 && group <= kPrefillBlockQ && kPrefillBlockQ % group == 0; }
constexpr int32_t log2_of(int32_t power_of_two) {
  int32_t log2 = 0;
  while ((1 << log2) < power_of_two) ++log2;
  return log2;
}

// The rule of GqaPacking::kAuto: pack where the batch's tiles then hold
// fewer rows, counted over a KV group's qo heads: token-major,
// group x ceil(qo_len / 128) tiles per request; packed, ceil(qo_len x group
// / 128). Equal counts (every qo_len a multiple of 128) stay token-major.
bool gqa_packing_pays(const std::vector<RequestInfo>& requests, int32_t group);

// NOTES: a chunk keeps at least this many KV blocks, so that filling the
// pipeline and storing the chunk's state stay small beside its work. Not
// tuned.
constexpr int32_t kMinBlocksPerKvSplit = 4;

// The split rule's partial states (each query row's chunks, summed) stay
// within this many per SM: what prefill_workspace_size sizes for kv_splits
// = 0 (with head_dim 128, 516 bytes of float32 O and LSE per state: 35 MB
// on 132 SMs). Speculative verification of 4 tokens per request, 64
// requests of 32 qo heads, all as long, may then split into 8 chunks.
constexpr int64_t kAutoSplitStatesPerSm = 4 * kPrefillBlockQ;

// NOTES: a larger chunk count is taken only if it shortens the estimated
// makespan to below this percentage of the best so far. The estimate
// counts SMs, but a memory-bound decode saturates the DRAM with fewer:
// measured (docs/benchmarks.md, "2026-12-06, twentieth session (2)"), one
// request of 32 KV heads over 262144 keys streamed 2% slower in 33 chunks
// (8 per SM on all 132 SMs, estimated 1.8% shorter) than in 4 (one wave
// on 128 SMs).
constexpr int64_t kMinSplitGainPercent = 95;

// The split-KV rule (kv_splits = 0; docs/kernels.md, "Split-KV"): the
// chunks of the longest tile, the others cut in proportion
// (splits_by_length). `tiles` unsplit, as tiles_longest_first lists them;
// a work item's cost is tile_cost's (its blocks plus one). A batch is split
// only where its longest item exceeds an SM's even share of the work
// (longest x sms > the items' total): few items, or a few long ones among
// short ones. Then each count from 1 up is estimated by
// longest_first_makespan over sms CTAs, and a count is taken where its
// estimate is below kMinSplitGainPercent % of the best smaller count's. At
// most kMaxKvSplits, at least kMinBlocksPerKvSplit blocks in a chunk of the
// longest tile, and the partial states (the chunks of each query row of a
// split tile) at most kAutoSplitStatesPerSm x sms. 1 (no split) otherwise.
int32_t auto_kv_splits(const ScheduleInputs& in, const std::vector<WorkTile>& tiles, int32_t sms);

// Split-KV's state rows: a row per chunk of each token of a tile of 2
// chunks or more (WorkTile::first_state; a tile of one chunk stores O
// itself).
int64_t state_row_count(const ScheduleInputs& in, const std::vector<WorkTile>& tiles);

// Where the merge finds each token's state rows: empty where every tile has
// in.kv_splits chunks (token t's rows are then t x kv_splits on);
// otherwise num_tokens + 1 offsets, token t's rows being offsets[t] ..
// offsets[t + 1] - 1 (none for a token of a one-chunk tile).
std::vector<int32_t> state_offsets(const ScheduleInputs& in, const std::vector<WorkTile>& tiles, int32_t num_tokens);

// The longest CTA's work when `costs` are dealt in decreasing order, each to
// the CTA with the least so far, over `ctas` CTAs (what the persistent
// lists do, without their L2 order): the split rule's estimate.
int64_t longest_first_makespan(std::vector<int64_t> costs, int32_t ctas);

// What kAuto's schedule depends on.
struct AutoScheduleInputs {
  int64_t items;       // work items, split ones counted
  int32_t max_qo_len;  // the batch's longest query
  bool gather;         // the load path is the gather
  int32_t kv_splits;   // chunks per query tile (1: none)
  bool graph;          // a graph plan
  int32_t max_ctas;    // config.max_ctas
};

// kAuto's schedule (ptxattn.hpp, WorkSchedule): one item per CTA past
// kMaxListedItems items (nothing else runs them); dynamic for unsplit
// batches of short queries (every qo_len at most kDynamicScheduleMaxQoLen:
// decode and speculative verification) on the gather path, outside graph
// plans and CTA limits; persistent otherwise. Measured (docs/benchmarks.md,
// "2026-12-06, fifteenth session"): there the dynamic schedule gained 0.1%
// to 2.5% over the persistent one; on the TMA path's decode rows it lost 1%
// to 3% (its consumers have 224 registers where the static kernels' have
// 240), and with split-KV (one wave of items, nothing to balance) 1.5%;
// longer queries, bound by the MMAs, are not measured under it.
WorkSchedule auto_schedule(const AutoScheduleInputs& in);

// Every work item, in the order CTAs should start them. The KV heads of the
// batch are grouped, in (request, KV head) order, into sections whose K and
// V fit in kL2SectionBytes; a section's items are ordered longest first, the
// items of one KV head next to each other, and sections holding longer items
// go first. Items next to each other in the order run at about the same
// time, on different SMs, reading the same K/V while it is in the L2. With
// one CTA per item, CTA i takes item order[i].
std::vector<int32_t> items_in_l2_order(const ScheduleInputs& in, const std::vector<WorkTile>& tiles);

// Per-CTA lists of work items: CTA c takes items[cta_indptr[c] .. cta_indptr[c + 1]).
struct PersistentLists {
  std::vector<int32_t> cta_indptr;  // [num_ctas + 1]
  std::vector<int32_t> items;
  int32_t num_ctas() const { return int32_t(cta_indptr.size()) - 1; }
};

// Lists for at most max_ctas CTAs: the items of items_in_l2_order, dealt in
// that order, each to the CTA with the least work so far (greedy list
// scheduling), so a CTA's k-th item starts about when its neighbours in the
// order do, and no list exceeds the shortest by more than one item's cost.
PersistentLists persistent_work_lists(const ScheduleInputs& in, const std::vector<WorkTile>& tiles, int32_t max_ctas);

// The K and V bytes of one section: two fifths of the H200's 60 MiB L2
// (as the device reports it), leaving room for the sections before and after
// it and for Q and O traffic. Not tuned: other sizes are unmeasured.
constexpr int64_t kL2SectionBytes = 24ll << 20;

// Above this many work items no order is listed (host memory grows with the
// items; batches that large fill every SM many times over): one CTA per
// item, CTA i taking item i (the longest tiles first, the qo head moving
// fastest), and no persistent schedule.
constexpr int64_t kMaxListedItems = int64_t(1) << 22;

}  // namespace ptxattn::detail
