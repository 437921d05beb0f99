// CPU tests of the prefill work schedule (src/prefill_schedule.hpp): every
// work item is taken exactly once, the per-CTA lists are balanced, and the
// order keeps the CTAs of one section of KV heads together; and of the
// plan's choice of KV block (src/prefill_plan.hpp), forced or not.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "prefill_plan.hpp"
#include "prefill_schedule.hpp"
#include "validate.hpp"  // head_dim_is_built, dtype_is_built

namespace ptxattn::detail {
namespace {

std::vector<RequestInfo> make_requests(const std::vector<int32_t>& qo_lens, const std::vector<int32_t>& kv_lens) {
  std::vector<RequestInfo> requests;
  int32_t qo_start = 0, kv_start = 0;
  for (size_t b = 0; b < qo_lens.size(); ++b) {
    requests.push_back({qo_start, qo_lens[b], kv_start, kv_lens[b]});
    qo_start += qo_lens[b];
    kv_start += kv_lens[b];
  }
  return requests;
}

struct Checked {
  int64_t max_load = 0, min_load = 0, max_cost = 0;
};

// Every item exactly once, no CTA without work, and the lists' loads.
Checked check_lists(const ScheduleInputs& in, const std::vector<WorkTile>& tiles, const PersistentLists& lists,
                    int32_t max_ctas) {
  const int64_t num_items = int64_t(tiles.size()) * in.item_heads();
  REQUIRE(lists.num_ctas() == std::min<int64_t>(max_ctas, num_items));
  REQUIRE(lists.cta_indptr.front() == 0);
  REQUIRE(lists.cta_indptr.back() == num_items);
  std::vector<int> seen(size_t(num_items), 0);
  Checked c;
  c.min_load = INT64_MAX;
  for (int32_t cta = 0; cta < lists.num_ctas(); ++cta) {
    REQUIRE(lists.cta_indptr[cta + 1] > lists.cta_indptr[cta]);
    int64_t load = 0;
    for (int32_t i = lists.cta_indptr[cta]; i < lists.cta_indptr[cta + 1]; ++i) {
      const int32_t item = lists.items[i];
      REQUIRE(item >= 0);
      REQUIRE(item < num_items);
      ++seen[size_t(item)];
      const int64_t cost = tile_cost(in, tiles[item / in.item_heads()]);
      load += cost;
      c.max_cost = std::max(c.max_cost, cost);
    }
    c.max_load = std::max(c.max_load, load);
    c.min_load = std::min(c.min_load, load);
  }
  CHECK(std::count(seen.begin(), seen.end(), 1) == num_items);
  return c;
}

TEST_CASE("schedule: random batches, every item once, lists balanced within one item", "[schedule]") {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    const int32_t num_requests = 1 + int32_t(rng() % 6);
    std::vector<int32_t> qo_lens, kv_lens;
    for (int32_t b = 0; b < num_requests; ++b) {
      const int32_t kv = int32_t(rng() % 5000);
      const int32_t qo = rng() % 4 == 0 ? 0 : int32_t(rng() % (kv + 1));
      qo_lens.push_back(qo);
      kv_lens.push_back(kv);
    }
    const std::vector<RequestInfo> requests = make_requests(qo_lens, kv_lens);
    const int32_t group = 1 << (rng() % 3), kv_heads = 1 + int32_t(rng() % 4);
    const int32_t head_dim = 64 << (rng() % 3);
    const bool causal = rng() % 2 == 0;
    const int32_t window = rng() % 3 == 0 ? int32_t(rng() % 600) : -1;
    const ScheduleInputs in{&requests, group * kv_heads, group, head_dim,
                            prefill_block_kv(head_dim, rng() % 2 == 0), causal, window};
    const std::vector<WorkTile> tiles = tiles_longest_first(in);
    for (size_t t = 1; t < tiles.size(); ++t) CHECK(tile_cost(in, tiles[t - 1]) >= tile_cost(in, tiles[t]));
    const int32_t max_ctas = 1 + int32_t(rng() % 140);
    const PersistentLists lists = persistent_work_lists(in, tiles, max_ctas);
    const Checked c = check_lists(in, tiles, lists, max_ctas);
    // Greedy list scheduling: the least loaded CTA took the last item, so no
    // list is longer than the shortest by more than one item's cost.
    if (lists.num_ctas() > 0) CHECK(c.max_load - c.min_load <= c.max_cost);
  }
}

TEST_CASE("schedule: no tiles, no CTAs", "[schedule]") {
  const std::vector<RequestInfo> requests = make_requests({0, 0}, {10, 0});
  const ScheduleInputs in{&requests, 4, 2, 128, 128, true, -1};
  const std::vector<WorkTile> tiles = tiles_longest_first(in);
  CHECK(tiles.empty());
  const PersistentLists lists = persistent_work_lists(in, tiles, 132);
  CHECK(lists.num_ctas() == 0);
  CHECK(lists.items.empty());
}

TEST_CASE("schedule: the first items of every CTA read the K/V of one section", "[schedule]") {
  // One request of 16384 tokens, 16 heads, head_dim 128: K and V of one head
  // are 8 MB, so a section of kL2SectionBytes holds three heads; its
  // 3 x 128 tiles outnumber 132 CTAs, so every CTA starts inside it.
  const std::vector<RequestInfo> requests = make_requests({16384}, {16384});
  const int64_t head_bytes = int64_t(16384) * 128 * 2 * 2;
  const int32_t heads_per_section = int32_t(kL2SectionBytes / head_bytes);
  REQUIRE(heads_per_section >= 1);
  for (bool causal : {false, true}) {
    const ScheduleInputs in{&requests, 16, 1, 128, 128, causal, -1};
    const std::vector<WorkTile> tiles = tiles_longest_first(in);
    const PersistentLists lists = persistent_work_lists(in, tiles, 132);
    check_lists(in, tiles, lists, 132);
    // The section reached first is the one with the longest item; causal and
    // full alike, every head's longest tile is equally long, so it is the first.
    for (int32_t cta = 0; cta < lists.num_ctas(); ++cta) {
      const int32_t head = lists.items[lists.cta_indptr[cta]] % in.num_qo_heads;
      CHECK(head < heads_per_section);
    }
  }
}

}  // namespace
}  // namespace ptxattn::detail

