// Prefill benchmarks: W1 and W2 of docs/benchmarks.md, plus head_dim 64
// and 256, GQA 32/8 and the gather-path page sizes 1 and 7 on W1 shapes;
// forced schedules, load paths and KV blocks beside the library's choices;
// and the decode rows (qo_len 1 and 4 over long paged KV), which also count
// the K/V read bandwidth.
//
// Nothing is timed before it is checked, in this binary, in this run:
//  1. validation: the same PrefillConfig, load path and KV block on a case small enough
//     for the CPU references (first two requests, kv_len capped, qo_len
//     scaled with it), run after every SM's shared memory was filled with NaN,
//     compared with compare_prefill's derived tolerances;
//  2. the full-size case itself, run once: its output must be finite (the
//     generator poisons every slot no request owns with NaN/Inf), and must agree
//     with the first storage of the same workload run earlier (ragged and every
//     paged variant hold the same logical K/V, so they must give the same O).
// Counters: TFLOP/s as docs/benchmarks.md defines it (unmasked score entries only).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.hpp"
#include "prefill_params.hpp"  // kWideBlockKV
#include "ptxattn/ptxattn.hpp"
#include "reference/compare.hpp"
#include "reference/numeric.hpp"
#include "reference/testdata.hpp"
#include "tests/common/gpu_test.hpp"
#include "tests/common/prefill_runner.hpp"

