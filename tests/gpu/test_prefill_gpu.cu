// GPU tests of batch prefill against the Eigen reference. Before every run the
// shared memory of every SM is filled with NaN and the outputs are poisoned
// (tests/common/prefill_runner.hpp), and every generated case carries NaN/Inf
// in each unused pool slot and last-page tail, so no case passes on clean memory.
#include <catch2/catch.hpp>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <cstdio>
#include <limits>
#include <memory>
#include <future>
#include <string>
#include <vector>

#include "prefill_params.hpp"  // kWideBlockKV
#include "ptxattn/ptxattn.hpp"
#include "reference/compare.hpp"
#include "reference/testdata.hpp"
#include "tests/common/gpu_test.hpp"
#include "tests/common/prefill_runner.hpp"

namespace ptxattn::testing {
namespace {

constexpr int kRandomCases = 520;

void pollute_smem_nan() { pollute_shared_memory(pattern::kQuietNaN); }

// Whether this build has the case's kernel (meson options head_dims and
// dtypes; the injected-bug builds have head_dim 128 bf16 only). Suites skip
// other cases and count them, so a smaller build's failures are its bugs'.
bool built_here(const HostCase& c) { return validate_prefill_config(c.config).code != StatusCode::kUnsupported; }

// SMs of the current device: the persistent schedule's default grid.
int64_t sm_count() {
  int device = 0, count = 0;
  PTXATTN_CUDA_CHECK(cudaGetDevice(&device));
  PTXATTN_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

// Where two runs' bits first differ ("" when o and LSE are identical).
std::string bit_difference(const PrefillRun& a, const PrefillRun& b) {
  if (const int64_t at = first_bit_difference(a.out.data(), b.out.data(), int64_t(a.out.size())); at >= 0)
    return "o differs first at element " + std::to_string(at);
  if (a.lse.size() != b.lse.size()) return "one run returned LSE, the other did not";
  if (const int64_t at = first_bit_difference(a.lse.data(), b.lse.data(), int64_t(a.lse.size())); at >= 0)
    return "lse differs first at row " + std::to_string(at);
  return "";
}

// The KV block kAuto does not take on the TMA path, where the case can take
// both (kAuto where it cannot: the wide block does not fit it).
KvBlock other_kv_block(const HostCase& c) {
  PrefillConfig config = c.config;
  config.load_path = KvLoadPath::kTma;
  config.kv_block = KvBlock::kWide;
  PrefillPlan plan;
  if (!plan_prefill(config, c.indices(), plan).ok()) return KvBlock::kAuto;
  config.kv_block = KvBlock::kAuto;
  if (!plan_prefill(config, c.indices(), plan).ok()) return KvBlock::kAuto;
  return plan.chosen_block_kv() == detail::kWideBlockKV ? KvBlock::kStandard : KvBlock::kWide;
}

// The (load path, KV block) passes of check_runs: every path the case
// supports with the block kAuto chooses, then the TMA path with the other
// block where the case can take both.
std::vector<std::pair<KvLoadPath, KvBlock>> passes_for(const HostCase& c) {
  std::vector<std::pair<KvLoadPath, KvBlock>> passes;
  for (KvLoadPath path : load_paths_for(c)) passes.push_back({path, KvBlock::kAuto});
  if (const KvBlock other = other_kv_block(c); other != KvBlock::kAuto) passes.push_back({KvLoadPath::kTma, other});
  return passes;
}

// Whether check_runs runs `schedule` on a pass of `kv_block`: the dynamic
// schedule is built for the standard block only (plan_prefill refuses the
// wide one).
bool runs_under(const ScheduleChoice& schedule, KvBlock kv_block) {
  return !(schedule.schedule == WorkSchedule::kDynamic && kv_block == KvBlock::kWide);
}

// Runs `device`'s case through every path it supports, each under every
// schedule choice (kScheduleChoices), checks the plan took that schedule and
// grid, compares each run against `refs` (the references of `expected`,
// a case with the same queries and the same visible keys) and the runs that
// walk the same KV block against each other (same bits, o and LSE: the
// masked K rows differ between paths and the order of work items between
// schedules, nothing else may). Where the case can take the wide KV block,
// the TMA path also runs with the block kAuto does not choose, so both
// blocks meet the reference on the same case. Runs with different KV blocks
// (the wide block beside the 128 rows) split the online softmax at other
// keys, so only the reference comparison holds between them. Returns "" or
// a failure report; the runs are kept in *runs when asked for.
std::string check_runs(DevicePrefillCase& device, const HostCase& expected, const References& refs,
                       std::vector<PrefillRun>* runs = nullptr) {
  std::string failures;
  std::vector<PrefillRun> done;
  std::vector<std::string> names;
  for (const auto& [path, kv_block] : passes_for(device.host())) {
    for (const ScheduleChoice& schedule : kScheduleChoices) {
      if (!runs_under(schedule, kv_block)) continue;
      PrefillRun run = device.run(path, pollute_smem_nan, schedule, kv_block);
      const std::string name = std::string(load_path_name(path)) + "/" + schedule.name +
                               (kv_block == KvBlock::kAuto       ? ""
                                : kv_block == KvBlock::kStandard ? "/standard block"
                                                                 : "/wide block");
      if (!run.status.ok()) {
        failures += name + ": " + run.status.message + "\n";
        continue;
      }
      if (run.schedule != schedule.schedule) failures += name + ": the plan chose another schedule\n";
      const int64_t expected_ctas =
          schedule.schedule == WorkSchedule::kOneItemPerCta
              ? run.num_work_items
              : std::min<int64_t>(schedule.max_ctas > 0 ? schedule.max_ctas : sm_count(), run.num_work_items);
      if (run.num_ctas != expected_ctas)
        failures += name + ": " + std::to_string(run.num_ctas) + " CTAs, expected " + std::to_string(expected_ctas) + "\n";
      if (const std::string lse_failure = run.lse_contract_failure(); !lse_failure.empty())
        failures += name + ": " + lse_failure + "\n";
      const CompareResult r = compare_prefill(expected, refs, run.out.data(), run.lse_or_null());
      if (!r.pass) failures += name + ": " + r.summary() + "\n";
      const auto same_block = std::find_if(done.begin(), done.end(),
                                           [&](const PrefillRun& d) { return d.block_kv == run.block_kv; });
      if (same_block != done.end())
        if (const std::string difference = bit_difference(*same_block, run); !difference.empty())
          failures += name + " and " + names[same_block - done.begin()] + " differ: " + difference + "\n";
      names.push_back(name);
      done.push_back(std::move(run));
    }
  }
  if (runs != nullptr) *runs = std::move(done);
  return failures;
}

std::string check_case(const HostCase& c, const References& refs) {
  DevicePrefillCase device(c);
  return check_runs(device, c, refs);
}

RandomLimits suite_limits(int index) {
  RandomLimits limits;
  limits.page_sizes = {1, 3, 7, 16, 32, 64, 128, 256};
  limits.kv_head_counts = {1, 2};
  limits.gqa_group_sizes = {1, 4, 8};
  if (index % 26 == 25) {  // a few long requests: qo up to 2k, kv up to 8k
    limits.max_requests = 2;
    limits.max_qo_len = 2048;
    limits.max_kv_len = 8192;
    limits.kv_head_counts = {1};
    limits.gqa_group_sizes = {1, 4};
  } else {
    limits.max_requests = 5;
    limits.max_qo_len = 300;
    limits.max_kv_len = 1100;
  }
  return limits;
}

}  // namespace

TEST_CASE("prefill: random cases match the reference through both load paths", "[gpu][prefill]") {
  int failed = 0, paths_run = 0, not_built = 0;
  // The references of case i+1 are computed on the CPU while case i runs on the GPU.
  auto make = [](int i) {
    CaseSpec spec = random_spec(1000 + uint64_t(i), suite_limits(i));
    spec.options.return_lse = i % 2 == 0;  // the kernel's branch without LSE runs on half of the cases
    HostCase c = make_case(spec);
    References refs = built_here(c) ? compute_references(c) : References{};
    return std::make_pair(std::move(c), std::move(refs));
  };
  auto next = std::async(std::launch::async, make, 0);
  for (int i = 0; i < kRandomCases; ++i) {
    auto [c, refs] = next.get();
    if (i + 1 < kRandomCases) next = std::async(std::launch::async, make, i + 1);
    if (!built_here(c)) {
      ++not_built;
      continue;
    }
    for (const auto& pass : passes_for(c))
      for (const ScheduleChoice& schedule : kScheduleChoices) paths_run += int(runs_under(schedule, pass.second));
    const std::string failure = check_case(c, refs);
    if (!failure.empty()) {
      ++failed;
      UNSCOPED_INFO("case " << i << ": " << c.describe() << "\n" << failure);
      std::printf("FAILED case %d: %s\n%s", i, c.describe().c_str(), failure.c_str());
    }
    if ((i + 1) % 100 == 0) std::printf("prefill random suite: %d of %d cases done, %d failed\n", i + 1, kRandomCases, failed);
    std::fflush(stdout);
  }
  std::printf("prefill random suite: %d cases (%d not built in this configuration), %d runs (case x load path x "
              "schedule, and the TMA path's other KV block where a case takes both), %d failed\n",
              kRandomCases, not_built, paths_run, failed);
  CHECK(failed == 0);
  CHECK(paths_run > 0);
}

TEST_CASE("prefill: NaN in the unused tail of the last page never reaches the output", "[gpu][prefill][tail]") {
  // The FA3 failure described in docs/kernels.md "State rules": paged, causal,
  // kv_len 1000 (not a multiple of the page), NaN/Inf in the tail slots; TMA
  // pages of 128 and 256, and the gather path, with K/V rows past the end
  // landing in the last block.
  for (int32_t page : {64, 128, 256}) {
    for (bool causal : {true, false}) {
      CaseSpec spec;
      spec.seed = 77 + uint64_t(page);
      spec.head_dim = 128;
      spec.num_qo_heads = 2;
      spec.num_kv_heads = 1;
      spec.page_size = page;
      spec.qo_lens = {1000, 37};
      spec.kv_lens = {1000, 501};
      spec.options.causal = causal;
      const HostCase c = make_case(spec);
      const References refs = compute_references(c);
      INFO(c.describe());
      CHECK(check_case(c, refs).empty());
    }
  }
}

TEST_CASE("prefill: three runs give identical bits", "[gpu][prefill][determinism]") {
  CaseSpec spec = w2_spec(5);
  spec.options.return_lse = true;
  const HostCase c = make_case(spec);
  DevicePrefillCase device(c);
  for (KvLoadPath path : load_paths_for(c)) {
    const PrefillRun first = device.run(path, pollute_smem_nan);
    REQUIRE(first.status.ok());
    REQUIRE(!first.lse.empty());
    for (int repeat = 0; repeat < 2; ++repeat) {
      const PrefillRun again = device.run(path, pollute_smem_nan);
      REQUIRE(again.status.ok());
      CHECK(first_bit_difference(first.out.data(), again.out.data(), int64_t(first.out.size())) == -1);
      CHECK(first_bit_difference(first.lse.data(), again.lse.data(), int64_t(first.lse.size())) == -1);
    }
  }
}

TEST_CASE("prefill: the seed scenario (RoPE cache build right before) changes nothing", "[gpu][prefill][seed]") {
  // FlashInfer #1018: a cos/sin cache kernel ran just before the paged
  // prefill, whose partially filled last KV tile then read its leftovers.
  CaseSpec spec;
  spec.seed = 1018;
  spec.head_dim = 128;
  spec.num_qo_heads = 4;
  spec.num_kv_heads = 4;
  spec.page_size = 16;
  spec.qo_lens = {7, 300, 129};
  spec.kv_lens = {21, 333, 1000};
  spec.options.causal = true;
  const HostCase c = make_case(spec);
  const References refs = compute_references(c);
  DevicePrefillCase device(c);
  DeviceBuffer cache(size_t(65536) * 128 * sizeof(float));
  for (KvLoadPath path : load_paths_for(c)) {
    const PrefillRun clean = device.run(path);
    REQUIRE(clean.status.ok());
    const PrefillRun seeded = device.run(path, [&] {
      RopeConfig rope;
      rope.rotary_dim = 128;
      const Status s = build_rope_cos_sin_cache(cache.as<float>(), 65536, 128, rope, nullptr);
      REQUIRE(s.ok());
    });
    REQUIRE(seeded.status.ok());
    CHECK(compare_prefill(c, refs, seeded.out.data(), seeded.lse_or_null()).pass);
    CHECK(first_bit_difference(clean.out.data(), seeded.out.data(), int64_t(clean.out.size())) == -1);
  }
}

TEST_CASE("prefill: a run captured in a CUDA graph replays correctly", "[gpu][prefill][graph]") {
  // A random batch, and a decode batch in 4 KV chunks: its graph holds the
  // merge as a programmatic dependent of the kernel.
  CaseSpec split_decode;
  split_decode.num_qo_heads = 8, split_decode.num_kv_heads = 2;
  split_decode.qo_lens = {1, 2}, split_decode.kv_lens = {2000, 900};
  split_decode.options.causal = true;
  const int32_t splits = GENERATE(0, 4);
  const HostCase c = make_case(splits == 0 ? random_spec(4242) : split_decode);
  if (!built_here(c)) {  // the random batch is fp16 (bf16-only builds of injected bugs lack it)
    std::printf("graph capture: a batch not built in this configuration (kv_splits %d)\n", splits);
    return;
  }
  const References refs = compute_references(c);
  DevicePrefillCase device(c);
  PrefillConfig config = c.config;
  config.options.return_lse = true;
  config.kv_splits = splits;
  PrefillPlan plan;
  REQUIRE(plan_prefill(config, c.indices(), plan).ok());
  if (splits > 0) CHECK(plan.chosen_kv_splits() == splits);

  cudaStream_t stream;
  PTXATTN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph;
  PTXATTN_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const Status captured = run_prefill(plan, device.tensors(), stream);
  PTXATTN_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  REQUIRE(captured.ok());
  cudaGraphExec_t exec;
  PTXATTN_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 0; replay < 2; ++replay) {
    device.out().fill_u32(pattern::kQuietNaN);
    device.lse().fill_u32(pattern::kQuietNaN);
    pollute_smem_nan();
    PTXATTN_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    PTXATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
    const auto out = download_vector<uint16_t>(device.out(), c.q.size());
    const auto lse = download_vector<float>(device.lse(), size_t(c.num_q_tokens) * c.config.num_qo_heads);
    const CompareResult r = compare_prefill(c, refs, out.data(), lse.data());
    INFO(r.summary());
    CHECK(r.pass);
  }
  PTXATTN_CUDA_CHECK(cudaGraphExecDestroy(exec));
  PTXATTN_CUDA_CHECK(cudaGraphDestroy(graph));
  PTXATTN_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST_CASE("prefill: any window_left is exact, also near INT32_MAX", "[gpu][prefill][window]") {
  // Engines say "no window" with -1, INT32_MAX or max_seq_len; windows at and
  // past the sequence end used to wrap inside the mask arithmetic.
  constexpr int32_t kInt32Max = std::numeric_limits<int32_t>::max();
  struct Shape {
    std::vector<int32_t> qo, kv;
    bool causal_allowed;  // causal needs qo_len <= kv_len
  };
  const std::vector<Shape> shapes = {
      {{300}, {300}, true},
      {{1000}, {1000}, true},
      {{30}, {5}, false},
      {{300, 17, 5, 0}, {300, 1000, 129, 40}, true},  // windows measured against the longest request
  };
  int checked = 0;
  for (size_t shape = 0; shape < shapes.size(); ++shape) {
    const int32_t kv_len = *std::max_element(shapes[shape].kv.begin(), shapes[shape].kv.end());
    for (int32_t window : {kInt32Max, kInt32Max - 500, kv_len, kv_len - 1, 0}) {
      for (bool causal : {false, true}) {
        if (causal && !shapes[shape].causal_allowed) continue;
        CaseSpec spec;
        spec.seed = 900 + 10 * uint64_t(shape) + uint64_t(causal);
        spec.head_dim = 128;
        spec.num_qo_heads = 4;
        spec.num_kv_heads = 2;
        spec.page_size = shape % 2 == 0 ? 16 : 64;
        spec.qo_lens = shapes[shape].qo;
        spec.kv_lens = shapes[shape].kv;
        spec.options.causal = causal;
        spec.options.window_left = window;
        spec.options.return_lse = true;
        const HostCase c = make_case(spec);
        const References refs = compute_references(c);
        INFO(c.describe());
        CHECK(check_case(c, refs) == "");
        ++checked;
      }
    }
  }
  CHECK(checked == 35);
}

TEST_CASE("prefill: a request at the 2^30-token limit (one page repeated), and one past it", "[gpu][prefill][limits]") {
  // A small request (kv 2048 in pages of 1024, queries near its end, a window
  // that stays inside it) is moved to the end of a 2^30-token request by
  // prefixing its page table with 2^20 - 2 repeats of its first page. The
  // queries and every visible key keep their pages and slots, and the shift is
  // a whole number of KV blocks, so the output must be the small case's, bit
  // for bit, and match the small case's reference.
  constexpr int32_t kPage = 1024;
  constexpr int64_t kLimit = int64_t(1) << 30;
  CaseSpec spec;
  spec.seed = 1u << 30;
  spec.head_dim = 128;
  spec.num_qo_heads = 4;
  spec.num_kv_heads = 2;
  spec.page_size = kPage;
  spec.qo_lens = {200};
  spec.kv_lens = {2048};
  spec.options.window_left = 500;  // the first query (position 1848) sees keys from 1348 on
  spec.options.return_lse = true;
  for (bool causal : {true, false}) {
    spec.options.causal = causal;
    const HostCase small = make_case(spec);
    const References refs = compute_references(small);
    HostCase large = small;
    const int32_t prefix_pages = int32_t((kLimit - 2048) / kPage);
    large.kv_indices.insert(large.kv_indices.begin(), size_t(prefix_pages), small.kv_indices[0]);
    large.kv_indptr = {0, int32_t(large.kv_indices.size())};
    REQUIRE(large.kv_len(0) == kLimit);
    INFO(large.describe());

    DevicePrefillCase small_device(small), large_device(large);
    std::vector<PrefillRun> small_runs, large_runs;
    CHECK(check_runs(small_device, small, refs, &small_runs) == "");
    CHECK(check_runs(large_device, small, refs, &large_runs) == "");
    REQUIRE(small_runs.size() == large_runs.size());
    for (size_t i = 0; i < small_runs.size(); ++i) CHECK(bit_difference(small_runs[i], large_runs[i]) == "");

    // One token more is refused with the rule's message.
    HostCase past = large;
    past.kv_indices.push_back(small.kv_indices[0]);
    past.kv_indptr = {0, int32_t(past.kv_indices.size())};
    past.kv_last_page_len = {1};
    PrefillPlan plan;
    const Status refused = plan_prefill(past.config, past.indices(), plan);
    CHECK(refused.code == StatusCode::kInvalidArgument);
    CHECK(refused.message ==
          "request 0: kv_len = config.page_size * (pages - 1) + indices.kv_last_page_len[0] = 1024 * 1048576 + 1 = "
          "1073741825 exceeds the limit of 2^30 = 1073741824 tokens per request");
  }
}

TEST_CASE("prefill: shared prefix pages and a page repeated in one request", "[gpu][prefill][shared-pages]") {
  // Prefix caching: requests 1 and 2 start with request 0's first full pages;
  // request 2 also lists one of its own full pages twice. Only full pages are
  // shared, so no request sees another's unused (poisoned) last-page tail.
  int checked = 0;
  for (int32_t page : {1, 16, 64, 128}) {
    for (bool causal : {false, true}) {
      CaseSpec spec;
      spec.seed = 5000 + uint64_t(page) + uint64_t(causal);
      spec.head_dim = 128;
      spec.num_qo_heads = 8;
      spec.num_kv_heads = 2;
      spec.page_size = page;
      spec.layout = causal ? KvLayout::kHND : KvLayout::kNHD;
      spec.qo_lens = {40, 70, 33};
      spec.kv_lens = {520, 700, 650};
      spec.options.causal = causal;
      spec.options.return_lse = true;
      HostCase c = make_case(spec);
      auto full_pages = [&](int32_t b) { return int32_t((c.kv_len(b) - 1) / page); };
      auto entry = [&](int32_t b, int32_t j) -> int32_t& { return c.kv_indices[size_t(c.kv_indptr[b] + j)]; };
      const int32_t shared = std::min({full_pages(0), full_pages(1), full_pages(2)}) / 2;
      REQUIRE(shared >= 1);
      for (int32_t b : {1, 2})
        for (int32_t j = 0; j < shared; ++j) entry(b, j) = entry(0, j);
      const int32_t repeated = full_pages(2) - 1;  // request 2's last full page, again in the slot before it
      entry(2, repeated - 1) = entry(2, repeated);
      const References refs = compute_references(c);
      INFO(c.describe() << ", " << shared << " shared prefix pages");
      CHECK(check_case(c, refs) == "");
      ++checked;
    }
  }
  CHECK(checked == 8);
}


namespace {

// Every forced chunk count of [split-kv] against the reference, on every
// load path the case takes; each count twice, for identical bits. The
// workspace is NaN before each run (prefill_runner), so a state the kernel
// does not write reaches the merge as NaN.
std::string check_forced_splits(const HostCase& c, const References& refs) {
  static constexpr int32_t kForcedSplits[] = {1, 2, 3, 7, 16};
  DevicePrefillCase device(c);
  std::string failures;
  for (KvLoadPath path : load_paths_for(c)) {
    for (int32_t splits : kForcedSplits) {
      const std::string name = std::string(load_path_name(path)) + "/" + std::to_string(splits) + " chunks";
      const ScheduleChoice schedule{WorkSchedule::kAuto, 0, "auto"};
      const PrefillRun run = device.run(path, pollute_smem_nan, schedule, KvBlock::kAuto, splits);
      if (!run.status.ok()) {
        failures += name + ": " + run.status.message + "\n";
        continue;
      }
      if (run.kv_splits != splits)
        failures += name + ": the plan chose " + std::to_string(run.kv_splits) + " chunks\n";
      const CompareResult r = compare_prefill(c, refs, run.out.data(), run.lse_or_null());
      if (!r.pass) failures += name + ": " + r.summary() + "\n";
      const PrefillRun again = device.run(path, pollute_smem_nan, schedule, KvBlock::kAuto, splits);
      if (!again.status.ok())
        failures += name + ", again: " + again.status.message + "\n";
      else if (const std::string difference = bit_difference(run, again); !difference.empty())
        failures += name + ": two runs differ: " + difference + "\n";
    }
  }
  return failures;
}

}  // namespace

TEST_CASE("prefill: split-KV with forced chunk counts matches the reference", "[gpu][prefill][split-kv]") {
  std::vector<CaseSpec> specs;
  // Chunks without a visible key for every row: a causal decode over 300
  // keys (3 blocks, at most 5 at head_dim 256) in 7 or 16 chunks, and a
  // 40-key window at the end of 3000 keys.
  CaseSpec causal_short;
  causal_short.num_qo_heads = 4, causal_short.num_kv_heads = 2;
  causal_short.qo_lens = {1, 5}, causal_short.kv_lens = {300, 290};
  causal_short.options.causal = true;
  causal_short.options.return_lse = true;
  specs.push_back(causal_short);
  CaseSpec window = causal_short;
  window.qo_lens = {3, 130}, window.kv_lens = {3000, 2500};
  window.options.window_left = 40;
  window.head_dim = 64;
  window.page_size = 64;
  specs.push_back(window);
  RandomLimits limits;
  limits.max_requests = 3;
  limits.max_qo_len = 200;
  limits.max_kv_len = 3000;
  limits.page_sizes = {1, 16, 64, 128};
  for (int i = 0; i < 24; ++i) {
    CaseSpec spec = random_spec(7000 + uint64_t(i), limits);
    spec.options.return_lse = i % 2 == 0;
    specs.push_back(spec);
  }
  int failed = 0, not_built = 0;
  for (const CaseSpec& spec : specs) {
    const HostCase c = make_case(spec);
    if (!built_here(c)) {
      ++not_built;
      continue;
    }
    const References refs = compute_references(c);
    const std::string failure = check_forced_splits(c, refs);
    if (!failure.empty()) {
      ++failed;
      UNSCOPED_INFO(c.describe() << "\n" << failure);
      std::printf("FAILED %s\n%s", c.describe().c_str(), failure.c_str());
    }
  }
  std::printf("split-KV suite: %zu cases (%d not built in this configuration) x chunk counts {1, 2, 3, 7, 16} x load "
              "paths, %d failed\n",
              specs.size(), not_built, failed);
  CHECK(failed == 0);
  CHECK(not_built < int(specs.size()));
}

namespace {

// Runs a batch (8 qo and 2 KV heads, one token per request unless the spec
// gives qo_lens, LSE) under the plan's split-KV rule on every load path, shared memory NaN first: the rule
// must split it (into `splits` chunks where that is given), and the merged
// result must match the reference.
void check_split_by_rule(CaseSpec spec, int32_t splits) {
  spec.num_qo_heads = 8, spec.num_kv_heads = 2;
  if (spec.qo_lens.empty()) spec.qo_lens.assign(spec.kv_lens.size(), 1);  // decode
  spec.options.return_lse = true;
  const HostCase c = make_case(spec);
  const References refs = compute_references(c);
  DevicePrefillCase device(c);
  for (KvLoadPath path : load_paths_for(c)) {
    const PrefillRun run = device.run(path, pollute_smem_nan);
    REQUIRE(run.status.ok());
    CHECK(run.kv_splits > 1);
    if (splits > 0) CHECK(run.kv_splits == splits);
    const CompareResult r = compare_prefill(c, refs, run.out.data(), run.lse_or_null());
    INFO(load_path_name(path) << ": " << r.summary());
    CHECK(r.pass);
  }
}

}  // namespace

TEST_CASE("prefill: the split-KV rule splits a decode batch that leaves SMs idle", "[gpu][prefill][split-kv]") {
  // 8 work items over 8192 keys, far fewer than SMs: 64 blocks per item, so
  // 16 chunks of 4 fill 128 SMs in one wave.
  CaseSpec spec;
  spec.kv_lens = {8192};
  check_split_by_rule(spec, sm_count() >= 8 * 16 ? 16 : 0);
}

TEST_CASE("prefill: the split-KV rule splits a long request among short ones", "[gpu][prefill][split-kv]") {
  // 160 requests, one over 32768 keys and the rest over 256: 320 work items,
  // more than SMs, but unsplit the long request's 2 items (256 blocks each)
  // would outlast all the others.
  CaseSpec spec;
  spec.kv_lens.assign(160, 256);
  spec.kv_lens[37] = 32768;
  check_split_by_rule(spec, 0);
}

TEST_CASE("prefill: the split-KV rule cuts a causal prompt's tiles in proportion to their keys",
          "[gpu][prefill][split-kv]") {
  // One prompt of 2048 tokens, causal: 16 query tiles of 1 to 16 KV blocks,
  // 128 items, fewer than SMs, so the rule splits; the tiles get chunks in
  // proportion to their blocks (the first ones one chunk, storing o
  // themselves), and the merge finds each token's states by its offset.
  CaseSpec spec;
  spec.qo_lens = {2048};
  spec.kv_lens = {2048};
  spec.options.causal = true;
  check_split_by_rule(spec, 0);
}


// Random case i of a suite of decode, verification and prefill steps: in
// every `kinds` cases one is a decode step (one query token per request),
// one a verification step (1 + i % max_tokens tokens), the rest prefill;
// causal requests keep kv_len >= qo_len; every other case returns LSE.
CaseSpec step_spec(uint64_t seed, const RandomLimits& limits, int i, int kinds, int max_tokens) {
  CaseSpec spec = random_spec(seed, limits);
  if (i % kinds == 0) spec.qo_lens.assign(spec.qo_lens.size(), 1);
  if (i % kinds == 1)
    for (int32_t& qo : spec.qo_lens) qo = 1 + int32_t(i % max_tokens);
  for (size_t b = 0; b < spec.qo_lens.size(); ++b)
    if (spec.options.causal) spec.kv_lens[b] = std::max(spec.kv_lens[b], spec.qo_lens[b]);
  spec.options.return_lse = i % 2 == 0;
  return spec;
}

// "" when `run` planned, ran and matches the reference; else why not, as a
// line naming it `which`.
std::string run_failure(const HostCase& c, const References& refs, const PrefillRun& run, const std::string& which) {
  if (!run.status.ok()) return which + ": " + run.status.message + "\n";
  const CompareResult r = compare_prefill(c, refs, run.out.data(), run.lse_or_null());
  return r.pass ? "" : which + ": " + r.summary() + "\n";
}

// A random suite's count of cases run, failed and not built here; a failing
// case's lines go to the log with the case.
struct SuiteTally {
  int cases = 0, failed = 0, not_built = 0;

