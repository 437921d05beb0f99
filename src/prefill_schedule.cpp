// See prefill_schedule.hpp.
#include "prefill_schedule.hpp"

#include <algorithm>
#include <functional>
#include <queue>
#include <utility>

namespace ptxattn::detail {

namespace {
KvBlockRange tile_blocks(const ScheduleInputs& in, int32_t request, int32_t q_block) {
  return kv_block_range((*in.requests)[request], q_block, tile_tokens(in.heads_log2), in.block_kv, in.causal,
                        in.window_left);
}
int32_t query_blocks(const ScheduleInputs& in, const RequestInfo& r) {
  const int32_t tokens = tile_tokens(in.heads_log2);
  return (r.qo_len + tokens - 1) / tokens;
}
}  // namespace

int64_t tile_cost(const ScheduleInputs& in, const WorkTile& tile) {
  return 1 + kv_split_range(tile_blocks(in, tile.request, tile.q_block), tile.split, tile.splits).count();
}

int32_t tile_kv_splits(const ScheduleInputs& in, int32_t blocks, int32_t longest_blocks) {
  if (!in.splits_by_length || in.kv_splits == 1) return in.kv_splits;
  if (blocks == 0) return 1;
  // At most 64 x 2^24 (prefill_params.hpp, kv_split_range): inside int32.
  return (in.kv_splits * blocks + longest_blocks - 1) / longest_blocks;
}

int32_t tile_token_count(const ScheduleInputs& in, const WorkTile& tile) {
  const int32_t tokens = tile_tokens(in.heads_log2);
  return std::min(tokens, (*in.requests)[tile.request].qo_len - tile.q_block * tokens);
}

std::vector<WorkTile> tiles_longest_first(const ScheduleInputs& in) {
  int32_t longest = 0;
  for (int32_t b = 0; b < int32_t(in.requests->size()); ++b)
    for (int32_t qb = 0; qb < query_blocks(in, (*in.requests)[b]); ++qb)
      longest = std::max(longest, tile_blocks(in, b, qb).count());
  std::vector<WorkTile> tiles;
  std::vector<int64_t> cost;
  int32_t state_rows = 0;  // requests come in token order (qo_indptr), their tiles too
  for (int32_t b = 0; b < int32_t(in.requests->size()); ++b) {
    for (int32_t qb = 0; qb < query_blocks(in, (*in.requests)[b]); ++qb) {
      const int32_t splits = tile_kv_splits(in, tile_blocks(in, b, qb).count(), longest);
      for (int32_t split = 0; split < splits; ++split) {
        tiles.push_back({b, qb, split, splits, state_rows});
        cost.push_back(tile_cost(in, tiles.back()));
      }
      if (splits > 1) state_rows += tile_token_count(in, tiles.back()) * splits;
    }
  }
  std::vector<size_t> order(tiles.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  std::vector<WorkTile> sorted(tiles.size());
  for (size_t i = 0; i < order.size(); ++i) sorted[i] = tiles[order[i]];
  return sorted;
}

int64_t state_row_count(const ScheduleInputs& in, const std::vector<WorkTile>& tiles) {
  int64_t rows = 0;
  for (const WorkTile& t : tiles)
    if (t.split == 0 && t.splits > 1) rows += int64_t(tile_token_count(in, t)) * t.splits;
  return rows;
}

std::vector<int32_t> state_offsets(const ScheduleInputs& in, const std::vector<WorkTile>& tiles, int32_t num_tokens) {
  std::vector<int32_t> offsets;
  if (std::all_of(tiles.begin(), tiles.end(), [&](const WorkTile& t) { return t.splits == in.kv_splits; }))
    return offsets;
  offsets.assign(size_t(num_tokens) + 1, 0);
  for (const WorkTile& t : tiles) {
    if (t.split != 0 || t.splits == 1) continue;
    const int32_t first = (*in.requests)[t.request].qo_start + t.q_block * tile_tokens(in.heads_log2);
    for (int32_t token = 0; token < tile_token_count(in, t); ++token) offsets[size_t(first + token) + 1] = t.splits;
  }
  // Counts to offsets: the rows follow the tokens in order, as first_state's do.
  for (size_t token = 1; token < offsets.size(); ++token) offsets[token] += offsets[token - 1];
  return offsets;
}

bool gqa_packing_pays(const std::vector<RequestInfo>& requests, int32_t group) {
  if (group <= 1) return false;
  int64_t token_major = 0, packed = 0;  // 128-row tiles over one KV group's qo heads
  for (const RequestInfo& r : requests) {
    token_major += group * ((int64_t(r.qo_len) + kPrefillBlockQ - 1) / kPrefillBlockQ);
    packed += (int64_t(r.qo_len) * group + kPrefillBlockQ - 1) / kPrefillBlockQ;
  }
  return packed < token_major;
}

WorkSchedule auto_schedule(const AutoScheduleInputs& in) {
  if (in.items > kMaxListedItems) return WorkSchedule::kOneItemPerCta;
  const bool short_queries = in.max_qo_len <= kDynamicScheduleMaxQoLen;
  if (short_queries && in.gather && in.kv_splits == 1 && !in.graph && in.max_ctas == 0) return WorkSchedule::kDynamic;
  return WorkSchedule::kPersistent;
}

int64_t longest_first_makespan(std::vector<int64_t> costs, int32_t ctas) {
  if (!std::is_sorted(costs.begin(), costs.end(), std::greater<int64_t>()))
    std::sort(costs.begin(), costs.end(), std::greater<int64_t>());
  std::priority_queue<int64_t, std::vector<int64_t>, std::greater<int64_t>> loads;
  for (int64_t c = 0; c < std::min<int64_t>(ctas, int64_t(costs.size())); ++c) loads.push(0);
  int64_t makespan = 0;
  for (const int64_t cost : costs) {
    const int64_t load = loads.top() + cost;
    loads.pop();
    loads.push(load);
    makespan = std::max(makespan, load);
  }
  return makespan;
}

int32_t auto_kv_splits(const ScheduleInputs& in, const std::vector<WorkTile>& tiles, int32_t sms) {
  // Unsplit, each tile's blocks; its items' work and the longest item's.
  std::vector<int32_t> blocks(tiles.size());
  int64_t work = 0;
  int32_t longest = 0;
  for (size_t t = 0; t < tiles.size(); ++t) {
    blocks[t] = tile_blocks(in, tiles[t].request, tiles[t].q_block).count();
    work += int64_t(in.item_heads()) * (1 + blocks[t]);
    longest = std::max(longest, blocks[t]);
  }
  // Nothing to gain where the longest item fits an SM's share of the work.
  if (sms <= 0 || (1 + int64_t(longest)) * sms <= work) return 1;
  const int32_t max_splits = std::min(kMaxKvSplits, longest / kMinBlocksPerKvSplit);
  if (max_splits < 2) return 1;
  ScheduleInputs split = in;
  split.splits_by_length = true;
  // Each tile's chunks, once per head group: their costs, longest first;
  // their work and partial states. The tiles come longest first, so the
  // whole ones' costs are in order, and only the split ones' are sorted.
  std::vector<int64_t> costs, whole, chunks_of_split;
  int64_t states = 0;
  auto chunk_costs = [&](int32_t splits) {
    split.kv_splits = splits;
    whole.clear();
    chunks_of_split.clear();
    int64_t total = 0;
    states = 0;
    for (size_t t = 0; t < tiles.size(); ++t) {
      const int32_t chunks = tile_kv_splits(split, blocks[t], longest);
      if (chunks > 1) states += int64_t(tile_token_count(in, tiles[t])) * chunks * in.num_qo_heads;
      std::vector<int64_t>& to = chunks == 1 ? whole : chunks_of_split;
      for (int32_t k = 0; k < chunks; ++k) {
        const int64_t chunk = 1 + kv_split_range({0, blocks[t]}, k, chunks).count();
        to.insert(to.end(), size_t(in.item_heads()), chunk);
        total += chunk * in.item_heads();
      }
    }
    std::sort(chunks_of_split.begin(), chunks_of_split.end(), std::greater<int64_t>());
    costs.resize(whole.size() + chunks_of_split.size());
    std::merge(whole.begin(), whole.end(), chunks_of_split.begin(), chunks_of_split.end(), costs.begin(),
               std::greater<int64_t>());
    return total;
  };
  int32_t best = 1;
  chunk_costs(1);
  int64_t best_makespan = longest_first_makespan(costs, sms);
  for (int32_t splits = 2; splits <= max_splits; ++splits) {
    // Each chunk costs one block more, and a tile's chunks only grow in
    // number with the count, so do the work and the states: once the
    // states overflow, or the work's even share alone is no gain on the best
    // makespan, no larger count is better. Nor is this one where that share
    // or its longest chunk is none.
    const int64_t split_work = chunk_costs(splits);
    if (states > kAutoSplitStatesPerSm * sms) break;
    if (100 * split_work >= kMinSplitGainPercent * best_makespan * sms) break;
    const int64_t bound = std::max<int64_t>((split_work + sms - 1) / sms, 1 + (longest + splits - 1) / splits);
    if (100 * bound >= kMinSplitGainPercent * best_makespan) continue;
    const int64_t candidate = longest_first_makespan(costs, sms);
    if (100 * candidate < kMinSplitGainPercent * best_makespan) best = splits, best_makespan = candidate;
  }
  return best;
}

std::vector<int32_t> items_in_l2_order(const ScheduleInputs& in, const std::vector<WorkTile>& tiles) {
  const int32_t num_kv_heads = in.num_qo_heads / in.group_size;
  const int64_t kv_bytes_per_token = int64_t(in.head_dim) * 2 /* bytes */ * 2 /* K and V */;
  const int32_t num_requests = int32_t(in.requests->size());

  // Sections: the KV heads of requests with queries, in (request, KV head)
  // order, cut where the next would overflow one. Unit u of request b is its
  // KV head u - first_unit[b].
  std::vector<int32_t> first_unit(size_t(num_requests), -1);
  std::vector<int32_t> section_of_unit;
  int32_t sections = 0;
  int64_t section_bytes = 0;
  for (int32_t b = 0; b < num_requests; ++b) {
    if ((*in.requests)[b].qo_len == 0) continue;
    first_unit[b] = int32_t(section_of_unit.size());
    const int64_t unit_bytes = int64_t((*in.requests)[b].kv_len) * kv_bytes_per_token;
    for (int32_t kv_head = 0; kv_head < num_kv_heads; ++kv_head) {
      if (section_bytes > 0 && section_bytes + unit_bytes > kL2SectionBytes) {
        ++sections;
        section_bytes = 0;
      }
      section_bytes += unit_bytes;
      section_of_unit.push_back(sections);
    }
  }

  struct Ordered {
    int64_t cost;
    int32_t section, unit, item;
  };
  std::vector<Ordered> order;
  const int32_t item_heads = in.item_heads();
  order.reserve(tiles.size() * size_t(item_heads));
  std::vector<int64_t> section_max(size_t(sections) + 1, 0);
  for (int32_t t = 0; t < int32_t(tiles.size()); ++t) {
    const int64_t cost = tile_cost(in, tiles[t]);
    for (int32_t group = 0; group < item_heads; ++group) {
      const int32_t unit = first_unit[tiles[t].request] + (group << in.heads_log2) / in.group_size;
      const int32_t section = section_of_unit[unit];
      order.push_back({cost, section, unit, t * item_heads + group});
      section_max[section] = std::max(section_max[section], cost);
    }
  }
  std::sort(order.begin(), order.end(), [&](const Ordered& a, const Ordered& b) {
    if (a.section != b.section)
      return section_max[a.section] != section_max[b.section] ? section_max[a.section] > section_max[b.section]
                                                              : a.section < b.section;
    if (a.cost != b.cost) return a.cost > b.cost;
    if (a.unit != b.unit) return a.unit < b.unit;
    return a.item < b.item;
  });
  std::vector<int32_t> items(order.size());
  for (size_t i = 0; i < order.size(); ++i) items[i] = order[i].item;
  return items;
}

PersistentLists persistent_work_lists(const ScheduleInputs& in, const std::vector<WorkTile>& tiles,
                                      int32_t max_ctas) {
  const std::vector<int32_t> order = items_in_l2_order(in, tiles);
  // Greedy list scheduling: each item, in order, to the CTA with the least
  // work so far (ties: the lowest index, so the lists are deterministic).
  const int32_t num_ctas = int32_t(std::min<int64_t>(max_ctas, int64_t(order.size())));
  std::vector<int32_t> cta_of(order.size());
  using Load = std::pair<int64_t, int32_t>;  // (work so far, CTA)
  std::priority_queue<Load, std::vector<Load>, std::greater<Load>> least_loaded;
  for (int32_t c = 0; c < num_ctas; ++c) least_loaded.push({0, c});
  for (size_t i = 0; i < order.size(); ++i) {
    const auto [load, cta] = least_loaded.top();
    least_loaded.pop();
    cta_of[i] = cta;
    least_loaded.push({load + tile_cost(in, tiles[order[i] / in.item_heads()]), cta});
  }

  // The lists, CTA by CTA, each in dealing order (a counting sort by CTA).
  PersistentLists lists;
  lists.cta_indptr.assign(size_t(num_ctas) + 1, 0);
  for (const int32_t cta : cta_of) ++lists.cta_indptr[size_t(cta) + 1];
  for (int32_t c = 0; c < num_ctas; ++c) lists.cta_indptr[c + 1] += lists.cta_indptr[c];
  lists.items.resize(order.size());
  std::vector<int32_t> next(lists.cta_indptr.begin(), lists.cta_indptr.end() - 1);
  for (size_t i = 0; i < order.size(); ++i) lists.items[size_t(next[cta_of[i]]++)] = order[i];
  return lists;
}

}  // namespace ptxattn::detail