namespace ptxattn::bench {
namespace {

using testing::CaseSpec;
using testing::HostCase;

// Validation case size: two requests, kv_len at most 1000 (a multiple of no
// tile or page size used here, so last tiles and pages are partial).
constexpr size_t kValidationRequests = 2;
constexpr int32_t kValidationMaxKvLen = 1000;
// Two storages of one workload may round differently only where their KV
// tiles split the softmax differently: a few ulps of outputs bounded by 1.
constexpr double kCrossStorageTolerance = 1.0 / 64;

struct PrefillBenchmark {
  std::string workload;  // what the output depends on: "W1/S:4096/causal"
  std::string storage;   // "ragged", "paged16", "paged64-gather" (a forced path), "ragged-wide" (a forced block), ...
  CaseSpec spec;
  KvLoadPath path = KvLoadPath::kAuto;
  WorkSchedule schedule = WorkSchedule::kAuto;
  KvBlock kv_block = KvBlock::kAuto;
  int32_t kv_splits = 0;  // config.kv_splits: 0 the plan's rule
  GqaPacking gqa_packing = GqaPacking::kAuto;
};

std::string storage_name(int32_t page_size) { return page_size > 0 ? "paged" + std::to_string(page_size) : "ragged"; }
std::string mask_name(bool causal) { return causal ? "causal" : "full"; }

// W1-shaped spec (16384 query tokens, qo_len = kv_len = seq_len) with other heads / head_dim.
CaseSpec w1_like_spec(int32_t seq_len, bool causal, int32_t page_size, int32_t qo_heads, int32_t kv_heads,
                      int32_t head_dim) {
  CaseSpec spec = testing::w1_spec(seq_len, causal, page_size);
  spec.num_qo_heads = qo_heads;
  spec.num_kv_heads = kv_heads;
  spec.head_dim = head_dim;
  return spec;
}

// Decode and speculative verification (docs/benchmarks.md, the decode rows
// of compare.py): `requests` requests of qo_len queries over kv_len keys,
// 32/8 heads, D 128, bf16, pages of 16, causal.
CaseSpec decode_spec(int32_t qo_len, int32_t kv_len, int32_t requests) {
  CaseSpec spec = testing::w2_spec();
  spec.qo_lens.assign(size_t(requests), qo_len);
  spec.kv_lens.assign(size_t(requests), kv_len);
  return spec;
}

bool is_decode(const PrefillBenchmark& bench) { return bench.workload.rfind("decode/", 0) == 0; }

std::vector<PrefillBenchmark> prefill_benchmarks() {
  std::vector<PrefillBenchmark> list;
  auto add = [&](const std::string& family, const std::string& shape, const CaseSpec& spec) {
    list.push_back({family + "/" + shape, storage_name(spec.format == KvFormat::kPaged ? spec.page_size : 0), spec});
  };
  for (int32_t seq_len = 512; seq_len <= 16384; seq_len *= 2) {
    for (bool causal : {false, true}) {
      const std::string shape = "S:" + std::to_string(seq_len) + "/" + mask_name(causal);
      for (int32_t page_size : {0, 16, 64}) add("W1", shape, testing::w1_spec(seq_len, causal, page_size));
    }
  }
  // W2 in every storage engines use: ragged, the gather path's pages of 1 (SGLang), 7 and 16 (vLLM), TMA pages of 64.
  for (int32_t page_size : {0, 1, 7, 16, 64}) {
    CaseSpec spec = testing::w2_spec();
    if (page_size == 0) spec.format = KvFormat::kRagged;
    spec.page_size = page_size;
    add("W2", "causal", spec);
  }
  for (int32_t head_dim : {64, 256}) {
    for (int32_t seq_len : {1024, 8192}) {
      for (bool causal : {false, true}) {
        for (int32_t page_size : {0, 16})
          add("D" + std::to_string(head_dim), "S:" + std::to_string(seq_len) + "/" + mask_name(causal),
              w1_like_spec(seq_len, causal, page_size, 16, 16, head_dim));
      }
    }
  }
  for (int32_t seq_len : {1024, 8192}) {
    for (bool causal : {false, true}) {
      for (int32_t page_size : {0, 16})
        add("GQA32-8", "S:" + std::to_string(seq_len) + "/" + mask_name(causal),
            w1_like_spec(seq_len, causal, page_size, 32, 8, 128));
    }
  }
  // Page sizes the TMA path cannot serve (gather path), on a W1 shape.
  for (int32_t page_size : {1, 7}) {
    for (bool causal : {false, true}) add("W1", "S:4096/" + mask_name(causal), testing::w1_spec(4096, causal, page_size));
  }
  struct DecodeShape {
    int32_t qo_len, kv_len, requests;
  };
  for (const DecodeShape& d : {DecodeShape{1, 32768, 64}, DecodeShape{1, 131072, 1}, DecodeShape{4, 8192, 128}}) {
    add("decode", "qo:" + std::to_string(d.qo_len) + "/kv:" + std::to_string(d.kv_len) + "/B:" + std::to_string(d.requests),
        decode_spec(d.qo_len, d.kv_len, d.requests));
    // Split-KV off ("-unsplit", on the shape the rule splits) and GQA
    // packing off ("-token-major") beside the plan's rules.
    const PrefillBenchmark chosen = list.back();
    if (d.requests == 1) {
      PrefillBenchmark unsplit = chosen;
      unsplit.storage += "-unsplit";
      unsplit.kv_splits = 1;
      list.push_back(unsplit);
    }
    PrefillBenchmark token_major = chosen;
    token_major.storage += "-token-major";
    token_major.gqa_packing = GqaPacking::kOff;
    list.push_back(token_major);
  }
  // W2 (GQA 32/8, query lengths that leave partial tiles) with packing forced each way.
  for (GqaPacking packing : {GqaPacking::kOff, GqaPacking::kOn}) {
    PrefillBenchmark forced{"W2/causal", packing == GqaPacking::kOn ? "paged16-packed" : "paged16-token-major",
                            testing::w2_spec()};
    forced.gqa_packing = packing;
    list.push_back(forced);
  }
  // The schedules, each forced, beside the default rows on shapes of every
  // family ("-one-item-per-cta", "-persistent" and "-dynamic" rows).
  const std::vector<PrefillBenchmark> defaults = list;
  for (const PrefillBenchmark& bench : defaults) {
    const bool w1 = bench.workload.rfind("W1/", 0) == 0;
    if (is_decode(bench)) continue;  // its host data alone is gigabytes: the default schedule only
    if (bench.gqa_packing != GqaPacking::kAuto) continue;  // the packing rows: the default schedule only
    if (!(bench.storage == "paged16" || (w1 && bench.storage == "ragged") || bench.workload == "W2/causal")) continue;
    for (WorkSchedule schedule : {WorkSchedule::kOneItemPerCta, WorkSchedule::kPersistent, WorkSchedule::kDynamic}) {
      PrefillBenchmark forced = bench;
      forced.storage += schedule == WorkSchedule::kPersistent ? "-persistent"
                        : schedule == WorkSchedule::kDynamic  ? "-dynamic"
                                                              : "-one-item-per-cta";
      forced.schedule = schedule;
      list.push_back(forced);
    }
  }
  // The load-path threshold: pages both paths can serve, each path forced.
  for (int32_t page_size : {32, 64, 128}) {
    for (KvLoadPath path : {KvLoadPath::kGather, KvLoadPath::kTma}) {
      const std::string suffix = std::string("-") + testing::load_path_name(path);
      CaseSpec w2 = testing::w2_spec();
      w2.page_size = page_size;
      list.push_back({"W2/causal", storage_name(page_size) + suffix, w2, path});
      list.push_back({"W1/S:4096/full", storage_name(page_size) + suffix, testing::w1_spec(4096, false, page_size), path});
    }
  }
  // The KV blocks, each forced, on every W1 shape that can take the wide
  // block (ragged, full mask): where the wide block starts to pay.
  for (int32_t seq_len = 512; seq_len <= 16384; seq_len *= 2) {
    for (KvBlock kv_block : {KvBlock::kStandard, KvBlock::kWide}) {
      PrefillBenchmark forced{"W1/S:" + std::to_string(seq_len) + "/full",
                              kv_block == KvBlock::kWide ? "ragged-wide" : "ragged-standard",
                              testing::w1_spec(seq_len, false, 0)};
      forced.kv_block = kv_block;
      list.push_back(forced);
    }
  }
  return list;
}

// docs/benchmarks.md: 4 · H_qo · D · pairs per request; pairs = qo·kv (full) or
// qo·(kv - qo) + qo(qo + 1)/2 (causal, bottom-right aligned).
double attention_flops(const HostCase& c) {
  double flops = 0.0;
  for (int32_t b = 0; b < c.num_requests(); ++b) {
    const double qo = c.qo_indptr[b + 1] - c.qo_indptr[b];
    const double kv = double(c.kv_len(b));
    const double pairs = c.config.options.causal ? qo * (kv - qo) + qo * (qo + 1) / 2 : qo * kv;
    flops += 4.0 * c.config.num_qo_heads * c.config.head_dim * pairs;
  }
  return flops;
}

CaseSpec validation_spec(const CaseSpec& timed) {
  CaseSpec spec = timed;
  const size_t count = std::min(timed.qo_lens.size(), kValidationRequests);
  spec.qo_lens.assign(timed.qo_lens.begin(), timed.qo_lens.begin() + count);
  spec.kv_lens.assign(timed.kv_lens.begin(), timed.kv_lens.begin() + count);
  for (size_t i = 0; i < count; ++i) {
    if (spec.kv_lens[i] <= kValidationMaxKvLen) continue;
    const double shrink = double(kValidationMaxKvLen) / spec.kv_lens[i];
    spec.qo_lens[i] = std::max<int32_t>(1, int32_t(std::lround(spec.qo_lens[i] * shrink)));
    spec.kv_lens[i] = kValidationMaxKvLen;
  }
  return spec;
}

// Runs the validation case of `timed` on `path`, `schedule`, `kv_block`,
// `kv_splits` and `gqa_packing` (once per distinct combination in this
// process) and returns "" on a pass, else what failed.
std::string validate(const CaseSpec& timed, KvLoadPath path, WorkSchedule schedule, KvBlock kv_block,
                     int32_t kv_splits, GqaPacking gqa_packing, std::string* summary) {
  static std::map<std::string, std::pair<std::string, std::string>> verdicts;  // key -> (error, summary)
  const HostCase host = testing::make_case(validation_spec(timed));
  const std::string key = host.describe() + " path=" + testing::load_path_name(path) +
                          " schedule=" + std::to_string(int(schedule)) + " kv_block=" + std::to_string(int(kv_block)) +
                          " kv_splits=" + std::to_string(kv_splits) + " gqa_packing=" + std::to_string(int(gqa_packing));
  if (const auto it = verdicts.find(key); it != verdicts.end()) {
    *summary = it->second.second;
    return it->second.first;
  }
  std::string error;
  testing::DevicePrefillCase device(host);
  const testing::PrefillRun run =
      device.run(path, [] { testing::pollute_shared_memory(testing::pattern::kQuietNaN); }, {schedule, 0, ""},
                 kv_block, kv_splits, gqa_packing);
  if (!run.status.ok()) {
    error = "validation run failed: " + run.status.message;
  } else if (run.path != path) {
    error = std::string("validation case took the ") + testing::load_path_name(run.path) + " path, not " +
            testing::load_path_name(path);
  } else {
    const testing::CompareResult result =
        testing::compare_prefill(host, testing::compute_references(host), run.out.data(), run.lse_or_null());
    *summary = result.summary();
    if (!result.pass) error = "validation failed on " + host.describe() + ": " + result.summary();
  }
  verdicts[key] = {error, *summary};
  return error;
}

int64_t count_nonfinite(const std::vector<uint16_t>& bits, DType dtype) {
  int64_t count = 0;
  for (uint16_t b : bits) count += std::isfinite(ref::to_float(b, dtype)) ? 0 : 1;
  return count;
}

// The first full-size output of each workload, to check the other storages against.
std::map<std::string, std::vector<uint16_t>>& first_outputs() {
  static std::map<std::string, std::vector<uint16_t>> outputs;
  return outputs;
}

// One timed case: host data, device buffers and the plan, kept for all the
// calls Google Benchmark makes for one benchmark (only the latest is kept).
struct PreparedCase {
  std::string name;
  HostCase host;
  std::unique_ptr<testing::DevicePrefillCase> device;  // refers to host
  PrefillPlan plan;
  std::string error;  // why it must not be timed ("" = checked)
  std::string label;
  double flops = 0.0;
  size_t bytes = 0;     // q, k, v, o
  double kv_bytes = 0;  // K and V of every request's kv_len, each read once
};

std::string check_full_size_output(const PrefillBenchmark& bench, PreparedCase& c) {
  const Status status = run_prefill(c.plan, c.device->tensors(), bench_stream());
  if (!status.ok()) return "full-size run failed: " + status.message;
  PTXATTN_CUDA_CHECK(cudaStreamSynchronize(bench_stream()));
  std::vector<uint16_t> out = testing::download_vector<uint16_t>(c.device->out(), c.host.q.size());
  const DType dtype = c.host.config.dtype;
  if (const int64_t bad = count_nonfinite(out, dtype); bad > 0) {
    return "full-size output has " + std::to_string(bad) + " non-finite values";
  }
  auto [it, first] = first_outputs().try_emplace(bench.workload, std::move(out));
  if (first) {
    c.label += "; first storage of " + bench.workload;
    return {};
  }
  const std::vector<uint16_t>& reference = it->second;
  double max_diff = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(ref::to_double(out[i], dtype) - ref::to_double(reference[i], dtype)));
  }
  char text[96];
  std::snprintf(text, sizeof(text), "; max|O - first storage| = %.3g", max_diff);
  c.label += text;
  if (max_diff > kCrossStorageTolerance) {
    return "full-size output differs from the first storage of " + bench.workload + " by " + std::to_string(max_diff);
  }
  return {};
}