  void record(const HostCase& c, const std::string& failures) {
    ++cases;
    if (failures.empty()) return;
    ++failed;
    UNSCOPED_INFO(c.describe() << "\n" << failures);
    std::printf("FAILED %s\n%s", c.describe().c_str(), failures.c_str());
  }
  // Prints "<suite>: N cases (M not built in this configuration) x <runs>, F failed" and checks the suite.
  void finish(const char* suite, const char* runs) const {
    std::printf("%s: %d cases (%d not built in this configuration) x %s, %d failed\n", suite, cases, not_built, runs,
                failed);
    CHECK(failed == 0);
    CHECK(cases > 0);
  }
};

TEST_CASE("prefill: GQA-packed and token-major tiles give the reference and the same bits", "[gpu][prefill][gqa-pack]") {
  RandomLimits limits;
  limits.max_requests = 4;
  limits.max_qo_len = 300;
  limits.max_kv_len = 2000;
  limits.page_sizes = {1, 16, 64, 128};
  limits.gqa_group_sizes = {2, 4, 8};
  SuiteTally tally;
  for (int i = 0; i < 40; ++i) {
    const HostCase c = make_case(step_spec(9000 + uint64_t(i), limits, i, 4, 7));
    if (!built_here(c)) {
      ++tally.not_built;
      continue;
    }
    const References refs = compute_references(c);
    DevicePrefillCase device(c);
    std::string failures;
    const ScheduleChoice schedule{WorkSchedule::kAuto, 0, "auto"};
    for (KvLoadPath path : load_paths_for(c)) {
      const std::string name = load_path_name(path);
      // Unsplit, so both walk the same chunks: packed must give token-major's bits.
      const PrefillRun token_major = device.run(path, pollute_smem_nan, schedule, KvBlock::kAuto, 1, GqaPacking::kOff);
      const PrefillRun packed = device.run(path, pollute_smem_nan, schedule, KvBlock::kAuto, 1, GqaPacking::kOn);
      const PrefillRun chosen = device.run(path, pollute_smem_nan);  // the plan's packing and split rules
      failures += run_failure(c, refs, token_major, name + "/token-major") +
                  run_failure(c, refs, packed, name + "/packed") + run_failure(c, refs, chosen, name + "/auto");
      if (!token_major.status.ok() || !packed.status.ok()) continue;
      if (token_major.tile_heads != 1 || packed.tile_heads != c.config.num_qo_heads / c.config.num_kv_heads)
        failures += name + ": the plans took " + std::to_string(token_major.tile_heads) + " and " +
                    std::to_string(packed.tile_heads) + " heads per tile\n";
      if (const std::string difference = bit_difference(token_major, packed); !difference.empty())
        failures += name + ": packed and token-major differ: " + difference + "\n";
    }
    tally.record(c, failures);
  }
  tally.finish("GQA packing suite", "load paths x {token-major, packed, auto}");
}

TEST_CASE("prefill: the 2- and 3-stage K/V rings give the reference and the same bits", "[gpu][prefill][kv-stages]") {
  // head_dim 128 on the gather path, the only place both rings are built:
  // decode, verification and prefill steps over pages of 1 to 128 and ragged
  // rows, each schedule, split and unsplit; and the ring kv_stages 0 takes.
  RandomLimits limits;
  limits.head_dims = {128};
  limits.max_requests = 5;
  limits.max_qo_len = 300;
  limits.max_kv_len = 3000;
  limits.page_sizes = {1, 7, 16, 64, 128};
  limits.gqa_group_sizes = {1, 4, 8};
  SuiteTally tally;
  for (int i = 0; i < 36; ++i) {
    const HostCase c = make_case(step_spec(9500 + uint64_t(i), limits, i, 3, 5));
    if (!built_here(c)) {
      ++tally.not_built;
      continue;
    }
    const References refs = compute_references(c);
    DevicePrefillCase device(c);
    const ScheduleChoice& schedule = kScheduleChoices[i % std::size(kScheduleChoices)];
    const int32_t kv_splits = i % 4 == 3 ? 1 + i % 6 : 0;
    const PrefillRun two = device.run(KvLoadPath::kGather, pollute_smem_nan, schedule, KvBlock::kAuto, kv_splits,
                                      GqaPacking::kAuto, 2);
    const PrefillRun three = device.run(KvLoadPath::kGather, pollute_smem_nan, schedule, KvBlock::kAuto, kv_splits,
                                        GqaPacking::kAuto, 3);
    const PrefillRun standard = device.run(KvLoadPath::kGather, pollute_smem_nan, schedule, KvBlock::kAuto, kv_splits);
    std::string failures = run_failure(c, refs, two, "2 stages") + run_failure(c, refs, three, "3 stages") +
                           run_failure(c, refs, standard, "kv_stages 0");
    if (two.status.ok() && three.status.ok() && standard.status.ok()) {
      if (two.kv_stages != 2 || three.kv_stages != 3 || standard.kv_stages != 2)
        failures += "the plans took " + std::to_string(two.kv_stages) + ", " + std::to_string(three.kv_stages) +
                    " and " + std::to_string(standard.kv_stages) + " stages\n";
      if (const std::string difference = bit_difference(two, three); !difference.empty())
        failures += schedule.name + std::string(": 2 and 3 stages differ: ") + difference + "\n";
      if (const std::string difference = bit_difference(two, standard); !difference.empty())
        failures += schedule.name + std::string(": 2 stages and kv_stages 0 differ: ") + difference + "\n";
    }
    tally.record(c, failures);
  }
  tally.finish("K/V stages suite", "{2, 3, 0} stages on the gather path");
}

TEST_CASE("prefill: the packing rule packs decode and speculative batches, not whole tiles", "[gpu][prefill][gqa-pack]") {
  struct Expectation {
    std::vector<int32_t> qo_lens;
    int32_t tile_heads;
  };
  // 32/8 heads: groups of 4. Decode and 4-token steps pack; 128-token
  // requests fill token-major tiles already.
  for (const Expectation& e : {Expectation{{1, 1, 1}, 4}, Expectation{{4, 4}, 4}, Expectation{{128, 256}, 1}}) {
    CaseSpec spec;
    spec.num_qo_heads = 32, spec.num_kv_heads = 8;
    spec.qo_lens = e.qo_lens;
    spec.kv_lens.assign(e.qo_lens.size(), 700);
    spec.options.causal = true;
    const HostCase c = make_case(spec);
    DevicePrefillCase device(c);
    const PrefillRun run = device.run(KvLoadPath::kAuto, pollute_smem_nan);
    REQUIRE(run.status.ok());
    CHECK(run.tile_heads == e.tile_heads);
    const CompareResult r = compare_prefill(c, compute_references(c), run.out.data(), run.lse_or_null());
    INFO(r.summary());
    CHECK(r.pass);
  }
}


// ============================================================================
// Page tables given at run (PrefillTensors::kv_indices)
// ============================================================================

namespace {

// One run of `c` planned without host kv_indices, the page table `table`
// (device, the plan's positions) given at run; o and lse NaN before it.
struct TableRun {
  Status run_status, check_status;
  std::vector<uint16_t> out;
  std::vector<float> lse;
};

TableRun run_with_device_table(DevicePrefillCase& device, const PrefillPlan& plan, const DeviceBuffer& table) {
  const HostCase& c = device.host();
  TableRun result;
  device.out().fill_u32(pattern::kQuietNaN);
  device.lse().fill_u32(pattern::kQuietNaN);
  pollute_smem_nan();
  PrefillTensors tensors = device.tensors();
  tensors.kv_indices = table.as<int32_t>();
  result.run_status = run_prefill(plan, tensors, nullptr);
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
  result.check_status = check_page_table_errors(plan, nullptr);
  result.out = download_vector<uint16_t>(device.out(), c.q.size());
  if (c.config.options.return_lse)
    result.lse = download_vector<float>(device.lse(), size_t(c.num_q_tokens) * c.config.num_qo_heads);
  return result;
}

PrefillPlan plan_without_host_table(const HostCase& c, KvLoadPath path) {
  PrefillConfig config = c.config;
  config.load_path = path;
  BatchIndices indices = c.indices();
  indices.kv_indices = nullptr;
  PrefillPlan plan;
  const Status status = plan_prefill(config, indices, plan);
  INFO(status.message);
  REQUIRE(status.ok());
  return plan;
}

}  // namespace

TEST_CASE("prefill: a page table given at run gives the bits of the plan's own copy, and is read at every run",
          "[gpu][prefill][device-page-table]") {
  RandomLimits limits;
  limits.page_sizes = {1, 7, 16, 64, 128};
  limits.ragged_fraction = 0;
  std::vector<CaseSpec> specs;
  for (int i = 0; i < 12; ++i) {
    CaseSpec spec = random_spec(9100 + uint64_t(i), limits);
    spec.options.return_lse = i % 2 == 0;
    specs.push_back(spec);
  }
  CaseSpec decode;  // split by the plan's rule, and packed
  decode.num_qo_heads = 8, decode.num_kv_heads = 2;
  decode.qo_lens = {1, 3}, decode.kv_lens = {3000, 1200};
  decode.options.causal = decode.options.return_lse = true;
  specs.push_back(decode);
  int checked = 0;
  for (const CaseSpec& spec : specs) {
    const HostCase c = make_case(spec);
    if (!built_here(c)) continue;
    DevicePrefillCase device(c);
    for (KvLoadPath path : load_paths_for(c)) {
      INFO(load_path_name(path) << " | " << c.describe());
      const PrefillRun own = device.run(path, pollute_smem_nan);
      REQUIRE(own.status.ok());
      const PrefillPlan plan = plan_without_host_table(c, path);
      // First a table of wrong pages (every entry one page further, wrapping
      // in the pool), then the right one in the same buffer: the second run
      // must read the new contents.
      std::vector<int32_t> shifted = c.kv_indices;
      for (int32_t& page : shifted) page = int32_t((page + 1) % c.config.num_pages);
      DeviceBuffer table = upload_vector(shifted);
      const TableRun wrong = run_with_device_table(device, plan, table);
      REQUIRE(wrong.run_status.ok());
      CHECK(wrong.check_status.ok());  // wrong pages, but all inside the pool
      // ... which the output shows wherever a request with queries has keys.
      bool reads_pages = false;
      for (int32_t b = 0; b < c.num_requests(); ++b)
        reads_pages = reads_pages || (c.qo_indptr[b + 1] > c.qo_indptr[b] && c.kv_len(b) > 0);
      if (reads_pages) CHECK(first_bit_difference(own.out.data(), wrong.out.data(), int64_t(own.out.size())) != -1);
      table.upload(c.kv_indices.data(), c.kv_indices.size() * sizeof(int32_t));
      const TableRun right = run_with_device_table(device, plan, table);
      INFO(right.run_status.message << right.check_status.message);
      REQUIRE(right.run_status.ok());
      CHECK(right.check_status.ok());
      CHECK(first_bit_difference(own.out.data(), right.out.data(), int64_t(own.out.size())) == -1);
      if (c.config.options.return_lse)
        CHECK(first_bit_difference(own.lse.data(), right.lse.data(), int64_t(own.lse.size())) == -1);
      ++checked;
    }
  }
  CHECK(checked > 0);
}

TEST_CASE("prefill: page-table entries outside the pool are reported, never read, and spare the other requests",
          "[gpu][prefill][device-page-table]") {
  // Three requests; request 1's pages get bad entries. INT32_MAX pages past
  // the pool's base is far outside any allocation: a read there faults.
  CaseSpec spec;
  spec.num_qo_heads = 4, spec.num_kv_heads = 2;
  spec.qo_lens = {20, 5, 1}, spec.kv_lens = {300, 500, 260};
  spec.options.causal = spec.options.return_lse = true;
  const int32_t page_sizes[] = {16, 64};
  for (int32_t page_size : page_sizes) {
    spec.page_size = page_size;
    const HostCase c = make_case(spec);
    DevicePrefillCase device(c);
    for (KvLoadPath path : load_paths_for(c)) {
      INFO(load_path_name(path) << " | " << c.describe());
      const PrefillRun own = device.run(path, pollute_smem_nan);
      REQUIRE(own.status.ok());
      const PrefillPlan plan = plan_without_host_table(c, path);
      std::vector<int32_t> bad = c.kv_indices;
      const int32_t first = c.kv_indptr[1], pages = c.kv_indptr[2] - c.kv_indptr[1];
      REQUIRE(pages >= 3);
      bad[first + 1] = std::numeric_limits<int32_t>::max();
      bad[first + 2] = -1;
      bad[first + pages - 1] = c.config.num_pages;
      DeviceBuffer table = upload_vector(bad);
      const TableRun run = run_with_device_table(device, plan, table);
      REQUIRE(run.run_status.ok());
      PTXATTN_CUDA_CHECK(cudaGetLastError());  // no fault
      CHECK(run.check_status.code == StatusCode::kInvalidArgument);
      CHECK_THAT(run.check_status.message,
                 Catch::Contains("tensors.kv_indices[" + std::to_string(first + 1) + "] = 2147483647 (request 1, its "
                                 "page 1) is outside the page pool [0, " +
                                 std::to_string(c.config.num_pages) + ")"));
      CHECK(check_page_table_errors(plan, nullptr).ok());  // reported once, then cleared
      // Requests 0 and 2 keep the bits of the run with a good table.
      const int64_t heads = c.config.num_qo_heads, d = c.config.head_dim;
      for (int32_t b : {0, 2}) {
        const int64_t row0 = c.qo_indptr[b] * heads, rows = (c.qo_indptr[b + 1] - c.qo_indptr[b]) * heads;
        CHECK(first_bit_difference(own.out.data() + row0 * d, run.out.data() + row0 * d, rows * d) == -1);
        CHECK(first_bit_difference(own.lse.data() + row0, run.lse.data() + row0, rows) == -1);
      }
    }
  }
}

TEST_CASE("prefill: the block-table form gives the bits of the CSR form, and never reads a row's unused entries",
          "[gpu][prefill][device-page-table]") {
  RandomLimits limits;
  limits.page_sizes = {1, 16, 64, 128};
  limits.ragged_fraction = 0;
  int checked = 0;
  for (int i = 0; i < 8; ++i) {
    CaseSpec spec = random_spec(9300 + uint64_t(i), limits);
    spec.qo_lens.push_back(1), spec.kv_lens.push_back(spec.page_size + 1);  // a last request with 2 pages
    spec.options.return_lse = true;
    const HostCase c = make_case(spec);
    if (!built_here(c)) continue;
    const int32_t n = c.num_requests();
    int32_t widest = 0;
    for (int32_t b = 0; b < n; ++b) widest = std::max(widest, c.kv_indptr[b + 1] - c.kv_indptr[b]);
    // Rows of widest + 2 entries; the entries past a request's pages hold
    // values outside the pool, which a read would report.
    const int32_t stride = widest + 2;
    std::vector<int32_t> table(size_t(n) * stride, std::numeric_limits<int32_t>::min());
    std::vector<int32_t> kv_lens(static_cast<size_t>(n));
    for (int32_t b = 0; b < n; ++b) {
      kv_lens[b] = int32_t(c.kv_len(b));
      std::copy(c.kv_indices.begin() + c.kv_indptr[b], c.kv_indices.begin() + c.kv_indptr[b + 1],
                table.begin() + size_t(b) * stride);
    }
    DevicePrefillCase device(c);
    for (KvLoadPath path : load_paths_for(c)) {
      INFO(load_path_name(path) << " | " << c.describe());
      const PrefillRun own = device.run(path, pollute_smem_nan);
      REQUIRE(own.status.ok());
      PrefillConfig config = c.config;
      config.load_path = path;
      const BatchIndices indices{n, c.qo_indptr.data(), nullptr, nullptr, nullptr, kv_lens.data(), stride};
      PrefillPlan plan;
      const Status planned = plan_prefill(config, indices, plan);
      INFO(planned.message);
      REQUIRE(planned.ok());
      CHECK(plan.num_kv_rows() == int64_t(n) * stride);
      DeviceBuffer device_table = upload_vector(table);
      const TableRun run = run_with_device_table(device, plan, device_table);
      INFO(run.run_status.message << run.check_status.message);
      REQUIRE(run.run_status.ok());
      CHECK(run.check_status.ok());
      CHECK(first_bit_difference(own.out.data(), run.out.data(), int64_t(own.out.size())) == -1);
      CHECK(first_bit_difference(own.lse.data(), run.lse.data(), int64_t(own.lse.size())) == -1);
      // A bad entry in the last request's row is named by its row and column.
      std::vector<int32_t> bad = table;
      bad[size_t(n - 1) * stride + 1] = -3;
      device_table.upload(bad.data(), bad.size() * sizeof(int32_t));
      const TableRun reported = run_with_device_table(device, plan, device_table);
      REQUIRE(reported.run_status.ok());
      CHECK_THAT(reported.check_status.message,
                 Catch::Contains("tensors.kv_indices[" + std::to_string((n - 1) * stride + 1) + "] = -3 (request " +
                                 std::to_string(n - 1) + ", its page 1)"));
      ++checked;
    }
  }
  CHECK(checked > 0);
}

TEST_CASE("prefill: plans in one caller's workspace, re-planned on a stream without waiting, give the bits of owned plans",
          "[gpu][prefill][workspace]") {
  // Decode, verification and prefill batches of one head configuration, with
  // the page table on the host and at run, planned one after another into
  // one workspace and run on one non-blocking stream: each plan's upload is
  // ordered after the previous run, and nothing waits for the device between
  // them.
  std::vector<CaseSpec> specs;
  CaseSpec decode;
  decode.num_qo_heads = 8, decode.num_kv_heads = 2;
  decode.qo_lens = {1, 1, 1}, decode.kv_lens = {3000, 700, 5000};
  decode.options.causal = decode.options.return_lse = true;
  specs.push_back(decode);
  CaseSpec verify = decode;
  verify.qo_lens = {4, 6}, verify.kv_lens = {900, 2000};
  specs.push_back(verify);
  CaseSpec long_among_short = decode;  // split by the rule, its tiles in different chunk counts
  long_among_short.qo_lens.assign(160, 1), long_among_short.kv_lens.assign(160, 256);
  long_among_short.kv_lens[37] = 32768;
  specs.push_back(long_among_short);
  RandomLimits limits;
  limits.ragged_fraction = 0;
  for (int i = 0; i < 4; ++i) {
    CaseSpec spec = random_spec(9500 + uint64_t(i), limits);
    spec.num_qo_heads = 8, spec.num_kv_heads = 2, spec.head_dim = 128, spec.dtype = DType::kBF16;
    spec.options.return_lse = true;
    specs.push_back(spec);
  }
  std::vector<HostCase> cases;
  for (const CaseSpec& spec : specs) cases.push_back(make_case(spec));
  if (!built_here(cases.front())) {
    std::printf("workspace plans: head_dim 128 bf16 not built in this configuration\n");
    return;
  }
  WorkspaceSizes sizes;
  for (const HostCase& c : cases) {
    PlanCapacity capacity;
    capacity.max_requests = c.num_requests();
    capacity.max_q_tokens = c.num_q_tokens;
    capacity.max_kv_entries = int64_t(c.kv_indices.size());
    WorkspaceSizes need;
    REQUIRE(prefill_workspace_size(c.config, capacity, &need).ok());
    sizes.device_bytes = std::max(sizes.device_bytes, need.device_bytes);
    sizes.host_bytes = std::max(sizes.host_bytes, need.host_bytes);
  }
  DeviceBuffer device_workspace(sizes.device_bytes);
  device_workspace.fill_u32(pattern::kQuietNaN);  // nothing in it is assumed
  void* staging = nullptr;
  PTXATTN_CUDA_CHECK(cudaMallocHost(&staging, sizes.host_bytes));
  cudaStream_t stream;
  PTXATTN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const PlanWorkspace workspace{device_workspace.get(), sizes.device_bytes, staging, sizes.host_bytes, stream};

  std::vector<std::unique_ptr<DevicePrefillCase>> devices;
  std::vector<PrefillRun> owned;
  std::vector<DeviceBuffer> tables;
  for (const HostCase& c : cases) {
    devices.push_back(std::make_unique<DevicePrefillCase>(c));
    owned.push_back(devices.back()->run(KvLoadPath::kAuto, pollute_smem_nan));
    REQUIRE(owned.back().status.ok());
    devices.back()->out().fill_u32(pattern::kQuietNaN);
    devices.back()->lse().fill_u32(pattern::kQuietNaN);
    tables.push_back(upload_vector(c.kv_indices));
  }
  PrefillPlan plan;  // one plan object, re-planned for every batch
  for (size_t i = 0; i < cases.size(); ++i) {
    const HostCase& c = cases[i];
    BatchIndices indices = c.indices();
    PrefillTensors tensors = devices[i]->tensors();
    if (i % 2 == 1) {  // every other batch takes its page table at run
      indices.kv_indices = nullptr;
      tensors.kv_indices = tables[i].as<int32_t>();
    }
    const Status planned = plan_prefill(c.config, indices, workspace, plan);
    INFO(c.describe() << ": " << planned.message);
    REQUIRE(planned.ok());
    const Status ran = run_prefill(plan, tensors, stream);
    INFO(ran.message);
    REQUIRE(ran.ok());
  }
  PTXATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (size_t i = 0; i < cases.size(); ++i) {
    const HostCase& c = cases[i];
    INFO(c.describe());
    const auto out = download_vector<uint16_t>(devices[i]->out(), c.q.size());
    const auto lse = download_vector<float>(devices[i]->lse(), size_t(c.num_q_tokens) * c.config.num_qo_heads);
    CHECK(first_bit_difference(owned[i].out.data(), out.data(), int64_t(out.size())) == -1);
    CHECK(first_bit_difference(owned[i].lse.data(), lse.data(), int64_t(lse.size())) == -1);
  }
  PTXATTN_CUDA_CHECK(cudaStreamDestroy(stream));
  PTXATTN_CUDA_CHECK(cudaFreeHost(staging));
}

TEST_CASE("prefill: a graph captured once replays correctly after re-planning ten batches within its capacity",
          "[gpu][prefill][graph][workspace]") {
  // One head configuration (8 / 2 heads, head_dim 128, pages of 16 in one
  // pool, causal), decode, verification and prefill mixes. Before each
  // replay the batch's q, K and V are copied into the captured buffers and
  // its page table into the captured table (all on the stream), the plan is
  // made again for it, o and lse are filled with NaN, and shared memory is
  // polluted; rows past the batch's tokens must keep their NaN.
  constexpr int32_t kCapRequests = 6, kCapTokens = 300, kPoolPages = 1024, kBatches = 10;
  PrefillConfig config;
  config.dtype = DType::kBF16, config.num_qo_heads = 8, config.num_kv_heads = 2, config.head_dim = 128;
  config.page_size = 16, config.num_pages = kPoolPages;
  config.options.causal = config.options.return_lse = true;
  config.gqa_packing = GqaPacking::kOn;
  config.kv_block = KvBlock::kStandard;
  if (validate_prefill_config(config).code == StatusCode::kUnsupported) {
    std::printf("graph plans: head_dim 128 bf16 not built in this configuration\n");
    return;
  }
  std::mt19937 rng(4711);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<HostCase> cases;
  for (int i = 0; i <= kBatches; ++i) {  // case 0 is also the one captured
    CaseSpec spec;
    spec.seed = 6000 + uint64_t(i);
    spec.num_qo_heads = 8, spec.num_kv_heads = 2, spec.head_dim = 128, spec.page_size = 16;
    spec.options = config.options;
    const int kind = i % 3, requests = uniform(1, kCapRequests);
    int tokens_left = kCapTokens;
    for (int b = 0; b < requests; ++b) {
      const int qo = std::min(tokens_left, kind == 0 ? 1 : kind == 1 ? uniform(2, 8) : uniform(0, 120));
      tokens_left -= qo;
      spec.qo_lens.push_back(qo);
      spec.kv_lens.push_back(qo + uniform(0, kind == 2 ? 600 : 2000));
    }
    cases.push_back(make_case(spec));
  }
  const int64_t q_row = int64_t(config.num_qo_heads) * config.head_dim;
  const int64_t page_elements = int64_t(config.page_size) * config.num_kv_heads * config.head_dim;
  DeviceBuffer q(sizeof(uint16_t) * kCapTokens * q_row), o(sizeof(uint16_t) * kCapTokens * q_row),
      lse(sizeof(float) * kCapTokens * config.num_qo_heads), k(sizeof(uint16_t) * kPoolPages * page_elements),
      v(sizeof(uint16_t) * kPoolPages * page_elements), table(sizeof(int32_t) * kPoolPages);
  for (DeviceBuffer* buffer : {&q, &k, &v, &table}) buffer->fill_u32(0);
  const PrefillTensors tensors{q.get(), k.get(), v.get(), o.get(), lse.as<float>(), kCapTokens, kPoolPages,
                               table.as<int32_t>()};
  PlanCapacity capacity;
  capacity.max_requests = kCapRequests, capacity.max_q_tokens = kCapTokens;
  capacity.max_kv_units = kPoolPages;  // the page table comes at run, in `table`
  cudaStream_t stream;
  PTXATTN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int32_t splits : {1, 3}) {
    INFO("kv_splits " << splits);
    config.kv_splits = splits;
    WorkspaceSizes sizes;
    REQUIRE(prefill_workspace_size(config, capacity, &sizes).ok());
    DeviceBuffer device_workspace(sizes.device_bytes);
    device_workspace.fill_u32(pattern::kQuietNaN);
    void* staging = nullptr;
    PTXATTN_CUDA_CHECK(cudaMallocHost(&staging, sizes.host_bytes));
    const PlanWorkspace workspace{device_workspace.get(), sizes.device_bytes, staging, sizes.host_bytes, stream,
                                  &capacity};
    PrefillPlan plan;
    // Loads batch c into the captured buffers and plans it, all in stream order.
    auto load_and_plan = [&](const HostCase& c) {
      PTXATTN_CUDA_CHECK(cudaMemcpyAsync(q.get(), c.q.data(), c.q.size() * sizeof(uint16_t), cudaMemcpyHostToDevice,
                                         stream));
      PTXATTN_CUDA_CHECK(cudaMemcpyAsync(k.get(), c.k.data(), c.k.size() * sizeof(uint16_t), cudaMemcpyHostToDevice,
                                         stream));
      PTXATTN_CUDA_CHECK(cudaMemcpyAsync(v.get(), c.v.data(), c.v.size() * sizeof(uint16_t), cudaMemcpyHostToDevice,
                                         stream));
      PTXATTN_CUDA_CHECK(cudaMemcpyAsync(table.get(), c.kv_indices.data(), c.kv_indices.size() * sizeof(int32_t),
                                         cudaMemcpyHostToDevice, stream));
      BatchIndices indices = c.indices();
      indices.kv_indices = nullptr;
      const Status planned = plan_prefill(config, indices, workspace, plan);
      INFO(c.describe() << ": " << planned.message);
      REQUIRE(planned.ok());
      PTXATTN_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host arrays of c are copied before c goes
    };
    load_and_plan(cases[0]);
    cudaGraph_t graph;
    PTXATTN_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    const Status captured = run_prefill(plan, tensors, stream);
    PTXATTN_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    INFO(captured.message);
    REQUIRE(captured.ok());
    cudaGraphExec_t exec;
    PTXATTN_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (const HostCase& c : cases) {
      INFO(c.describe());
      load_and_plan(c);
      o.fill_u32(pattern::kQuietNaN);
      lse.fill_u32(pattern::kQuietNaN);
      pollute_smem_nan();
      PTXATTN_CUDA_CHECK(cudaGraphLaunch(exec, stream));
      PTXATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
      const auto out = download_vector<uint16_t>(o, size_t(kCapTokens * q_row));
      const auto lse_out = download_vector<float>(lse, size_t(kCapTokens) * config.num_qo_heads);
      const CompareResult r = compare_prefill(c, compute_references(c), out.data(), lse_out.data());
      INFO(r.summary());
      CHECK(r.pass);
      // The fill's 32-bit words, seen as pairs of 16-bit elements.
      const uint16_t fill[2] = {uint16_t(pattern::kQuietNaN & 0xFFFFu), uint16_t(pattern::kQuietNaN >> 16)};
      int64_t changed = 0;
      for (int64_t i = c.num_q_tokens * q_row; i < int64_t(out.size()); ++i) changed += out[i] != fill[i % 2];
      CHECK(changed == 0);
      CHECK(std::all_of(lse_out.begin() + c.num_q_tokens * config.num_qo_heads, lse_out.end(),
                        [](float x) { return std::isnan(x); }));
    }
    PTXATTN_CUDA_CHECK(cudaGraphExecDestroy(exec));
    PTXATTN_CUDA_CHECK(cudaGraphDestroy(graph));
    PTXATTN_CUDA_CHECK(cudaFreeHost(staging));
  }
  PTXATTN_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST_CASE("prefill: q as a view into a fused QKV row and o with padded rows give the bits of contiguous tensors",
          "[gpu][prefill][strided]") {
  std::vector<CaseSpec> specs;
  CaseSpec decode;  // packed and split by the plan's rules
  decode.num_qo_heads = 8, decode.num_kv_heads = 2;
  decode.qo_lens = {1, 2}, decode.kv_lens = {4000, 900};
  decode.options.causal = decode.options.return_lse = true;
  specs.push_back(decode);
  for (int i = 0; i < 6; ++i) {
    CaseSpec spec = random_spec(9700 + uint64_t(i));
    spec.options.return_lse = true;
    specs.push_back(spec);
  }
  int checked = 0;
  for (const CaseSpec& spec : specs) {
    const HostCase c = make_case(spec);
    if (!built_here(c) || c.num_q_tokens == 0) continue;
    const int64_t row = int64_t(c.config.num_qo_heads) * c.config.head_dim;
    const int64_t q_stride = row + 2 * int64_t(c.config.num_kv_heads) * c.config.head_dim;  // [q | k | v] per token
    const int64_t o_stride = row + 64;
    const size_t row_bytes = size_t(row) * sizeof(uint16_t);
    DevicePrefillCase device(c);
    DeviceBuffer qkv(size_t(c.num_q_tokens * q_stride) * sizeof(uint16_t));
    DeviceBuffer o(size_t(c.num_q_tokens * o_stride) * sizeof(uint16_t));
    qkv.fill_u32(pattern::kQuietNaN);  // the k and v parts: never read as q
    PTXATTN_CUDA_CHECK(cudaMemcpy2D(qkv.get(), size_t(q_stride) * sizeof(uint16_t), c.q.data(), row_bytes, row_bytes,
                                    size_t(c.num_q_tokens), cudaMemcpyHostToDevice));
    for (KvLoadPath path : load_paths_for(c)) {
      INFO(load_path_name(path) << " | " << c.describe());
      const PrefillRun own = device.run(path, pollute_smem_nan);
      REQUIRE(own.status.ok());
      PrefillConfig config = c.config;
      config.load_path = path;
      PrefillPlan plan;
      REQUIRE(plan_prefill(config, c.indices(), plan).ok());
      o.fill_u32(pattern::kQuietNaN);
      device.lse().fill_u32(pattern::kQuietNaN);
      pollute_smem_nan();
      PrefillTensors tensors = device.tensors();
      tensors.q = qkv.get(), tensors.q_row_stride = q_stride;
      tensors.o = o.get(), tensors.o_row_stride = o_stride;
      const Status ran = run_prefill(plan, tensors, nullptr);
      INFO(ran.message);
      REQUIRE(ran.ok());
      PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
      const auto strided = download_vector<uint16_t>(o, size_t(c.num_q_tokens * o_stride));
      const auto lse = download_vector<float>(device.lse(), own.lse.size());
      int64_t differing = 0, padding_written = 0;
      const uint16_t fill[2] = {uint16_t(pattern::kQuietNaN & 0xFFFFu), uint16_t(pattern::kQuietNaN >> 16)};
      for (int64_t t = 0; t < c.num_q_tokens; ++t) {
        for (int64_t e = 0; e < row; ++e) differing += strided[t * o_stride + e] != own.out[t * row + e];
        for (int64_t e = row; e < o_stride; ++e) padding_written += strided[t * o_stride + e] != fill[e % 2];
      }
      CHECK(differing == 0);
      CHECK(padding_written == 0);
      CHECK(first_bit_difference(own.lse.data(), lse.data(), int64_t(lse.size())) == -1);
      ++checked;
    }
  }
  CHECK(checked > 0);
}

TEST_CASE("prefill: k and v as halves of one combined cache (pages or rows interleaved) give the bits of separate "
          "tensors", "[gpu][prefill][strided]") {
  std::vector<CaseSpec> specs;
  CaseSpec decode;  // packed and split by the plan's rules
  decode.num_qo_heads = 8, decode.num_kv_heads = 2;
  decode.qo_lens = {1, 2}, decode.kv_lens = {4000, 900};
  decode.options.causal = decode.options.return_lse = true;
  specs.push_back(decode);
  for (int i = 0; i < 8; ++i) {
    CaseSpec spec = random_spec(9800 + uint64_t(i));
    spec.options.return_lse = true;
    specs.push_back(spec);
  }
  int checked = 0;
  for (const CaseSpec& spec : specs) {
    const HostCase c = make_case(spec);
    if (!built_here(c) || c.num_q_tokens == 0 || c.num_kv_rows == 0) continue;
    const bool paged = c.config.kv_format == KvFormat::kPaged;
    // A page (paged) or a row (ragged) of k, then v's: FlashInfer's combined
    // cache; ragged rows also get 8 elements of padding after each pair.
    const int64_t unit = (paged ? int64_t(c.config.page_size) : 1) * c.config.num_kv_heads * c.config.head_dim;
    const int64_t stride = 2 * unit + (paged ? 0 : 8);
    const size_t unit_bytes = size_t(unit) * sizeof(uint16_t), stride_bytes = size_t(stride) * sizeof(uint16_t);
    DevicePrefillCase device(c);
    DeviceBuffer kv(size_t(c.num_kv_rows) * stride_bytes);
    kv.fill_u32(pattern::kQuietNaN);  // the padding: never read
    PTXATTN_CUDA_CHECK(cudaMemcpy2D(kv.get(), stride_bytes, c.k.data(), unit_bytes, unit_bytes,
                                    size_t(c.num_kv_rows), cudaMemcpyHostToDevice));
    PTXATTN_CUDA_CHECK(cudaMemcpy2D(static_cast<char*>(kv.get()) + unit_bytes, stride_bytes, c.v.data(), unit_bytes,
                                    unit_bytes, size_t(c.num_kv_rows), cudaMemcpyHostToDevice));
    for (KvLoadPath path : load_paths_for(c)) {
      INFO(load_path_name(path) << " | " << c.describe() << " | kv_stride " << stride);
      const PrefillRun own = device.run(path, pollute_smem_nan);
      REQUIRE(own.status.ok());
      PrefillConfig config = c.config;
      config.load_path = path;
      PrefillPlan plan;
      REQUIRE(plan_prefill(config, c.indices(), plan).ok());
      device.out().fill_u32(pattern::kQuietNaN);
      device.lse().fill_u32(pattern::kQuietNaN);
      pollute_smem_nan();
      PrefillTensors tensors = device.tensors();
      tensors.k = kv.get(), tensors.v = static_cast<const char*>(kv.get()) + unit_bytes;
      tensors.kv_stride = stride;
      const Status ran = run_prefill(plan, tensors, nullptr);
      INFO(ran.message);
      REQUIRE(ran.ok());
      PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
      const auto out = download_vector<uint16_t>(device.out(), own.out.size());
      const auto lse = download_vector<float>(device.lse(), own.lse.size());
      CHECK(first_bit_difference(own.out.data(), out.data(), int64_t(out.size())) == -1);
      CHECK(first_bit_difference(own.lse.data(), lse.data(), int64_t(lse.size())) == -1);
      ++checked;
    }
  }
  CHECK(checked > 0);
}

TEST_CASE("prefill: the page table at run is required, and refused where the plan holds its own",
          "[gpu][prefill][device-page-table]") {
  CaseSpec spec;
  spec.qo_lens = {3}, spec.kv_lens = {40};
  const HostCase c = make_case(spec);
  DevicePrefillCase device(c);
  const PrefillPlan without = plan_without_host_table(c, KvLoadPath::kAuto);
  const Status missing = run_prefill(without, device.tensors(), nullptr);
  CHECK(missing.code == StatusCode::kInvalidArgument);
  CHECK_THAT(missing.message, Catch::Contains("tensors.kv_indices is null"));
  PrefillPlan with;
  REQUIRE(plan_prefill(c.config, c.indices(), with).ok());
  DeviceBuffer table = upload_vector(c.kv_indices);
  PrefillTensors tensors = device.tensors();
  tensors.kv_indices = table.as<int32_t>();
  const Status both = run_prefill(with, tensors, nullptr);
  CHECK(both.code == StatusCode::kInvalidArgument);
  CHECK_THAT(both.message, Catch::Contains("must be null: the plan was made with host indices.kv_indices"));
  CHECK(check_page_table_errors(with, nullptr).ok());
}

}  // namespace ptxattn::testing
