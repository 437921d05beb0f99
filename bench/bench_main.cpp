// ptxattn-bench: Google Benchmark main of the prefill (bench_prefill.cpp) and
// RoPE / cache-append (bench_rope.cpp) benchmarks. docs/benchmarks.md says
// how to run it; `--benchmark_format=json` output is the raw record.
//
// The run's context (GPU, CUDA versions, the same-run device copy bandwidth
// that every %copy counter divides by, and $PTXATTN_COMMIT when set) is added
// to Google Benchmark's context block, so a JSON file describes its own run.
// Without an SM90 GPU nothing can be timed: only --benchmark_list_tests works,
// anything else exits with status 1 and says why.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bench/bench_util.hpp"
#include "tests/common/gpu_test.hpp"

namespace {

bool only_listing(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_list_tests", std::strlen("--benchmark_list_tests")) == 0 &&
        std::strcmp(argv[i], "--benchmark_list_tests=false") != 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const bool listing = only_listing(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  if (!listing) {
    std::string why;
    if (!ptxattn::testing::have_sm90_gpu(&why)) {
      std::fprintf(stderr, "ptxattn-bench: needs an SM90 GPU, found none (%s): nothing timed\n", why.c_str());
      return 1;
    }
    benchmark::AddCustomContext("device", ptxattn::bench::describe_device());
    char copy[32];
    std::snprintf(copy, sizeof(copy), "%.1f", ptxattn::bench::device_copy_bandwidth() * 1e-9);
    benchmark::AddCustomContext("device_copy_GB/s", copy);
    const char* commit = std::getenv("PTXATTN_COMMIT");
    benchmark::AddCustomContext("ptxattn_commit", commit != nullptr ? commit : "unknown");
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