PreparedCase& prepare(const std::string& name, const PrefillBenchmark& bench) {
  static std::unique_ptr<PreparedCase> latest;
  if (latest && latest->name == name) return *latest;
  latest.reset();  // free the previous case's device memory first
  latest = std::make_unique<PreparedCase>();
  PreparedCase& c = *latest;
  c.name = name;
  c.host = testing::make_case(bench.spec);
  c.flops = attention_flops(c.host);
  for (int32_t b = 0; b < c.host.num_requests(); ++b)
    c.kv_bytes += 2.0 * c.host.kv_len(b) * c.host.config.num_kv_heads * c.host.config.head_dim * 2;
  c.bytes = 2 * (c.host.q.size() * 2 + c.host.k.size() + c.host.v.size());

  PrefillConfig config = c.host.config;
  config.load_path = bench.path;
  config.schedule = bench.schedule;
  config.kv_block = bench.kv_block;
  config.kv_splits = bench.kv_splits;
  config.gqa_packing = bench.gqa_packing;
  if (const Status status = plan_prefill(config, c.host.indices(), c.plan); !status.ok()) {
    c.error = std::string(status_code_name(status.code)) + ": " + status.message;
    return c;
  }
  const KvLoadPath path = c.plan.chosen_load_path();
  // The validation case is shorter: it must walk the timed plan's block and
  // chunk count (its longest tile's, forced on every tile: the rule's
  // counts per tile are the GPU tests' to check), whatever kAuto would take
  // there.
  const KvBlock block = c.plan.chosen_block_kv() == detail::kWideBlockKV ? KvBlock::kWide : KvBlock::kStandard;
  const int32_t splits = c.plan.chosen_kv_splits();
  const GqaPacking packing = c.plan.chosen_tile_heads() > 1 ? GqaPacking::kOn : GqaPacking::kOff;
  std::string summary;
  c.error = validate(bench.spec, path, bench.schedule, block, splits, packing, &summary);
  if (!c.error.empty()) return c;
  c.label = std::string("path=") + testing::load_path_name(path) +
            "; KV block " + std::to_string(c.plan.chosen_block_kv()) +
            (splits > 1 ? "; " + std::to_string(splits) + " KV chunks" : std::string()) +
            (c.plan.chosen_tile_heads() > 1 ? "; " + std::to_string(c.plan.chosen_tile_heads()) + " heads per tile"
                                            : std::string()) +
            (c.plan.chosen_schedule() == WorkSchedule::kPersistent ? "; persistent on " + std::to_string(c.plan.num_ctas()) + " CTAs"
             : c.plan.chosen_schedule() == WorkSchedule::kDynamic ? "; dynamic on " + std::to_string(c.plan.num_ctas()) + " CTAs"
                                                                 : std::string("; one item per CTA")) +
            "; validated: " + summary;

  c.device = std::make_unique<testing::DevicePrefillCase>(c.host);
  c.error = check_full_size_output(bench, c);
  return c;
}

void run_prefill_benchmark(benchmark::State& state, const std::string& name, const PrefillBenchmark& bench) {
  PreparedCase& c = prepare(name, bench);
  if (!c.error.empty()) {
    state.SkipWithError(c.error.c_str());
    return;
  }
  const PrefillTensors tensors = c.device->tensors();
  const std::vector<double> seconds = time_iterations(
      state, [&](cudaStream_t stream) { return run_prefill(c.plan, tensors, stream); }, !fits_in_l2(c.bytes));
  if (state.error_occurred()) return;
  set_flop_counters(state, seconds, c.flops);
  if (is_decode(bench)) set_bandwidth_counters(state, seconds, c.kv_bytes);  // GB/s here: K/V read
  state.SetLabel(c.label);
}

[[maybe_unused]] const bool registered = [] {
  for (const PrefillBenchmark& bench : prefill_benchmarks()) {
    const std::string name = "prefill/" + bench.workload + "/" + bench.storage;
    benchmark::RegisterBenchmark(name.c_str(), run_prefill_benchmark, name, bench)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace
}  // namespace ptxattn::bench
