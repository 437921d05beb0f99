// GPU tests of batch prefill against the Eigen reference. Before every run the
// shared memory of every SM is filled with NaN and the outputs are poisoned
// (tests/common/prefill_runner.hpp), and every generated case carries NaN/Inf
// in each unused pool slot and last-page tail, so no case passes on clean memory.
#include <catch2/catch.hpp>

#include <cuda_runtime_api.h>

#include <cstdio>
#include <future>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/compare.hpp"
#include "reference/testdata.hpp"
#include "tests/common/gpu_test.hpp"
#include "tests/common/prefill_runner.hpp"

namespace ptxattn::testing {
namespace {

constexpr int kRandomCases = 520;

void pollute_smem_nan() { pollute_shared_memory(pattern::kQuietNaN); }

// Runs `c` through every path it supports, compares each against the
// references and the paths against each other (same bits: the masked K rows
// differ between paths, nothing else may). Returns "" or a failure report.
std::string check_case(const HostCase& c, const References& refs) {
  DevicePrefillCase device(c);
  std::string failures;
  std::vector<uint16_t> first_out;
  for (KvLoadPath path : load_paths_for(c)) {
    PrefillRun run = device.run(path, pollute_smem_nan);
    if (!run.status.ok()) {
      failures += std::string(load_path_name(path)) + ": " + run.status.message + "\n";
      continue;
    }
    const CompareResult r = compare_prefill(c, refs, run.out.data(), run.lse.data());
    if (!r.pass) failures += std::string(load_path_name(path)) + ": " + r.summary() + "\n";
    if (first_out.empty()) {
      first_out = run.out;
    } else if (const int64_t at = first_bit_difference(first_out.data(), run.out.data(), int64_t(run.out.size()));
               at >= 0) {
      failures += "gather and tma outputs differ first at element " + std::to_string(at) + "\n";
    }
  }
  return failures;
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
  int failed = 0, paths_run = 0;
  // The references of case i+1 are computed on the CPU while case i runs on the GPU.
  auto make = [](int i) {
    HostCase c = make_case(random_spec(1000 + uint64_t(i), suite_limits(i)));
    References refs = compute_references(c);
    return std::make_pair(std::move(c), std::move(refs));
  };
  auto next = std::async(std::launch::async, make, 0);
  for (int i = 0; i < kRandomCases; ++i) {
    auto [c, refs] = next.get();
    if (i + 1 < kRandomCases) next = std::async(std::launch::async, make, i + 1);
    paths_run += int(load_paths_for(c).size());
    const std::string failure = check_case(c, refs);
    if (!failure.empty()) {
      ++failed;
      UNSCOPED_INFO("case " << i << ": " << c.describe() << "\n" << failure);
      std::printf("FAILED case %d: %s\n%s", i, c.describe().c_str(), failure.c_str());
    }
    if ((i + 1) % 100 == 0) std::printf("prefill random suite: %d of %d cases done, %d failed\n", i + 1, kRandomCases, failed);
    std::fflush(stdout);
  }
  std::printf("prefill random suite: %d cases, %d runs (case x load path), %d failed\n", kRandomCases, paths_run,
              failed);
  CHECK(failed == 0);
}

TEST_CASE("prefill: NaN in the unused tail of the last page never reaches the output", "[gpu][prefill][tail]") {
  // The FA3 failure of anchors.md: paged, causal, kv_len 1000 (not a multiple
  // of the page), NaN/Inf in the tail slots; TMA pages of 128 and 256, and the
  // gather path, with K/V rows past the end landing in the last block.
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
  const HostCase c = make_case(w2_spec(5));
  DevicePrefillCase device(c);
  for (KvLoadPath path : load_paths_for(c)) {
    const PrefillRun first = device.run(path, pollute_smem_nan);
    REQUIRE(first.status.ok());
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
    CHECK(compare_prefill(c, refs, seeded.out.data(), seeded.lse.data()).pass);
    CHECK(first_bit_difference(clean.out.data(), seeded.out.data(), int64_t(clean.out.size())) == -1);
  }
}

TEST_CASE("prefill: a run captured in a CUDA graph replays correctly", "[gpu][prefill][graph]") {
  const HostCase c = make_case(random_spec(4242));
  const References refs = compute_references(c);
  DevicePrefillCase device(c);
  PrefillConfig config = c.config;
  config.options.return_lse = true;
  PrefillPlan plan;
  REQUIRE(plan_prefill(config, c.indices(), plan).ok());

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

}  // namespace ptxattn::testing
