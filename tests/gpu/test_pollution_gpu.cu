// The pollution matrix (docs/validation.md "Pollution matrix"): every case
// runs three times on scrubbed state (zeros in every SM's shared memory and
// registers) and must give the same bits each time and match the reference;
// then once per polluter pattern (tests/common/polluters.hpp), and each run
// must give exactly the clean bits, with no NaN or Inf. Matrix cases keep
// finite values in their unused K/V slots, so the clean run is clean and the
// cache-slots polluter alone brings the poison: the final table then names
// the polluter that exposes a bug (scripts/inject_bugs.sh reads it).
//
// Also here: "sanitizer cases", a handful of tiny launches of every kernel
// for scripts/sanitize.sh (compute-sanitizer), run without polluters.
#include <catch2/catch.hpp>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/compare.hpp"
#include "reference/numeric.hpp"
#include "reference/rope.hpp"
#include "reference/testdata.hpp"
#include "tests/common/gpu_test.hpp"
#include "tests/common/polluters.hpp"
#include "tests/common/prefill_runner.hpp"
#include "tests/common/rope_data.hpp"

namespace ptxattn::testing {
namespace {

using ref::Rounding;

// ============================================================================
// The report: one row per check (clean, determinism, each polluter), counting
// the (case x load path) units that passed, failed, or to which the row does
// not apply. A unit fails a polluter row when any of its patterns fails.
// ============================================================================

constexpr int kPrintedFailuresPerRow = 8;

class MatrixReport {
 public:
  explicit MatrixReport(std::string suite) : suite_(std::move(suite)) {
    order_ = {"clean", "determinism"};
    for (Polluter p : all_polluters()) order_.push_back(polluter_name(p));
  }

  void record(const std::string& row, const std::string& unit, const std::string& failure) {
    Tally& t = rows_[row];
    if (failure.empty()) {
      ++t.passed;
      return;
    }
    ++t.failed;
    if (t.failed <= kPrintedFailuresPerRow)
      std::printf("POLLUTION FAIL [%s] row %s | %s\n  %s\n", suite_.c_str(), row.c_str(), unit.c_str(),
                  failure.c_str());
    else if (t.failed == kPrintedFailuresPerRow + 1)
      std::printf("POLLUTION FAIL [%s] row %s | further failures of this row not printed\n", suite_.c_str(),
                  row.c_str());
  }
  void not_applicable(const std::string& row) { ++rows_[row].not_applicable; }

  int64_t failures() const {
    int64_t n = 0;
    for (const auto& [row, t] : rows_) n += t.failed;
    return n;
  }

  // The table, then one line scripts/inject_bugs.sh greps:
  //   "pollution matrix: <suite>: failing rows: none" or "... smem(12) cache-slots(3)".
  void print(const std::string& header) const {
    std::printf("pollution matrix: %s: %s\n", suite_.c_str(), header.c_str());
    std::printf("  %-12s %7s %7s %7s\n", "row", "passed", "failed", "n/a");
    std::string failing;
    for (const std::string& row : order_) {
      const auto it = rows_.find(row);
      const Tally t = it == rows_.end() ? Tally{} : it->second;
      std::printf("  %-12s %7d %7d %7d\n", row.c_str(), t.passed, t.failed, t.not_applicable);
      if (t.failed > 0) failing += (failing.empty() ? "" : " ") + row + "(" + std::to_string(t.failed) + ")";
    }
    std::printf("pollution matrix: %s: failing rows: %s\n", suite_.c_str(), failing.empty() ? "none" : failing.c_str());
    std::fflush(stdout);
  }