// The plan's choice of KV block (prefill_plan.hpp, wide_kv_block_obstacle;
// ptxattn.hpp, KvBlock).
namespace ptxattn::detail {
namespace {

TEST_CASE("plan: the wide KV block only for ragged head_dim 128 on the TMA path without mask edges", "[schedule]") {
  PrefillConfig c;
  c.head_dim = 128;
  c.kv_format = KvFormat::kRagged;
  c.options.causal = false;
  CHECK(wide_kv_block_obstacle(c, KvLoadPath::kTma, -1) == nullptr);
  CHECK(prefill_block_kv(128, true) == 176);
  CHECK_THAT(wide_kv_block_obstacle(c, KvLoadPath::kGather, -1), Catch::Contains("config.load_path is kGather"));
  // A window as the kernel sees it (the plan turns one reaching past every key into -1).
  CHECK_THAT(wide_kv_block_obstacle(c, KvLoadPath::kTma, 0), Catch::Contains("config.options.window_left"));
  c.options.causal = true;
  CHECK_THAT(wide_kv_block_obstacle(c, KvLoadPath::kTma, -1), Catch::Contains("config.options.causal is set"));
  c.options.causal = false;
  c.kv_format = KvFormat::kPaged;
  c.page_size = 64;
  CHECK_THAT(wide_kv_block_obstacle(c, KvLoadPath::kTma, -1), Catch::Contains("config.kv_format is kPaged"));
  c.kv_format = KvFormat::kRagged;
  for (int32_t head_dim : {64, 256}) {
    c.head_dim = head_dim;
    CHECK_THAT(wide_kv_block_obstacle(c, KvLoadPath::kTma, -1), Catch::Contains("config.head_dim is not 128"));
    CHECK(prefill_block_kv(head_dim, true) == prefill_block_kv(head_dim, false));
  }
}

// A ragged config of 4 heads; without a GPU an empty batch still plans
// (nothing to upload), so the chosen block can be read back.
PrefillConfig ragged_config(int32_t head_dim, KvBlock kv_block) {
  PrefillConfig c;
  c.dtype = dtype_is_built(DType::kBF16) ? DType::kBF16 : DType::kFP16;
  c.num_qo_heads = c.num_kv_heads = 4;
  c.head_dim = head_dim;
  c.kv_format = KvFormat::kRagged;
  c.kv_block = kv_block;
  return c;
}

constexpr int32_t kNoRows[] = {0};
const BatchIndices kEmptyBatch{0, kNoRows, kNoRows, nullptr, nullptr};

// The block an empty batch's plan chose, or 0 when it was refused (message in INFO).
int32_t planned_block(const PrefillConfig& c) {
  PrefillPlan plan;
  const Status status = plan_prefill(c, kEmptyBatch, plan);
  INFO("status: " << status_code_name(status.code) << " " << status.message);
  CHECK(status.ok() == plan.valid());
  return status.ok() ? plan.chosen_block_kv() : 0;
}

// Requests of the given (qo_len, kv_len), laid out one after another.
std::vector<RequestInfo> requests_of(std::initializer_list<std::pair<int32_t, int32_t>> lengths) {
  std::vector<RequestInfo> requests;
  int32_t qo_start = 0, kv_start = 0;
  for (const auto& [qo_len, kv_len] : lengths) {
    requests.push_back({qo_start, qo_len, kv_start, kv_len});
    qo_start += qo_len;
    kv_start += kv_len;
  }
  return requests;
}

TEST_CASE("plan: the KV length of the average score", "[schedule]") {
  CHECK(work_weighted_kv_len({}) == 0);
  CHECK(work_weighted_kv_len(requests_of({{0, 500}, {7, 0}})) == 0);  // no scores
  CHECK(work_weighted_kv_len(requests_of({{5, 100}})) == 100);
  // 100 and 300 scores: (100 * 100 + 300 * 300) / 400.
  CHECK(work_weighted_kv_len(requests_of({{1, 100}, {1, 300}})) == 250);
  // A request without queries weighs nothing, however long its KV.
  CHECK(work_weighted_kv_len(requests_of({{1, 100}, {0, 1 << 20}, {1, 300}})) == 250);
  // No overflow where qo_len x kv_len^2 leaves int64 (2^30 x 2^60).
  CHECK(work_weighted_kv_len(requests_of({{1 << 30, 1 << 30}})) == double(1 << 30));
}

TEST_CASE("plan: kv_block auto takes the wide block where it can and the KV ranges are long", "[schedule]") {
  if (!head_dim_is_built(128)) {
    WARN("head_dim 128 is not built: nothing to check");
    return;
  }
  const int32_t wide = kWideBlockKV, standard = prefill_block_kv(128, false);
  const int32_t long_kv = int32_t(kWideBlockMinKvLen), short_kv = long_kv - 1;
  PrefillConfig c = ragged_config(128, KvBlock::kAuto);
  SECTION("the work decides, not the longest request") {
    CHECK(auto_block_kv(c, KvLoadPath::kTma, -1, requests_of({{128, long_kv}})) == wide);
    CHECK(auto_block_kv(c, KvLoadPath::kTma, -1, requests_of({{128, short_kv}})) == standard);
    CHECK(auto_block_kv(c, KvLoadPath::kTma, -1, requests_of({{128, 4 * long_kv}, {1024, 512}})) == wide);
    CHECK(auto_block_kv(c, KvLoadPath::kTma, -1, requests_of({{1, 4 * long_kv}, {1024, 512}})) == standard);
    CHECK(auto_block_kv(c, KvLoadPath::kTma, -1, {}) == standard);
    CHECK(planned_block(c) == standard);  // an empty batch plans without a device
  }
  SECTION("never where the wide block cannot go") {
    const std::vector<RequestInfo> long_batch = requests_of({{128, 2 * long_kv}});
    CHECK(auto_block_kv(c, KvLoadPath::kTma, 100, long_batch) == standard);
    CHECK(auto_block_kv(c, KvLoadPath::kGather, -1, long_batch) == standard);
    c.options.causal = true;
    CHECK(auto_block_kv(c, KvLoadPath::kTma, -1, long_batch) == standard);
    c.options.causal = false;
    c.kv_format = KvFormat::kPaged;
    c.page_size = 128;
    CHECK(auto_block_kv(c, KvLoadPath::kTma, -1, long_batch) == standard);
    for (int32_t head_dim : {64, 256})
      if (head_dim_is_built(head_dim))
        CHECK(auto_block_kv(ragged_config(head_dim, KvBlock::kAuto), KvLoadPath::kTma, -1, long_batch) ==
              prefill_block_kv(head_dim, false));
  }
}

TEST_CASE("plan: kv_block standard never takes the wide block, wide takes it or is refused", "[schedule]") {
  if (!head_dim_is_built(128)) {
    WARN("head_dim 128 is not built: nothing to check");
    return;
  }
  SECTION("standard, wherever the config is valid") {
    PrefillConfig c = ragged_config(128, KvBlock::kStandard);
    CHECK(planned_block(c) == 128);
    c.kv_format = KvFormat::kPaged;
    c.page_size = 16;
    c.num_pages = 1;
    CHECK(planned_block(c) == 128);
    for (int32_t head_dim : {64, 256})
      if (head_dim_is_built(head_dim))
        CHECK(planned_block(ragged_config(head_dim, KvBlock::kStandard)) == (head_dim == 256 ? 64 : 128));
  }
  SECTION("wide where auto takes it") {
    PrefillConfig c = ragged_config(128, KvBlock::kWide);
    CHECK(planned_block(c) == 176);
    c.load_path = KvLoadPath::kTma;
    CHECK(planned_block(c) == 176);
  }
}

// plan_prefill's refusal of a forced wide block: kUnsupported, the rule and the obstacle.
void require_wide_refused(const PrefillConfig& c, const BatchIndices& indices, const char* obstacle) {
  PrefillPlan plan;
  const Status status = plan_prefill(c, indices, plan);
  INFO("message: " << status.message);
  CHECK(status.code == StatusCode::kUnsupported);
  CHECK_THAT(status.message, Catch::StartsWith("kv_block = kWide needs head_dim 128, ragged K/V on the TMA path, no "
                                               "causal mask, no window shorter than the longest kv_len and a schedule "
                                               "other than kDynamic, but "));
  CHECK_THAT(status.message, Catch::Contains(obstacle));
  CHECK_FALSE(plan.valid());
}

TEST_CASE("plan: kv_block wide is refused with what stands in its way", "[schedule]") {
  if (!head_dim_is_built(128)) {
    WARN("head_dim 128 is not built: nothing to check");
    return;
  }
  // Two requests, the longest with 30 keys; refused before any CUDA call.
  static const int32_t qo_indptr[] = {0, 3, 10}, kv_indptr[] = {0, 4, 34};
  const BatchIndices batch{2, qo_indptr, kv_indptr, nullptr, nullptr};
  PrefillConfig c = ragged_config(128, KvBlock::kWide);
  c.options.causal = true;
  require_wide_refused(c, batch, "config.options.causal is set");
  c.options.causal = false;
  c.options.window_left = 29;
  require_wide_refused(c, batch, "config.options.window_left is below the batch's longest kv_len");
  c.options.window_left = 30;  // reaches every key: no window, so the block check passes
  {
    PrefillPlan plan;
    const Status status = plan_prefill(c, batch, plan);
    INFO("message: " << status.message);
    CHECK((status.ok() || status.code == StatusCode::kNoDevice || status.code == StatusCode::kCudaError));
  }
  c.options.window_left = -1;
  c.load_path = KvLoadPath::kGather;
  require_wide_refused(c, batch, "config.load_path is kGather");
  c.load_path = KvLoadPath::kAuto;
  c.kv_format = KvFormat::kPaged;
  c.page_size = 16;
  c.num_pages = 1;
  require_wide_refused(c, kEmptyBatch, "config.kv_format is kPaged");
  PrefillConfig dynamic = ragged_config(128, KvBlock::kWide);
  dynamic.schedule = WorkSchedule::kDynamic;
  require_wide_refused(dynamic, kEmptyBatch, "config.schedule is kDynamic (its kernels walk the standard block only)");
  for (int32_t head_dim : {64, 256})
    if (head_dim_is_built(head_dim))
      require_wide_refused(ragged_config(head_dim, KvBlock::kWide), kEmptyBatch, "config.head_dim is not 128");
}

TEST_CASE("split-KV: chunks cover a tile's blocks in order, sizes within one block", "[schedule][split-kv]") {
  for (const KvBlockRange range : {KvBlockRange{0, 0}, KvBlockRange{0, 1}, KvBlockRange{3, 17}, KvBlockRange{5, 1029},
                                   KvBlockRange{0, 1 << 24}}) {
    CHECK(kv_split_range(range, 0, 1).first == range.first);
    CHECK(kv_split_range(range, 0, 1).end == range.end);
    for (int32_t splits = 2; splits <= kMaxKvSplits; ++splits) {
      int32_t next = range.first, smallest = INT32_MAX, largest = 0;
      for (int32_t split = 0; split < splits; ++split) {
        const KvBlockRange chunk = kv_split_range(range, split, splits);
        REQUIRE(chunk.first == next);
        REQUIRE(chunk.end >= chunk.first);
        next = chunk.end;
        smallest = std::min(smallest, chunk.count());
        largest = std::max(largest, chunk.count());
      }
      CHECK(next == std::max(range.end, range.first));
      CHECK(largest - smallest <= 1);
    }
  }
}

TEST_CASE("schedule: kAuto is dynamic for unsplit short queries on the gather path, else persistent, one item per "
          "CTA past the list", "[schedule]") {
  constexpr int32_t kShort = kDynamicScheduleMaxQoLen;
  // items, longest qo_len, gather, kv_splits, graph, max_ctas
  CHECK(auto_schedule({512, 1, true, 1, false, 0}) == WorkSchedule::kDynamic);       // decode
  CHECK(auto_schedule({512, kShort, true, 1, false, 0}) == WorkSchedule::kDynamic);  // speculative verification
  CHECK(auto_schedule({0, 0, true, 1, false, 0}) == WorkSchedule::kDynamic);         // no work: nothing launches
  CHECK(auto_schedule({512, kShort + 1, true, 1, false, 0}) == WorkSchedule::kPersistent);  // a longer query
  CHECK(auto_schedule({512, 1, false, 1, false, 0}) == WorkSchedule::kPersistent);  // the TMA path
  CHECK(auto_schedule({128, 1, true, 4, false, 0}) == WorkSchedule::kPersistent);   // split-KV
  CHECK(auto_schedule({512, 1, true, 1, true, 0}) == WorkSchedule::kPersistent);    // a graph plan
  CHECK(auto_schedule({512, 1, true, 1, false, 8}) == WorkSchedule::kPersistent);   // a CTA limit
  CHECK(auto_schedule({kMaxListedItems, 1, true, 1, false, 0}) == WorkSchedule::kDynamic);
  CHECK(auto_schedule({kMaxListedItems + 1, 1, true, 1, false, 0}) == WorkSchedule::kOneItemPerCta);
  CHECK(auto_schedule({kMaxListedItems + 1, 4096, false, 1, false, 0}) == WorkSchedule::kOneItemPerCta);
}

std::vector<int32_t> one_long_among_short() {
  std::vector<int32_t> kv_lens(64, 1024);
  kv_lens[0] = 131072;
  return kv_lens;
}

// The split rule's count for a batch of one-token requests (decode),
// GQA-packed (one item per KV head and request), 128-key blocks; by default
// 32 qo and 8 KV heads on 132 SMs.
int32_t decode_splits(const std::vector<int32_t>& kv_lens, int32_t sms = 132, int32_t qo_heads = 32,
                      int32_t kv_heads = 8, int32_t qo_len = 1) {
  const std::vector<RequestInfo> requests = make_requests(std::vector<int32_t>(kv_lens.size(), qo_len), kv_lens);
  ScheduleInputs in{&requests, qo_heads, qo_heads / kv_heads, 128, 128, true, -1};
  in.heads_log2 = log2_of(qo_heads / kv_heads);
  return auto_kv_splits(in, tiles_longest_first(in), sms);
}

TEST_CASE("split-KV: the makespan estimate deals the longest first to the least loaded", "[schedule][split-kv]") {
  CHECK(longest_first_makespan({}, 4) == 0);
  CHECK(longest_first_makespan({3, 9, 2}, 8) == 9);          // more CTAs than costs
  CHECK(longest_first_makespan({3, 3, 5, 4, 3}, 2) == 10);   // 5+3, 4+3+3
  CHECK(longest_first_makespan({7, 7, 7, 7}, 3) == 14);
  CHECK(longest_first_makespan({1, 1, 1, 1, 1, 1}, 1) == 6);
}

TEST_CASE("split-KV: the rule splits where the longest item exceeds an SM's share", "[schedule][split-kv]") {
  CHECK(decode_splits({}) == 1);                           // no work
  CHECK(decode_splits(std::vector<int32_t>(64, 32768)) == 1);  // 512 equal items: each SM's share holds one
  CHECK(decode_splits(std::vector<int32_t>(16, 8192)) == 1);   // 128 items, one each
  // Fewer items than SMs: as many chunks as still run in one wave.
  CHECK(decode_splits({131072}) == 16);                    // 8 items of 1024 blocks
  CHECK(decode_splits({65536, 65536}) == 8);
  CHECK(decode_splits({8192, 8192, 8192}) == 5);           // 24 items x 5 chunks = 120
  CHECK(decode_splits({2048}) == 4);                       // 16 blocks: chunks of 4
  CHECK(decode_splits({1000}) == 2);                       // 8 blocks
  CHECK(decode_splits({896}) == 1);                        // 7 blocks: too few for two chunks of 4
  // More items than SMs, but a few long ones among short ones: one request
  // over 131072 keys among 63 over 1024 (512 items; unsplit, 8 SMs would
  // walk the long one alone), and 8 requests of 5600 to 76131 keys.
  // The short ones stay whole (chunks in proportion to the blocks).
  CHECK(decode_splits(one_long_among_short()) == 10);
  CHECK(decode_splits({73016, 5593, 88105, 29950, 94219, 37384, 76131, 60713}) >= 6);
  // The partial states count the split tiles' rows only: a thousand short
  // requests beside a long one take none.
  std::vector<int32_t> many(1024, 128);
  many[0] = 1 << 20;
  CHECK(decode_splits(many) == 13);
  // They stay within 512 per SM: 16-token verification of 64 requests over
  // 131072 keys and one over 2^20 (by the estimate 9 chunks, 2 of them for
  // the others' tiles: 2 x 64 x 16 tokens x 32 heads is 65536 states, and
  // the long one's 9 x 512 overflow 67584) gets 2.
  std::vector<int32_t> verify(65, 131072);
  verify[0] = 1 << 20;
  CHECK(decode_splits(verify, 132, 32, 8, 16) == 2);
  CHECK(decode_splits(one_long_among_short(), 8) == 1);    // 8 SMs: 32 heads x 64 requests fill them
  // The GPU tests' batches ([split-kv]): 8 / 2 heads.
  CHECK(decode_splits({8192}, 132, 8, 2) == 16);
  std::vector<int32_t> long_among_short(160, 256);
  long_among_short[37] = 32768;
  CHECK(decode_splits(long_among_short, 132, 8, 2) > 1);
}

TEST_CASE("split-KV: the rule's count is within its limits and never worse by its estimate", "[schedule][split-kv]") {
  std::mt19937 rng(12);
  int split_cases = 0;
  for (int i = 0; i < 300; ++i) {
    const int32_t n = 1 + int32_t(rng() % 200);
    std::vector<int32_t> qo_lens(n), kv_lens(n);
    // One long request among short ones, mixed lengths, or all short;
    // decode and verification (1-4 tokens), or longer queries.
    const int kind = i % 3;
    for (int32_t b = 0; b < n; ++b) {
      qo_lens[b] = 1 + int32_t(rng() % (i % 4 == 3 ? 300 : 4));
      const uint32_t extra = kind == 0 ? (b == 0 ? 50000 + rng() % 150000 : rng() % 3000)
                             : kind == 1 ? rng() % 200000
                                         : rng() % 3000;
      kv_lens[b] = qo_lens[b] + int32_t(extra);
    }
    const std::vector<RequestInfo> requests = make_requests(qo_lens, kv_lens);
    ScheduleInputs in{&requests, 16, 4, 128, 128, i % 4 != 0, i % 5 == 0 ? 700 : -1};
    in.heads_log2 = i % 2 == 0 ? 2 : 0;
    const std::vector<WorkTile> tiles = tiles_longest_first(in);
    const int32_t sms = i % 7 == 0 ? 8 : 132;
    const int32_t splits = auto_kv_splits(in, tiles, sms);
    INFO("case " << i << ": " << n << " requests, " << splits << " chunks");
    REQUIRE(splits >= 1);
    REQUIRE(splits <= kMaxKvSplits);
    if (splits == 1) continue;
    ++split_cases;
    ScheduleInputs split = in;
    split.kv_splits = splits;
    split.splits_by_length = true;
    const std::vector<WorkTile> split_tiles = tiles_longest_first(split);
    int64_t states = 0;
    for (const WorkTile& t : split_tiles)
      if (t.split == 0 && t.splits > 1) states += int64_t(tile_token_count(in, t)) * t.splits;
    CHECK(states * in.num_qo_heads <= kAutoSplitStatesPerSm * sms);
    int64_t longest = 0;
    for (const WorkTile& t : tiles) longest = std::max(longest, tile_cost(in, t) - 1);
    CHECK(longest / splits >= kMinBlocksPerKvSplit);
    // The estimate of the chosen count beats the unsplit one's.
    auto estimate = [&](int32_t count) {
      split.kv_splits = count;
      std::vector<int64_t> costs;
      for (const WorkTile& t : tiles_longest_first(split))
        for (int32_t h = 0; h < in.item_heads(); ++h) costs.push_back(tile_cost(split, t));
      return longest_first_makespan(costs, sms);
    };
    CHECK(100 * estimate(splits) < kMinSplitGainPercent * estimate(1));
  }
  WARN(split_cases << " of 300 batches split");
  CHECK(split_cases >= 50);  // the checks above ran on split batches (73 of this seed)
}

TEST_CASE("split-KV: each query tile once per chunk, costs as the chunks' blocks", "[schedule][split-kv]") {
  const std::vector<RequestInfo> requests = make_requests({1, 130, 0, 7}, {5000, 900, 40, 7});
  for (const bool causal : {false, true}) {
    ScheduleInputs in{&requests, 8, 4, 128, 128, causal, causal ? -1 : 300};
    const std::vector<WorkTile> unsplit = tiles_longest_first(in);
    for (int32_t splits : {2, 5, kMaxKvSplits}) {
      in.kv_splits = splits;
      const std::vector<WorkTile> tiles = tiles_longest_first(in);
      REQUIRE(tiles.size() == unsplit.size() * size_t(splits));
      for (const WorkTile& u : unsplit) {
        int64_t blocks = 0;
        std::vector<int> seen(size_t(splits), 0);
        for (const WorkTile& t : tiles)
          if (t.request == u.request && t.q_block == u.q_block) {
            REQUIRE(t.split >= 0);
            REQUIRE(t.split < splits);
            ++seen[size_t(t.split)];
            blocks += tile_cost(in, t) - 1;
          }
        CHECK(std::count(seen.begin(), seen.end(), 1) == splits);
        ScheduleInputs one = in;
        one.kv_splits = 1;
        CHECK(blocks == tile_cost(one, u) - 1);
      }
      for (size_t t = 1; t < tiles.size(); ++t) CHECK(tile_cost(in, tiles[t - 1]) >= tile_cost(in, tiles[t]));
      // A forced count: token t's chunks are state rows t x splits on.
      for (const WorkTile& t : tiles) {
        CHECK(t.splits == splits);
        CHECK(t.first_state == (requests[t.request].qo_start + t.q_block * tile_tokens(0)) * splits);
      }
      const PersistentLists lists = persistent_work_lists(in, tiles, 132);
      check_lists(in, tiles, lists, 132);
    }
    in.kv_splits = 1;
    // Causal: request 0's one query sees all 5000 keys (40 blocks). The
    // 300-key window: request 1's first tile sees keys 470..899, blocks 3..7.
    CHECK(tile_cost(in, tiles_longest_first(in).front()) - 1 == (causal ? 40 : 5));
  }
}

TEST_CASE("split-KV: the rule's chunks in proportion to each tile's blocks, state rows token by token",
          "[schedule][split-kv]") {
  // 1 to 3 tokens per request (packed 4 heads: 32 tokens a tile), one of 40
  // blocks, causal, a window, and one request without queries.
  const std::vector<RequestInfo> requests =
      make_requests({1, 3, 0, 2, 40}, {5120, 900, 40, 300, 1200});
  for (const bool causal : {false, true}) {
    ScheduleInputs in{&requests, 8, 4, 128, 128, causal, causal ? -1 : 600};
    in.heads_log2 = 2;
    const std::vector<WorkTile> unsplit = tiles_longest_first(in);
    int32_t longest = 0;
    for (const WorkTile& u : unsplit) longest = std::max<int32_t>(longest, int32_t(tile_cost(in, u) - 1));
    for (int32_t splits : {2, 7, kMaxKvSplits}) {
      INFO("causal " << causal << ", " << splits << " chunks for the longest");
      in.kv_splits = splits;
      in.splits_by_length = true;
      const std::vector<WorkTile> tiles = tiles_longest_first(in);
      std::vector<int32_t> rows_of_token;  // each token's chunks, by the state rows
      int64_t state_rows = 0;
      for (const WorkTile& u : unsplit) {
        const int32_t blocks = int32_t(tile_cost(in, {u.request, u.q_block, 0, 1, 0}) - 1);
        const int32_t expected = blocks == 0 ? 1 : (splits * blocks + longest - 1) / longest;
        CHECK(tile_kv_splits(in, blocks, longest) == expected);
        int64_t covered = 0;
        for (const WorkTile& t : tiles) {
          if (t.request != u.request || t.q_block != u.q_block) continue;
          CHECK(t.splits == expected);
          // No chunk longer than the longest tile's.
          CHECK(tile_cost(in, t) - 1 <= (longest + splits - 1) / splits);
          covered += tile_cost(in, t) - 1;
          if (t.split == 0 && t.splits > 1) state_rows += int64_t(tile_token_count(in, t)) * t.splits;
        }
        CHECK(covered == blocks);
      }
      // Token t of a tile of 2 chunks or more, chunk k, is row first_state
      // + t x splits + k: every row once, the batch's tokens in order.
      CHECK(state_rows > 0);
      std::vector<int> seen(size_t(state_rows), 0);
      int32_t last_first = -1;
      for (const RequestInfo& r : requests)
        for (int32_t token = 0; token < r.qo_len; ++token)
          for (const WorkTile& t : tiles) {
            if (t.request != int32_t(&r - requests.data()) || token / tile_tokens(2) != t.q_block) continue;
            if (t.splits == 1) continue;  // it stores o itself
            const int32_t row = t.first_state + (token - t.q_block * tile_tokens(2)) * t.splits + t.split;
            REQUIRE(row >= 0);
            REQUIRE(row < state_rows);
            ++seen[size_t(row)];
            if (t.split == 0) {
              CHECK(row > last_first);
              last_first = row;
            }
          }
      CHECK(std::count(seen.begin(), seen.end(), 1) == int64_t(seen.size()));
      CHECK(state_row_count(in, tiles) == state_rows);
      // The merge's offsets agree with first_state: token t's rows are
      // offsets[t] on, as many as its tile's chunks (none for one chunk).
      const int32_t num_tokens = requests.back().qo_start + requests.back().qo_len;
      const std::vector<int32_t> offsets = state_offsets(in, tiles, num_tokens);
      REQUIRE(offsets.size() == size_t(num_tokens) + 1);
      CHECK(offsets.front() == 0);
      CHECK(offsets.back() == state_rows);
      for (const WorkTile& t : tiles)
        for (int32_t token = 0; token < tile_token_count(in, t); ++token) {
          const size_t at = size_t(requests[t.request].qo_start + t.q_block * tile_tokens(2) + token);
          CHECK(offsets[at + 1] - offsets[at] == (t.splits == 1 ? 0 : t.splits));
          if (t.splits > 1) CHECK(offsets[at] + t.split == t.first_state + token * t.splits + t.split);
        }
    }
  }
  // Where every tile has kv_splits chunks, the merge needs no offsets.
  ScheduleInputs forced{&requests, 8, 4, 128, 128, false, -1};
  forced.kv_splits = 3;
  CHECK(state_offsets(forced, tiles_longest_first(forced), 46).empty());
}

TEST_CASE("split-KV: kv_splits is validated, and a split tile list too long is refused", "[schedule][split-kv]") {
  PrefillConfig c = ragged_config(128, KvBlock::kStandard);
  for (int32_t bad : {-1, kMaxKvSplits + 1}) {
    c.kv_splits = bad;
    const Status status = validate_prefill_config(c);
    CHECK(status.code == StatusCode::kInvalidArgument);
    CHECK_THAT(status.message, Catch::Contains("config.kv_splits = " + std::to_string(bad) + " is outside [0, 64]"));
  }
  // 65537 tiles of 128 rows in 64 chunks: more tiles than the plan lists.
  // Refused before any device call, so this runs without a GPU.
  const int32_t tokens = 65537 * kPrefillBlockQ;
  const int32_t qo_indptr[] = {0, tokens}, kv_indptr[] = {0, tokens};
  const BatchIndices batch{1, qo_indptr, kv_indptr, nullptr, nullptr};
  c.kv_splits = kMaxKvSplits;
  PrefillPlan plan;
  const Status status = plan_prefill(c, batch, plan);
  CHECK(status.code == StatusCode::kUnsupported);
  CHECK_THAT(status.message, Catch::Contains("config.kv_splits = 64 makes 4194368 tiles; split-KV lists at most"));
  c.kv_splits = 0;  // an empty batch plans without a device, and needs no split
  REQUIRE(plan_prefill(c, kEmptyBatch, plan).ok());
  CHECK(plan.chosen_kv_splits() == 1);
}

TEST_CASE("GQA packing: the rule packs where tiles then hold fewer rows", "[schedule][gqa-pack]") {
  CHECK(gqa_packable(1));
  CHECK(gqa_packable(4));
  CHECK(gqa_packable(128));
  CHECK_FALSE(gqa_packable(3));
  CHECK_FALSE(gqa_packable(256));
  CHECK(log2_of(1) == 0);
  CHECK(log2_of(8) == 3);
  CHECK(log2_of(128) == 7);
  CHECK_FALSE(gqa_packing_pays(make_requests({1, 1}, {100, 100}), 1));  // no group: nothing to pack
  CHECK(gqa_packing_pays(make_requests({1, 1}, {100, 100}), 4));        // decode: 8 tiles or 2
  CHECK(gqa_packing_pays(make_requests({4}, {100}), 8));                // 8 tiles or 1
  CHECK(gqa_packing_pays(make_requests({200}, {300}), 4));              // 8 tiles or 7
  CHECK_FALSE(gqa_packing_pays(make_requests({128, 256}, {300, 300}), 4));  // whole tiles: 12 either way
  CHECK_FALSE(gqa_packing_pays(make_requests({0}, {10}), 4));
}

TEST_CASE("GQA packing: tiles of 128 / group tokens, one item per head group", "[schedule][gqa-pack]") {
  const std::vector<RequestInfo> requests = make_requests({1, 70, 33, 0}, {900, 70, 2000, 5});
  for (const bool causal : {false, true}) {
    for (int32_t heads_log2 = 0; heads_log2 <= 3; ++heads_log2) {
      ScheduleInputs in{&requests, 16, 8, 128, 128, causal, -1};
      in.heads_log2 = heads_log2;
      CHECK(in.item_heads() == 16 >> heads_log2);
      const int32_t tokens = kPrefillBlockQ >> heads_log2;
      const std::vector<WorkTile> tiles = tiles_longest_first(in);
      int64_t expected_tiles = 0;
      for (const RequestInfo& r : requests) expected_tiles += (r.qo_len + tokens - 1) / tokens;
      CHECK(int64_t(tiles.size()) == expected_tiles);
      for (const WorkTile& t : tiles) {
        // A packed tile's KV blocks are those of its own tokens.
        const KvBlockRange blocks = kv_block_range(requests[t.request], t.q_block, tokens, 128, causal, -1);
        CHECK(tile_cost(in, t) == 1 + blocks.count());
      }
      const PersistentLists lists = persistent_work_lists(in, tiles, 7);
      check_lists(in, tiles, lists, 7);
    }
  }
}

TEST_CASE("plan: the K/V ring is the head dim's, or the deep one forced where it is built", "[schedule][kv-stages]") {
  // An empty batch plans without a device.
  auto planned_stages = [](const PrefillConfig& c, Status* status) {
    PrefillPlan plan;
    *status = plan_prefill(c, kEmptyBatch, plan);
    return status->ok() ? plan.chosen_kv_stages() : 0;
  };
  Status status;
  for (int32_t head_dim : {64, 128, 256}) {
    if (!head_dim_is_built(head_dim)) continue;
    PrefillConfig c = ragged_config(head_dim, KvBlock::kStandard);
    c.load_path = KvLoadPath::kGather;
    CHECK(planned_stages(c, &status) == default_kv_stages(head_dim));
    c.kv_stages = default_kv_stages(head_dim);
    CHECK(planned_stages(c, &status) == default_kv_stages(head_dim));
    c.kv_stages = 3;
    if (head_dim == 128) {
      CHECK(planned_stages(c, &status) == 3);
      c.load_path = KvLoadPath::kTma;
      CHECK(planned_stages(c, &status) == 0);
      CHECK(status.code == StatusCode::kUnsupported);
      CHECK_THAT(status.message, Catch::Contains("kv_stages = 3 needs head_dim 128 on the gather path with the "
                                                 "standard KV block, but the load path is kTma"));
      c.kv_block = KvBlock::kWide;
      c.load_path = KvLoadPath::kGather;
      CHECK(planned_stages(c, &status) == 0);  // the wide block is TMA-only: refused before the stages
      CHECK(status.code == StatusCode::kUnsupported);
    } else {
      CHECK(planned_stages(c, &status) == 0);
      CHECK(status.code == StatusCode::kUnsupported);
      CHECK_THAT(status.message, Catch::Contains("kv_stages = 3 needs head_dim 128 on the gather path with the "
                                                 "standard KV block, but config.head_dim is not 128"));
      c.kv_stages = 5;
      CHECK(planned_stages(c, &status) == 0);
      CHECK(status.code == StatusCode::kUnsupported);
      CHECK_THAT(status.message, Catch::Contains("kv_stages = 5 has no kernel at head_dim " + std::to_string(head_dim)));
    }
  }
  PrefillConfig c = ragged_config(128, KvBlock::kStandard);
  c.kv_stages = -1;
  const Status bad = validate_prefill_config(c);
  CHECK(bad.code == StatusCode::kInvalidArgument);
  CHECK_THAT(bad.message, Catch::Contains("config.kv_stages = -1 is negative"));
}

TEST_CASE("GQA packing: forced on a group that does not divide the tile is refused", "[schedule][gqa-pack]") {
  PrefillConfig c = ragged_config(128, KvBlock::kStandard);
  c.num_qo_heads = 6;
  c.num_kv_heads = 2;
  c.gqa_packing = GqaPacking::kOn;
  PrefillPlan plan;
  const Status status = plan_prefill(c, kEmptyBatch, plan);
  CHECK(status.code == StatusCode::kUnsupported);
  CHECK_THAT(status.message, Catch::Contains("gqa_packing = kOn needs the GQA group (num_qo_heads / num_kv_heads = 3)"));
  c.num_qo_heads = 8;  // group 4: packed (plan_attention is plan_prefill)
  REQUIRE(plan_attention(c, kEmptyBatch, plan).ok());
  CHECK(plan.chosen_tile_heads() == 4);
  c.gqa_packing = GqaPacking::kAuto;  // an empty batch gains nothing from packing
  REQUIRE(plan_prefill(c, kEmptyBatch, plan).ok());
  CHECK(plan.chosen_tile_heads() == 1);
  c.gqa_packing = static_cast<GqaPacking>(3);
  const Status bad = validate_prefill_config(c);
  CHECK(bad.code == StatusCode::kInvalidArgument);
  CHECK_THAT(bad.message, Catch::Contains("config.gqa_packing = 3 is not a GqaPacking"));
}

}  // namespace
}  // namespace ptxattn::detail