 private:
  struct Tally {
    int passed = 0, failed = 0, not_applicable = 0;
  };
  std::string suite_;
  std::vector<std::string> order_;
  std::map<std::string, Tally> rows_;
};

// Runs `run_one` and turns an exception (a CUDA error: the helpers throw) into
// its failure, so the table still names the row where things went wrong.
std::string failure_of(const std::function<std::string()>& run_one) {
  try {
    return run_one();
  } catch (const std::exception& e) {
    return std::string("exception: ") + e.what();
  }
}

// Runs `polluter` once per pattern; `run_one(seed)` returns "" or a failure.
// Returns the failures of all patterns ("" when every pattern passed).
std::string run_every_pattern(Polluter polluter, const std::function<std::string(uint64_t)>& run_one) {
  std::string failures;
  for (int seed = 0; seed < polluter_variants(polluter); ++seed) {
    const std::string failure = failure_of([&] { return run_one(uint64_t(seed)); });
    if (!failure.empty())
      failures += (failures.empty() ? "" : "\n  ") + polluter_variant_name(polluter, seed) + ": " + failure;
  }
  return failures;
}

// ============================================================================
// Prefill
// ============================================================================

std::vector<CaseSpec> prefill_matrix_specs() {
  const DType bf16 = DType::kBF16, fp16 = DType::kFP16;
  const KvLayout nhd = KvLayout::kNHD, hnd = KvLayout::kHND;
  using B = CaseSpecBuilder;
  std::vector<CaseSpec> specs = {
      // head_dim 128, bf16 first: the cases an injected-bug build (hd128 bf16 only) still runs.
      B(101, bf16, 128, 2, 1).paged(nhd, 16).lengths({37, 200}, {37, 333}).causal(),
      B(102, bf16, 128, 4, 1).paged(hnd, 7).lengths({1, 150}, {20, 1000}).causal(),
      B(103, bf16, 128, 2, 2).paged(nhd, 1).lengths({64}, {100}),
      B(104, bf16, 128, 2, 1).paged(hnd, 64).lengths({300, 5}, {1000, 70}).causal().window(100),
      // The FA3 failure of docs/kernels.md "State rules": page 128, causal, kv_len 1000.
      B(105, bf16, 128, 2, 1).paged(nhd, 128).lengths({1000, 37}, {1000, 501}).causal(),
      B(106, bf16, 128, 2, 2).paged(nhd, 256).lengths({129, 17}, {700, 17}).soft_cap(30.0f),
      B(107, bf16, 128, 8, 2).ragged().lengths({90, 0, 33}, {300, 0, 33}).causal(),
      B(108, bf16, 128, 4, 1).paged(nhd, 16).lengths({5, 1}, {5, 1}),  // one partial block per tile
      B(109, bf16, 128, 2, 1).paged(nhd, 7).lengths({128}, {131}).peaked(),
      B(110, bf16, 128, 2, 1).paged(nhd, 16).lengths({10, 20}, {0, 40}),  // rows without keys: LSE -inf
      B(111, bf16, 128, 8, 2).paged(nhd, 16).lengths({57, 210, 9}, {300, 400, 1000}).causal(),
      B(112, bf16, 128, 2, 1).paged(hnd, 32).lengths({1, 3}, {1000, 77}),
      B(113, bf16, 128, 2, 1).paged(hnd, 256).lengths({1000}, {1000}).causal(),
      B(114, bf16, 128, 2, 1).paged(nhd, 3).lengths({300}, {301}).causal(),
      // Other head dims and fp16.
      B(201, bf16, 64, 4, 2).paged(nhd, 7).lengths({200}, {513}).causal().window(30),
      B(202, fp16, 64, 2, 1).paged(hnd, 128).lengths({77, 128}, {300, 129}),
      B(203, fp16, 64, 4, 1).ragged().lengths({64, 1}, {64, 257}).causal().soft_cap(50.0f),
      B(204, bf16, 64, 2, 2).paged(hnd, 1).lengths({40}, {90}).window(5),
      B(301, bf16, 256, 2, 1).paged(nhd, 64).lengths({150, 3}, {150, 500}).causal(),
      B(302, fp16, 256, 2, 2).paged(hnd, 7).lengths({70}, {333}).causal().window(20),
      B(303, bf16, 256, 4, 2).ragged().lengths({65}, {130}).soft_cap(20.0f),
      B(304, fp16, 256, 2, 1).paged(nhd, 256).lengths({300}, {600}).causal(),
      B(401, fp16, 128, 4, 2).paged(hnd, 16).lengths({100, 100}, {250, 101}).causal().soft_cap(40.0f),
      B(402, fp16, 128, 2, 1).paged(nhd, 64).lengths({129}, {400}).sm_scale(0.05f).window(64),
  };
  for (CaseSpec& spec : specs) spec.poison_unused = false;  // the cache-slots polluter brings the poison
  return specs;
}

// Where element i of o ([token][head][dim]) or of lse ([token][head]) sits.
std::string describe_output_element(const HostCase& c, int64_t i, bool is_lse) {
  const int64_t heads = c.config.num_qo_heads, dims = is_lse ? 1 : c.config.head_dim;
  std::ostringstream s;
  s << (is_lse ? "lse" : "o") << "[token " << i / (heads * dims) << ", head " << (i / dims) % heads;
  if (!is_lse) s << ", dim " << i % dims;
  s << "]";
  return s.str();
}

std::string hex_bits(uint32_t bits, int width) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%0*X", width, bits);
  return text;
}

// "" when `run` has the clean run's bits; else where they first differ.
std::string bit_difference(const HostCase& c, const PrefillRun& clean, const PrefillRun& run) {
  const int64_t at = first_bit_difference(clean.out.data(), run.out.data(), int64_t(clean.out.size()));
  if (at >= 0)
    return "differs from the clean run first at " + describe_output_element(c, at, false) + ": clean " +
           hex_bits(clean.out[at], 4) + " (" + std::to_string(ref::to_double(clean.out[at], c.config.dtype)) +
           "), got " + hex_bits(run.out[at], 4) + " (" + std::to_string(ref::to_double(run.out[at], c.config.dtype)) +
           ")";
  const int64_t lse_at = first_bit_difference(clean.lse.data(), run.lse.data(), int64_t(clean.lse.size()));
  if (lse_at >= 0)
    return "differs from the clean run first at " + describe_output_element(c, lse_at, true) + ": clean " +
           std::to_string(clean.lse[lse_at]) + ", got " + std::to_string(run.lse[lse_at]);
  return "";
}

std::string reference_failure(const HostCase& c, const References& refs, const PrefillRun& run) {
  if (const std::string lse_failure = run.lse_contract_failure(); !lse_failure.empty()) return lse_failure;
  const CompareResult r = compare_prefill(c, refs, run.out.data(), run.lse_or_null());
  return r.pass ? "" : "against the reference: " + r.summary();
}

// One polluted run: bit-identical to the clean run and within tolerance of
// the reference (which also rules out NaN/Inf, except an LSE of -inf where
// the row has no visible key).
std::string polluted_run_failure(DevicePrefillCase& device, KvLoadPath path, const References& refs,
                                 const PrefillRun& clean, Polluter polluter, uint64_t seed) {
  const PrefillRun run = device.run(path, [&] { run_polluter(polluter, device, seed); });
  if (polluter == Polluter::kCacheSlots) restore_case_kv(device);
  if (!run.status.ok()) return "run failed: " + run.status.message;
  std::string failure = bit_difference(device.host(), clean, run);
  const std::string vs_reference = reference_failure(device.host(), refs, run);
  if (!vs_reference.empty()) failure += (failure.empty() ? "" : "; ") + vs_reference;
  return failure;
}

// Clean runs, then every polluter, for one case through one load path.
void run_prefill_unit(DevicePrefillCase& device, KvLoadPath path, const References& refs, MatrixReport& report) {
  const HostCase& c = device.host();
  const std::string unit = std::string(load_path_name(path)) + " | " + c.describe();
  std::vector<PrefillRun> clean(3);
  const std::string clean_failure = failure_of([&] {
    for (PrefillRun& run : clean) {
      run = device.run(path, scrub_gpu_state);
      if (!run.status.ok()) return "run failed: " + run.status.message;
    }
    return std::string();
  });
  if (!clean_failure.empty()) {
    report.record("clean", unit, clean_failure);
    return;
  }
  report.record("clean", unit, reference_failure(c, refs, clean[0]));
  std::string repeat_failure = bit_difference(c, clean[0], clean[1]);
  if (repeat_failure.empty()) repeat_failure = bit_difference(c, clean[0], clean[2]);
  report.record("determinism", unit, repeat_failure.empty() ? "" : "clean runs differ: " + repeat_failure);
  for (Polluter p : all_polluters())
    report.record(polluter_name(p), unit, run_every_pattern(p, [&](uint64_t seed) {
                    return polluted_run_failure(device, path, refs, clean[0], p, seed);
                  }));
}

TEST_CASE("pollution matrix: prefill", "[gpu][pollution]") {
  const std::vector<CaseSpec> specs = prefill_matrix_specs();
  MatrixReport report("prefill");
  int not_built = 0, units = 0;
  // The references of case i+1 are computed on the CPU while case i runs on the GPU.
  auto make = [&specs](size_t i) {
    auto c = std::make_unique<HostCase>(make_case(specs[i]));
    References refs;
    const bool built = validate_prefill_config(c->config).code != StatusCode::kUnsupported;
    if (built) refs = compute_references(*c);
    return std::make_tuple(std::move(c), std::move(refs), built);
  };
  auto next = std::async(std::launch::async, make, size_t(0));
  for (size_t i = 0; i < specs.size(); ++i) {
    auto [c, refs, built] = next.get();
    if (i + 1 < specs.size()) next = std::async(std::launch::async, make, i + 1);
    if (!built) {
      ++not_built;
      std::printf("pollution matrix: prefill: not built, skipped: %s\n", c->describe().c_str());
      continue;
    }
    try {
      DevicePrefillCase device(*c);
      for (KvLoadPath path : load_paths_for(*c)) {
        ++units;
        run_prefill_unit(device, path, refs, report);
      }
    } catch (const std::exception& e) {  // uploading the case failed: a CUDA error left by an earlier run
      report.record("clean", c->describe(), std::string("exception: ") + e.what());
    }
  }
  report.print(std::to_string(specs.size()) + " cases (" + std::to_string(not_built) +
               " not built in this configuration), " + std::to_string(units) + " case x load path units");
  CHECK(units > 0);
  CHECK(report.failures() == 0);
}

// ============================================================================
// RoPE family: apply_rope, apply_rope_with_cos_sin_cache, append_paged_kv_cache
// ============================================================================

// How a RoPE-family run starts: what every output element holds before the
// launch, and whether unused slots (of the paged cache, or of the cos/sin
// cache) get the cache-slots poison.
struct RopeRunSetup {
  uint32_t output_word = pattern::kQuietNaN;
  bool poison_slots = false;
  uint64_t slot_seed = 0;
};

// The 16-bit element `index` of a buffer filled with 32-bit `word`s (little endian).
uint16_t half_of_word(uint32_t word, size_t index) { return uint16_t(index % 2 == 0 ? word & 0xFFFFu : word >> 16); }

// Checks rows [rows][head_dim] of RoPE output against the kGpu reference.
// Dims >= rotary_dim must be bit copies of the input; rotated dims must be
// the reference's bits (exact_bits: the cos/sin-cache variant, whose cache
// is the GPU's own) or within a coarse bound of it: the GPU's cos/sin and its
// float products and fma are each within a few float ulps of the kGpu
// model's, so |got - ref| <= 2u·|ref| + (|a| + |b|)·2^-20 + σ for the pair
// (a, b). (tests/gpu/test_rope_gpu.cu holds the tight bound; here the clean
// bits are what matters.) Returns "" or the first bad element.
std::string check_rope_rows(const char* what, const uint16_t* got, const uint16_t* in, const double* ref_gpu,
                            int64_t rows, int32_t head_dim, int32_t rotary_dim, bool interleave, DType dtype,
                            bool exact_bits) {
  for (int64_t r = 0; r < rows; ++r)
    for (int32_t i = 0; i < head_dim; ++i) {
      const int64_t at = r * head_dim + i;
      const double value = ref::to_double(got[at], dtype);
      std::ostringstream bad;
      if (!std::isfinite(value)) {
        bad << "non-finite " << value;
      } else if (i >= rotary_dim || ref_gpu == nullptr) {
        if (got[at] != in[at])
          bad << "copied element: got " << hex_bits(got[at], 4) << ", input " << hex_bits(in[at], 4);
      } else if (exact_bits) {
        const uint16_t expected = ref::from_float(float(ref_gpu[at]), dtype);
        if (got[at] != expected) bad << "got " << hex_bits(got[at], 4) << ", reference " << hex_bits(expected, 4);
      } else {
        const int32_t partner = ref::rope_pair_partner(i, rotary_dim, interleave);
        const double pair =
            std::abs(ref::to_double(in[at], dtype)) + std::abs(ref::to_double(in[r * head_dim + partner], dtype));
        const double tol =
            2 * ref::unit_roundoff(dtype) * std::abs(ref_gpu[at]) + pair * 0x1p-20 + ref::subnormal_spacing(dtype);
        if (!(std::abs(value - ref_gpu[at]) <= tol)) bad << "got " << value << ", reference " << ref_gpu[at];
      }
      if (!bad.str().empty())
        return std::string(what) + " row " + std::to_string(r) + " dim " + std::to_string(i) + ": " + bad.str();
    }
  return "";
}

// One RoPE-family launch with its inputs on the device.
class RopeMatrixCase {
 public:
  virtual ~RopeMatrixCase() = default;
  virtual std::string describe() const = 0;
  // Whether the cache-slots polluter applies (there are slots no token uses).
  virtual bool has_unused_slots() const = 0;
  // Prepares the outputs as `setup` says, calls before_run, launches on the
  // default stream, synchronises and downloads.
  virtual Status run(const RopeRunSetup& setup, const std::function<void()>& before_run) = 0;
  // The bits the last run computed (what must not change between runs).
  virtual const std::vector<uint16_t>& result() const = 0;
  // "" when the last run matches the reference and left everything it must
  // not write as it was set up.
  virtual std::string check() const = 0;
};

struct ApplySpec {
  uint64_t seed = 1;
  DType dtype = DType::kBF16;
  int32_t head_dim = 128;
  int32_t num_qo_heads = 4;
  int32_t num_kv_heads = 2;
  int32_t num_tokens = 257;
  RopeConfig rope;
  bool use_indptr = false;      // positions from indptr + offsets, else pos_ids
  int32_t cache_positions = 0;  // > 0: apply_rope_with_cos_sin_cache with a cache of this many positions
};

// apply_rope, or apply_rope_with_cos_sin_cache (out of place).
class ApplyRopeCase final : public RopeMatrixCase {
 public:
  explicit ApplyRopeCase(const ApplySpec& spec) : spec_(spec) {
    std::mt19937 rng(uint32_t(spec.seed));
    const int32_t n = spec.num_tokens;
    q_ = random_values(size_t(n) * spec.num_qo_heads * spec.head_dim, spec.dtype, rng);
    k_ = random_values(size_t(n) * spec.num_kv_heads * spec.head_dim, spec.dtype, rng);
    // Requests of 0 to 60 tokens at offsets up to 2^20 (or inside the cache).
    const int32_t max_position = spec.cache_positions > 0 ? spec.cache_positions : (1 << 20);
    indptr_ = {0};
    while (indptr_.back() < n) {
      const int32_t len = std::min(n - indptr_.back(), int32_t(rng() % 61));
      offsets_.push_back(int32_t(rng() % uint32_t(max_position - len)));
      indptr_.push_back(indptr_.back() + len);
    }
    positions_ = ref::rope_positions_from_indptr(indptr_, offsets_);
    d_q_in_ = upload_vector(q_);
    d_k_in_ = upload_vector(k_);
    d_q_out_ = DeviceBuffer(q_.size() * sizeof(uint16_t));
    d_k_out_ = DeviceBuffer(k_.size() * sizeof(uint16_t));
    d_positions_ = upload_vector(positions_);
    d_indptr_ = upload_vector(indptr_);
    d_offsets_ = upload_vector(offsets_);
    if (spec.cache_positions > 0) {
      const int32_t rd = spec.rope.rotary_dim;
      d_cache_ = DeviceBuffer(size_t(spec.cache_positions) * rd * sizeof(float));
      const Status built = build_rope_cos_sin_cache(d_cache_.as<float>(), spec.cache_positions, rd, spec.rope, nullptr);
      if (!built.ok()) throw std::runtime_error("build_rope_cos_sin_cache: " + built.message);
      host_cache_ = download_vector<float>(d_cache_, size_t(spec.cache_positions) * rd);
    }
    for (int which = 0; which < 2; ++which) {
      const std::vector<float> x = decode(which == 0 ? q_ : k_, spec.dtype);
      const int32_t heads = which == 0 ? spec.num_qo_heads : spec.num_kv_heads;
      (which == 0 ? q_ref_ : k_ref_) =
          spec.cache_positions > 0 ? ref::apply_rope_with_cos_sin_cache(
                                         x, heads, spec.head_dim, positions_, host_cache_, spec.cache_positions,
                                         spec.rope.rotary_dim, spec.rope.interleave, Rounding::kGpu)
                                   : ref::apply_rope(x, heads, spec.head_dim, positions_, spec.rope, Rounding::kGpu);
    }
  }

  std::string describe() const override {
    std::ostringstream s;
    s << (spec_.cache_positions > 0 ? "apply_rope_with_cos_sin_cache" : "apply_rope") << " " << to_string(spec_.dtype)
      << " D " << spec_.head_dim << " rotary_dim " << spec_.rope.rotary_dim
      << (spec_.rope.interleave ? " GPT-J" : " NeoX") << (spec_.rope.llama31 ? " llama31" : "") << " heads "
      << spec_.num_qo_heads << "/" << spec_.num_kv_heads << " tokens " << spec_.num_tokens
      << (spec_.use_indptr && spec_.cache_positions == 0 ? " indptr+offsets" : " pos_ids");
    return s.str();
  }

  bool has_unused_slots() const override { return spec_.cache_positions > 0; }

  Status run(const RopeRunSetup& setup, const std::function<void()>& before_run) override {
    d_q_out_.fill_u32(setup.output_word);
    d_k_out_.fill_u32(setup.output_word);
    if (spec_.cache_positions > 0) {
      std::vector<float> cache = host_cache_;
      if (setup.poison_slots) {  // NaN/Inf in every cache row no token reads
        const std::set<int32_t> used(positions_.begin(), positions_.end());
        const size_t rd = size_t(spec_.rope.rotary_dim);
        for (size_t i = 0; i < cache.size(); ++i)
          if (used.count(int32_t(i / rd)) == 0)
            cache[i] = ref::float_from_bits(float_slot_poison(int64_t(i), setup.slot_seed));
      }
      d_cache_.upload(cache.data(), cache.size() * sizeof(float));
    }
    RopeTensors t;
    t.dtype = spec_.dtype;
    t.head_dim = spec_.head_dim;
    t.num_qo_heads = spec_.num_qo_heads;
    t.num_kv_heads = spec_.num_kv_heads;
    t.num_tokens = spec_.num_tokens;
    t.q_in = d_q_in_.get();
    t.k_in = d_k_in_.get();
    t.q_out = d_q_out_.get();
    t.k_out = d_k_out_.get();
    if (before_run) before_run();
    Status status;
    if (spec_.cache_positions > 0) {
      status = apply_rope_with_cos_sin_cache(t, d_positions_.as<int32_t>(), d_cache_.as<float>(), spec_.cache_positions,
                                             spec_.rope.rotary_dim, spec_.rope.interleave, nullptr);
    } else {
      RopePositions positions;
      if (spec_.use_indptr) {
        positions.num_requests = int32_t(offsets_.size());
        positions.indptr = d_indptr_.as<int32_t>();
        positions.offsets = d_offsets_.as<int32_t>();
      } else {
        positions.pos_ids = d_positions_.as<int32_t>();
      }
      status = apply_rope(t, positions, spec_.rope, nullptr);
    }
    if (!status.ok()) return status;
    PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
    result_ = download_vector<uint16_t>(d_q_out_, q_.size());
    const std::vector<uint16_t> k_out = download_vector<uint16_t>(d_k_out_, k_.size());
    result_.insert(result_.end(), k_out.begin(), k_out.end());
    return status;
  }

  const std::vector<uint16_t>& result() const override { return result_; }

  std::string check() const override {
    const bool exact = spec_.cache_positions > 0;
    const int32_t d = spec_.head_dim, rd = spec_.rope.rotary_dim;
    std::string bad = check_rope_rows("q", result_.data(), q_.data(), q_ref_.data(), int64_t(q_.size()) / d, d, rd,
                                      spec_.rope.interleave, spec_.dtype, exact);
    if (bad.empty())
      bad = check_rope_rows("k", result_.data() + q_.size(), k_.data(), k_ref_.data(), int64_t(k_.size()) / d, d, rd,
                            spec_.rope.interleave, spec_.dtype, exact);
    return bad;
  }

 private:
  ApplySpec spec_;
  std::vector<uint16_t> q_, k_, result_;
  std::vector<int32_t> indptr_, offsets_, positions_;
  std::vector<float> host_cache_;
  std::vector<double> q_ref_, k_ref_;
  DeviceBuffer d_q_in_, d_k_in_, d_q_out_, d_k_out_, d_positions_, d_indptr_, d_offsets_, d_cache_;
};

struct AppendSpec {
  uint64_t seed = 1;
  DType dtype = DType::kBF16;
  int32_t head_dim = 128;
  int32_t num_kv_heads = 2;
  KvLayout layout = KvLayout::kNHD;
  int32_t page_size = 7;
  bool fused_rope = false;  // rotate K (and Q when num_qo_heads > 0) on the way in
  RopeConfig rope;
  int32_t num_qo_heads = 0;
};

// append_paged_kv_cache (plain or fused with RoPE).
class AppendCase final : public RopeMatrixCase {
 public:
  explicit AppendCase(const AppendSpec& spec) : spec_(spec) {
    std::mt19937 rng(uint32_t(spec.seed));
    // (kv_len, append_len) per request: partial pages, an empty request, a
    // request whose only token is new, appends spanning pages, none appended.
    const std::vector<std::pair<int32_t, int32_t>> requests = {{7, 3}, {0, 0}, {1, 1}, {50, 17}, {33, 0}, {16, 16}};
    const int32_t ps = spec.page_size;
    append_indptr_ = {0};
    kv_indptr_ = {0};
    for (const auto& [kv_len, append_len] : requests) {
      const int32_t pages = (kv_len + ps - 1) / ps;
      kv_indptr_.push_back(kv_indptr_.back() + pages);
      append_indptr_.push_back(append_indptr_.back() + append_len);
      last_page_len_.push_back(pages == 0 ? 0 : kv_len - ps * (pages - 1));
    }
    num_pages_ = kv_indptr_.back() + 5;  // spare pages no request owns
    std::vector<int32_t> pool(num_pages_);
    for (int32_t i = 0; i < num_pages_; ++i) pool[i] = i;
    std::shuffle(pool.begin(), pool.end(), rng);
    kv_indices_.assign(pool.begin(), pool.begin() + kv_indptr_.back());

    AppendConfig config;
    config.dtype = spec.dtype;
    config.num_kv_heads = spec.num_kv_heads;
    config.head_dim = spec.head_dim;
    config.kv_layout = spec.layout;
    config.page_size = ps;
    config.num_pages = num_pages_;
    plan_status_ = plan_append_paged_kv(config, indices(), plan_);

    const int64_t n = append_indptr_.back();
    const int32_t d = spec.head_dim, hk = spec.num_kv_heads, hq = spec.num_qo_heads;
    k_new_ = random_values(size_t(n) * hk * d, spec.dtype, rng);
    v_new_ = random_values(size_t(n) * hk * d, spec.dtype, rng);
    q_ = random_values(size_t(n) * hq * d, spec.dtype, rng);
    pool_elements_ = size_t(num_pages_) * ps * hk * d;
    d_k_new_ = upload_vector(k_new_);
    d_v_new_ = upload_vector(v_new_);
    d_q_in_ = upload_vector(q_);
    d_q_out_ = DeviceBuffer(std::max<size_t>(q_.size() * sizeof(uint16_t), 16));
    d_k_cache_ = DeviceBuffer(pool_elements_ * sizeof(uint16_t));
    d_v_cache_ = DeviceBuffer(pool_elements_ * sizeof(uint16_t));

    targets_ = ref::append_targets(indices(), ps);
    std::vector<int32_t> positions;
    for (const ref::AppendTarget& t : targets_) positions.push_back(t.position);
    if (spec.fused_rope) {
      k_ref_ = ref::apply_rope(decode(k_new_, spec.dtype), hk, d, positions, spec.rope, Rounding::kGpu);
      if (hq > 0) q_ref_ = ref::apply_rope(decode(q_, spec.dtype), hq, d, positions, spec.rope, Rounding::kGpu);
    }
    // Element offset of every appended row (token-major, then head) in the pool.
    for (const ref::AppendTarget& t : targets_)
      for (int32_t h = 0; h < hk; ++h)
        row_offsets_.push_back(ref::paged_row_offset(spec.layout, ps, hk, d, t.page, t.slot, h));
  }

  std::string describe() const override {
    std::ostringstream s;
    s << "append_paged_kv_cache " << to_string(spec_.dtype) << " D " << spec_.head_dim << " " << to_string(spec_.layout)
      << " page " << spec_.page_size << " kv heads " << spec_.num_kv_heads;
    if (spec_.fused_rope)
      s << " fused rope rotary_dim " << spec_.rope.rotary_dim << (spec_.rope.interleave ? " GPT-J" : " NeoX")
        << " q heads " << spec_.num_qo_heads;
    return s.str();
  }

  bool has_unused_slots() const override { return true; }

  Status run(const RopeRunSetup& setup, const std::function<void()>& before_run) override {
    if (!plan_status_.ok()) return plan_status_;
    setup_ = setup;
    // Every slot of both caches starts as its background; the append may change only its own rows.
    for (int which = 0; which < 2; ++which) {
      std::vector<uint16_t> background(pool_elements_);
      for (size_t i = 0; i < background.size(); ++i) background[i] = background_bits(which, i);
      (which == 0 ? d_k_cache_ : d_v_cache_).upload(background.data(), background.size() * sizeof(uint16_t));
    }
    d_q_out_.fill_u32(setup.output_word);
    AppendTensors t;
    t.k_new = d_k_new_.get();
    t.v_new = d_v_new_.get();
    t.k_cache = d_k_cache_.get();
    t.v_cache = d_v_cache_.get();
    t.num_append_tokens = append_indptr_.back();
    t.num_pages = num_pages_;
    if (spec_.fused_rope && spec_.num_qo_heads > 0) {
      t.q_in = d_q_in_.get();
      t.q_out = d_q_out_.get();
      t.num_qo_heads = spec_.num_qo_heads;
    }
    if (before_run) before_run();
    const Status status = append_paged_kv_cache(plan_, t, spec_.fused_rope ? &spec_.rope : nullptr, nullptr);
    if (!status.ok()) return status;
    PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
    k_cache_ = download_vector<uint16_t>(d_k_cache_, pool_elements_);
    v_cache_ = download_vector<uint16_t>(d_v_cache_, pool_elements_);
    // The result: appended K rows, appended V rows, then Q.
    result_.clear();
    for (const std::vector<uint16_t>* cache : {&k_cache_, &v_cache_})
      for (int64_t offset : row_offsets_)
        result_.insert(result_.end(), cache->begin() + offset, cache->begin() + offset + spec_.head_dim);
    if (t.q_out != nullptr) {
      const std::vector<uint16_t> q_out = download_vector<uint16_t>(d_q_out_, q_.size());
      result_.insert(result_.end(), q_out.begin(), q_out.end());
    }
    return status;
  }

  const std::vector<uint16_t>& result() const override { return result_; }

  std::string check() const override {
    const int32_t d = spec_.head_dim, rd = spec_.fused_rope ? spec_.rope.rotary_dim : 0;
    const bool interleave = spec_.rope.interleave;
    const int64_t rows = int64_t(row_offsets_.size());
    const uint16_t* k_rows = result_.data();
    const uint16_t* v_rows = k_rows + rows * d;
    std::string bad = check_rope_rows("appended k", k_rows, k_new_.data(), spec_.fused_rope ? k_ref_.data() : nullptr,
                                      rows, d, rd, interleave, spec_.dtype, false);
    if (bad.empty())
      bad = check_rope_rows("appended v", v_rows, v_new_.data(), nullptr, rows, d, 0, false, spec_.dtype, false);
    if (bad.empty() && !q_ref_.empty())
      bad = check_rope_rows("q", v_rows + rows * d, q_.data(), q_ref_.data(), int64_t(q_.size()) / d, d, rd, interleave,
                            spec_.dtype, false);
    if (!bad.empty()) return bad;
    // Every other slot must still hold its background.
    std::vector<bool> appended(pool_elements_, false);
    for (int64_t offset : row_offsets_) std::fill(appended.begin() + offset, appended.begin() + offset + d, true);
    for (int which = 0; which < 2; ++which) {
      const std::vector<uint16_t>& cache = which == 0 ? k_cache_ : v_cache_;
      for (size_t i = 0; i < cache.size(); ++i)
        if (!appended[i] && cache[i] != background_bits(which, i))
          return std::string(which == 0 ? "k" : "v") + "_cache element " + std::to_string(i) +
                 " (no appended token goes there) changed from " + hex_bits(background_bits(which, i), 4) + " to " +
                 hex_bits(cache[i], 4);
    }
    return "";
  }

 private:
  AppendIndices indices() const {
    AppendIndices indices;
    indices.num_requests = int32_t(last_page_len_.size());
    indices.append_indptr = append_indptr_.data();
    indices.kv_indptr = kv_indptr_.data();
    indices.kv_indices = kv_indices_.data();
    indices.kv_last_page_len = last_page_len_.data();
    return indices;
  }

  // What element i of the K (which 0) or V cache holds before the run.
  uint16_t background_bits(int which, size_t i) const {
    return setup_.poison_slots ? cache_slot_poison(spec_.dtype, int64_t(i), setup_.slot_seed + which)
                               : half_of_word(setup_.output_word, i);
  }

  AppendSpec spec_;
  RopeRunSetup setup_;
  std::vector<int32_t> append_indptr_, kv_indptr_, kv_indices_, last_page_len_;
  int32_t num_pages_ = 0;
  size_t pool_elements_ = 0;
  Status plan_status_;
  AppendPlan plan_;
  std::vector<ref::AppendTarget> targets_;
  std::vector<int64_t> row_offsets_;
  std::vector<uint16_t> k_new_, v_new_, q_, k_cache_, v_cache_, result_;
  std::vector<double> k_ref_, q_ref_;
  DeviceBuffer d_k_new_, d_v_new_, d_q_in_, d_q_out_, d_k_cache_, d_v_cache_;
};

RopeConfig make_rope(int32_t rotary_dim, bool interleave) {
  RopeConfig rope;
  rope.rotary_dim = rotary_dim;
  rope.interleave = interleave;
  return rope;
}

RopeConfig llama31_rope(int32_t rotary_dim, bool interleave) {
  RopeConfig rope = make_rope(rotary_dim, interleave);
  rope.theta = 5e5f;
  rope.rope_scale = 8.0f;
  rope.llama31 = true;
  return rope;
}

ApplySpec apply_spec(uint64_t seed, DType dtype, int32_t head_dim, const RopeConfig& rope, bool use_indptr,
                     int32_t cache_positions) {
  ApplySpec spec;
  spec.seed = seed;
  spec.dtype = dtype;
  spec.head_dim = head_dim;
  spec.rope = rope;
  spec.use_indptr = use_indptr;
  spec.cache_positions = cache_positions;
  return spec;
}

AppendSpec append_spec(uint64_t seed, DType dtype, int32_t head_dim, KvLayout layout, int32_t page_size,
                       const RopeConfig* rope, int32_t num_qo_heads) {
  AppendSpec spec;
  spec.seed = seed;
  spec.dtype = dtype;
  spec.head_dim = head_dim;
  spec.layout = layout;
  spec.page_size = page_size;
  spec.fused_rope = rope != nullptr;
  if (rope) spec.rope = *rope;
  spec.num_qo_heads = num_qo_heads;
  return spec;
}

std::vector<std::unique_ptr<RopeMatrixCase>> rope_matrix_cases() {
  const DType bf16 = DType::kBF16, fp16 = DType::kFP16;
  const RopeConfig neox128 = make_rope(128, false), gptj64 = make_rope(64, true), llama256 = llama31_rope(256, false);
  std::vector<std::unique_ptr<RopeMatrixCase>> cases;
  cases.push_back(std::make_unique<ApplyRopeCase>(apply_spec(501, bf16, 128, neox128, false, 0)));
  cases.push_back(std::make_unique<ApplyRopeCase>(apply_spec(502, fp16, 64, make_rope(32, true), true, 0)));
  cases.push_back(std::make_unique<ApplyRopeCase>(apply_spec(503, bf16, 256, llama256, true, 0)));
  cases.push_back(std::make_unique<ApplyRopeCase>(apply_spec(504, bf16, 128, neox128, false, 4096)));
  cases.push_back(std::make_unique<ApplyRopeCase>(apply_spec(505, fp16, 64, gptj64, false, 2048)));
  cases.push_back(std::make_unique<AppendCase>(append_spec(506, bf16, 128, KvLayout::kNHD, 7, nullptr, 0)));
  cases.push_back(std::make_unique<AppendCase>(append_spec(507, fp16, 64, KvLayout::kHND, 16, &gptj64, 4)));
  cases.push_back(std::make_unique<AppendCase>(append_spec(508, bf16, 256, KvLayout::kNHD, 1, &llama256, 0)));
  return cases;
}

std::string first_result_difference(const std::vector<uint16_t>& clean, const std::vector<uint16_t>& run) {
  if (clean.size() != run.size()) return "result sizes differ";
  const int64_t at = first_bit_difference(clean.data(), run.data(), int64_t(clean.size()));
  if (at < 0) return "";
  return "differs from the clean run first at result element " + std::to_string(at) + ": clean " +
         hex_bits(clean[at], 4) + ", got " + hex_bits(run[at], 4);
}

// Runs one polluted launch; "" or what went wrong.
std::string polluted_rope_failure(RopeMatrixCase& c, const std::vector<uint16_t>& clean, Polluter polluter,
                                  uint64_t seed) {
  RopeRunSetup setup;
  std::function<void()> before_run;
  if (polluter == Polluter::kOutputs) {
    setup.output_word = output_pattern(seed).word;
  } else if (polluter == Polluter::kCacheSlots) {
    setup.poison_slots = true;
    setup.slot_seed = seed;
  } else {
    before_run = [polluter, seed] { run_state_polluter(polluter, seed); };
  }
  const Status status = c.run(setup, before_run);
  if (!status.ok()) return "run failed: " + status.message;
  std::string failure = first_result_difference(clean, c.result());
  const std::string vs_reference = c.check();
  if (!vs_reference.empty()) failure += (failure.empty() ? "" : "; ") + vs_reference;
  return failure;
}

TEST_CASE("pollution matrix: rope", "[gpu][pollution]") {
  std::vector<std::unique_ptr<RopeMatrixCase>> cases = rope_matrix_cases();
  MatrixReport report("rope");
  int not_built = 0, units = 0;
  for (const auto& c : cases) {
    const std::string unit = c->describe();
    std::vector<std::vector<uint16_t>> clean;
    Status status;
    const std::string clean_failure = failure_of([&] {
      for (int i = 0; i < 3 && status.ok(); ++i) {
        status = c->run(RopeRunSetup{}, scrub_gpu_state);
        clean.push_back(c->result());
      }
      return status.ok() ? "" : "run failed: " + status.message;
    });
    if (status.code == StatusCode::kUnsupported) {
      ++not_built;
      std::printf("pollution matrix: rope: not built, skipped: %s\n", unit.c_str());
      continue;
    }
    ++units;
    if (!clean_failure.empty()) {
      report.record("clean", unit, clean_failure);
      continue;
    }
    report.record("clean", unit, c->check());  // the last clean run
    std::string repeat_failure = first_result_difference(clean[0], clean[1]);
    if (repeat_failure.empty()) repeat_failure = first_result_difference(clean[0], clean[2]);
    report.record("determinism", unit, repeat_failure.empty() ? "" : "clean runs differ: " + repeat_failure);
    for (Polluter p : all_polluters()) {
      if (p == Polluter::kCacheSlots && !c->has_unused_slots()) {
        report.not_applicable(polluter_name(p));
        continue;
      }
      report.record(polluter_name(p), unit,
                    run_every_pattern(p, [&](uint64_t seed) { return polluted_rope_failure(*c, clean[0], p, seed); }));
    }
  }
  report.print(std::to_string(cases.size()) + " cases (" + std::to_string(not_built) +
               " not built in this configuration), " + std::to_string(units) + " run");
  CHECK(units > 0);
  CHECK(report.failures() == 0);
}

// ============================================================================
// Sanitizer cases: tiny launches of every kernel (scripts/sanitize.sh)
// ============================================================================

TEST_CASE("sanitizer cases", "[gpu][sanitize]") {
  const DType bf16 = DType::kBF16, fp16 = DType::kFP16;
  const KvLayout nhd = KvLayout::kNHD, hnd = KvLayout::kHND;
  using B = CaseSpecBuilder;
  struct PrefillLaunch {
    CaseSpec spec;
    KvLoadPath path;
    int32_t kv_splits = 0;  // 0: the plan's rule (which splits none of the small cases but 633 and 634)
    int32_t rule_splits = 1;  // the count the rule must choose where kv_splits is 0
    int32_t kv_stages = 0;    // 0: the head dim's ring
  };
  // 22 small prefills: page sizes 1..256 with partial last pages, both load
  // paths (also on the same case), ragged rows, NHD and HND, causal, window and
  // soft cap, every head dim, both dtypes, GQA (packed where the rule packs:
  // 607, 609, 610, 630), empty requests, and split-KV on both paths with
  // chunks that see no key (630, 631: the partial states, the merge launched
  // while the kernel runs, and its wait for the kernel's writes), and the
  // rule's split of one long request among short ones on both paths (633,
  // 634: the long tile in 2 chunks, the short ones whole, storing o
  // themselves, the merge reading each token's states by its offset and
  // leaving the others' rows alone), and the 3-stage K/V ring forced at
  // head_dim 128 on the gather path, on whatever device (635: a split
  // packed decode step; 636: a windowed fp16 prefill over pages of 7, HND;
  // 637: ragged rows); then a page
  // table given at run with an entry past the pool, and K/V as the halves of
  // one combined cache.
  const std::vector<PrefillLaunch> prefills = {
      {B(601, bf16, 128, 2, 1).paged(nhd, 7).lengths({20, 3}, {40, 17}).causal(), KvLoadPath::kGather},
      {B(602, bf16, 128, 2, 1).paged(hnd, 16).lengths({20, 3}, {150, 17}).causal().window(40), KvLoadPath::kTma},
      {B(603, fp16, 64, 2, 2).paged(hnd, 7).lengths({33}, {75}).window(10), KvLoadPath::kGather},
      {B(604, bf16, 64, 2, 1).ragged().lengths({16, 5}, {70, 5}).causal(), KvLoadPath::kTma},
      {B(605, bf16, 256, 2, 1).paged(nhd, 7).lengths({9}, {80}).causal(), KvLoadPath::kGather},
      {B(606, fp16, 256, 2, 1).paged(nhd, 64).lengths({9}, {100}).soft_cap(30.0f), KvLoadPath::kTma},
      {B(607, bf16, 128, 4, 1).paged(nhd, 1).lengths({5, 12}, {9, 30}).causal(), KvLoadPath::kGather},
      {B(608, fp16, 128, 2, 2).paged(hnd, 3).lengths({17}, {44}), KvLoadPath::kGather},
      {B(609, bf16, 64, 4, 2).paged(nhd, 32).lengths({40, 1}, {150, 33}).causal(), KvLoadPath::kTma},
      {B(610, bf16, 64, 4, 2).paged(nhd, 32).lengths({40, 1}, {150, 33}).causal(), KvLoadPath::kGather},
      {B(620, fp16, 128, 2, 1).paged(nhd, 128).lengths({30}, {131}).window(20), KvLoadPath::kTma},
      {B(621, bf16, 128, 2, 1).paged(hnd, 256).lengths({12, 7}, {270, 7}).causal(), KvLoadPath::kTma},
      {B(622, bf16, 128, 2, 1).paged(hnd, 256).lengths({12, 7}, {270, 7}).causal(), KvLoadPath::kGather},
      {B(623, fp16, 64, 2, 1).ragged().lengths({20, 0, 3}, {60, 0, 3}).soft_cap(10.0f), KvLoadPath::kGather},
      {B(624, bf16, 256, 2, 2).ragged().lengths({8}, {70}).causal().window(16), KvLoadPath::kTma},
      {B(625, bf16, 256, 2, 1).paged(hnd, 16).lengths({6, 2}, {65, 2}), KvLoadPath::kTma},
      {B(626, fp16, 256, 2, 1).paged(nhd, 3).lengths({10}, {33}).causal(), KvLoadPath::kGather},
      {B(627, bf16, 128, 2, 1).ragged().lengths({140}, {260}).causal(), KvLoadPath::kTma},
      {B(628, fp16, 64, 2, 1).paged(nhd, 16).lengths({130}, {131}).causal(), KvLoadPath::kGather},
      {B(629, bf16, 128, 2, 1).paged(nhd, 64).lengths({3}, {3}).causal(), KvLoadPath::kTma},
      {B(630, bf16, 128, 4, 1).paged(nhd, 16).lengths({1, 3}, {300, 290}).causal(), KvLoadPath::kGather, 3},
      {B(631, fp16, 64, 2, 1).paged(hnd, 64).lengths({2}, {700}).causal().window(40), KvLoadPath::kTma, 7},
      {B(633, bf16, 128, 4, 1).paged(nhd, 16).lengths({1, 1, 1}, {60, 1100, 30}).causal(), KvLoadPath::kGather, 0, 2},
      {B(634, bf16, 128, 4, 1).paged(nhd, 16).lengths({1, 1, 1}, {60, 1100, 30}).causal(), KvLoadPath::kTma, 0, 2},
      {B(635, bf16, 128, 4, 1).paged(nhd, 16).lengths({1, 3}, {300, 290}).causal(), KvLoadPath::kGather, 3, 1, 3},
      {B(636, fp16, 128, 2, 1).paged(hnd, 7).lengths({20, 3}, {150, 17}).causal().window(40), KvLoadPath::kGather, 0,
       1, 3},
      {B(637, bf16, 128, 2, 2).ragged().lengths({140}, {260}).causal(), KvLoadPath::kGather, 0, 1, 3},
  };
  int launched = 0, skipped = 0;
  for (const PrefillLaunch& launch : prefills) {
    const HostCase c = make_case(launch.spec);
    if (validate_prefill_config(c.config).code == StatusCode::kUnsupported) {
      ++skipped;
      std::printf("sanitizer cases: not built, skipped: %s\n", c.describe().c_str());
      continue;
    }
    INFO(load_path_name(launch.path) << " | " << c.describe());
    const References refs = compute_references(c);
    DevicePrefillCase device(c);
    const PrefillRun run = device.run(launch.path, {}, {WorkSchedule::kAuto, 0, "auto"}, KvBlock::kAuto,
                                      launch.kv_splits, GqaPacking::kAuto, launch.kv_stages);
    INFO(run.status.message);
    REQUIRE(run.status.ok());
    CHECK(run.kv_splits == (launch.kv_splits > 0 ? launch.kv_splits : launch.rule_splits));
    if (launch.kv_stages > 0) CHECK(run.kv_stages == launch.kv_stages);
    CHECK(reference_failure(c, refs, run) == "");
    ++launched;
  }
  // A page table given at run whose last entry is one page past the pool:
  // memcheck sees any read there (state rule 8 of docs/kernels.md).
  const HostCase table_case = make_case(B(632, bf16, 128, 4, 1).paged(nhd, 16).lengths({2, 1}, {70, 40}).causal());
  if (validate_prefill_config(table_case.config).code == StatusCode::kUnsupported) {
    ++skipped;
  } else {
    DevicePrefillCase device(table_case);
    std::vector<int32_t> table = table_case.kv_indices;
    table.back() = table_case.config.num_pages;
    const DeviceBuffer device_table = upload_vector(table);
    for (KvLoadPath path : load_paths_for(table_case)) {
      INFO("page table at run, " << load_path_name(path) << " | " << table_case.describe());
      PrefillConfig config = table_case.config;
      config.load_path = path;
      BatchIndices indices = table_case.indices();
      indices.kv_indices = nullptr;
      PrefillPlan plan;
      REQUIRE(plan_prefill(config, indices, plan).ok());
      PrefillTensors tensors = device.tensors();
      tensors.kv_indices = device_table.as<int32_t>();
      REQUIRE(run_prefill(plan, tensors, nullptr).ok());
      CHECK(check_page_table_errors(plan, nullptr).code == StatusCode::kInvalidArgument);
      ++launched;
    }
  }
  // k and v as the halves of one combined cache that ends with v's last
  // page (kv_stride two pages): memcheck sees a read past it.
  const HostCase combined_case = make_case(B(633, bf16, 128, 4, 1).paged(hnd, 16).lengths({2, 1}, {70, 40}).causal());
  if (validate_prefill_config(combined_case.config).code == StatusCode::kUnsupported) {
    ++skipped;
  } else {
    DevicePrefillCase device(combined_case);
    const PrefillConfig& cc = combined_case.config;
    const size_t page_bytes = size_t(cc.page_size) * cc.num_kv_heads * cc.head_dim * sizeof(uint16_t);
    const size_t pages = size_t(combined_case.num_kv_rows);
    DeviceBuffer kv(2 * page_bytes * pages);
    PTXATTN_CUDA_CHECK(cudaMemcpy2D(kv.get(), 2 * page_bytes, combined_case.k.data(), page_bytes, page_bytes, pages,
                                    cudaMemcpyHostToDevice));
    PTXATTN_CUDA_CHECK(cudaMemcpy2D(static_cast<char*>(kv.get()) + page_bytes, 2 * page_bytes,
                                    combined_case.v.data(), page_bytes, page_bytes, pages, cudaMemcpyHostToDevice));
    for (KvLoadPath path : load_paths_for(combined_case)) {
      INFO("combined cache, " << load_path_name(path) << " | " << combined_case.describe());
      const PrefillRun own = device.run(path, {});
      REQUIRE(own.status.ok());
      PrefillConfig config = cc;
      config.load_path = path;
      PrefillPlan plan;
      REQUIRE(plan_prefill(config, combined_case.indices(), plan).ok());
      PrefillTensors tensors = device.tensors();
      tensors.k = kv.get(), tensors.v = static_cast<const char*>(kv.get()) + page_bytes;
      tensors.kv_stride = int64_t(2 * page_bytes / sizeof(uint16_t));
      REQUIRE(run_prefill(plan, tensors, nullptr).ok());
      PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
      const auto out = download_vector<uint16_t>(device.out(), own.out.size());
      CHECK(first_bit_difference(own.out.data(), out.data(), int64_t(out.size())) == -1);
      ++launched;
    }
  }
  const RopeConfig neox64 = make_rope(64, false), gptj32 = make_rope(32, true);
  std::vector<std::unique_ptr<RopeMatrixCase>> ropes;
  ApplySpec tiny = apply_spec(611, bf16, 64, neox64, true, 0);
  tiny.num_qo_heads = 2;
  tiny.num_kv_heads = 1;
  tiny.num_tokens = 9;
  ropes.push_back(std::make_unique<ApplyRopeCase>(tiny));
  tiny.seed = 612;
  tiny.dtype = fp16;
  tiny.cache_positions = 64;  // build_rope_cos_sin_cache, then the cache variant
  ropes.push_back(std::make_unique<ApplyRopeCase>(tiny));
  ropes.push_back(std::make_unique<AppendCase>(append_spec(613, bf16, 64, nhd, 7, nullptr, 0)));
  ropes.push_back(std::make_unique<AppendCase>(append_spec(614, fp16, 128, hnd, 16, &gptj32, 2)));
  for (const auto& r : ropes) {
    INFO(r->describe());
    const Status status = r->run(RopeRunSetup{}, {});
    if (status.code == StatusCode::kUnsupported) {
      ++skipped;
      std::printf("sanitizer cases: not built, skipped: %s\n", r->describe().c_str());
      continue;
    }
    INFO(status.message);
    REQUIRE(status.ok());
    CHECK(r->check() == "");
    ++launched;
  }
  std::printf("sanitizer cases: %d launches checked, %d not built in this configuration\n", launched, skipped);
  CHECK(launched > 0);
}

}  // namespace
}  // namespace ptxattn::testing
