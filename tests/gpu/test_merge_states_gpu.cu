// GPU tests of merge_states and merge_state against the double reference
// (reference/merge_states.hpp), over every (input, output) dtype pair.
// Every run starts with shared memory filled with NaN and the outputs filled
// with NaN bytes (0xFF), so an element the kernel skips cannot match.
//
// Checked: random cases within the derived tolerance (docs/validation.md
// "Merging states"); empty states (lse = -inf) holding NaN in v give exactly
// the bits of the same case with those v zeroed (the state rule the injected
// bug merge_empty_by_weight breaks); lse NaN/+inf rows come out NaN; three
// runs and runs after every state polluter give identical bits; merge_state
// gives the bits of merge_states over the two states stacked; lse_out null
// leaves v_out's bits as they were.
#include <catch2/catch.hpp>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/merge_states.hpp"
#include "tests/common/gpu_test.hpp"
#include "tests/common/polluters.hpp"

namespace ptxattn::testing {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr uint32_t kUnwrittenWord = 0xFFFFFFFFu;  // NaN in bf16, fp16 and float alike

constexpr StateDType kAllDtypes[] = {StateDType::kBF16, StateDType::kFP16, StateDType::kFP32};

const char* dtype_name(StateDType dtype) {
  return dtype == StateDType::kBF16 ? "bf16" : dtype == StateDType::kFP16 ? "fp16" : "fp32";
}

struct MergeSpec {
  uint64_t seed = 1;
  StateDType v_dtype = StateDType::kBF16;
  StateDType out_dtype = StateDType::kBF16;
  int64_t num_tokens = 7;
  int32_t num_states = 3;
  int32_t num_heads = 3;
  int32_t head_dim = 128;
  double empty_fraction = 0.25;  // chance that a state is empty (lse = -inf)
  bool all_empty_row = true;     // row (token 0, head 0) has no non-empty state
  bool bad_lse_row = false;      // lse NaN in the last row's last state, +inf in token 0's last head's
  bool zero_empty_v = false;     // v of empty states is 0 instead of NaN

  std::string describe() const {
    std::ostringstream s;
    s << dtype_name(v_dtype) << " -> " << dtype_name(out_dtype) << " tokens " << num_tokens << " states "
      << num_states << " heads " << num_heads << " D " << head_dim << " empty " << empty_fraction
      << (all_empty_row ? " +all-empty row" : "") << (bad_lse_row ? " +NaN/+inf lse rows" : "")
      << (zero_empty_v ? " (empty v zero)" : " (empty v NaN)") << " seed " << seed;
    return s.str();
  }
};

// Host states: lse [T][S][H]; v [T][S][H][D] as values of v_dtype, NaN (or 0)
// in empty states.
struct HostStates {
  MergeSpec spec;
  ref::MergeShape shape;
  std::vector<float> lse, v;

  explicit HostStates(const MergeSpec& s) : spec(s), shape{s.num_tokens, s.num_states, s.num_heads, s.head_dim} {
    std::mt19937_64 rng(s.seed);
    std::uniform_real_distribution<float> log_sum(-8.0f, 8.0f), value(-2.0f, 2.0f), unit(0.0f, 1.0f);
    lse.resize(s.num_tokens * s.num_states * s.num_heads);
    for (float& x : lse) x = unit(rng) < s.empty_fraction ? -kInf : log_sum(rng);
    const int64_t rows = s.num_tokens * s.num_heads;
    if (s.all_empty_row)
      for (int32_t k = 0; k < s.num_states; ++k) lse[k * s.num_heads] = -kInf;
    if (s.bad_lse_row && rows > 1) {
      const int64_t last_state = s.num_states - 1, last_head = s.num_heads - 1;
      lse[((s.num_tokens - 1) * s.num_states + last_state) * s.num_heads + last_head] = kNaN;
      lse[last_state * s.num_heads + last_head] = kInf;  // token 0
    }
    v.resize(lse.size() * s.head_dim);
    for (float& x : v) x = value(rng);
    v = ref::decode_states(ref::encode_states(v, s.v_dtype), s.v_dtype);  // values of v_dtype
    for (size_t state = 0; state < lse.size(); ++state)
      if (lse[state] == -kInf)
        std::fill(v.begin() + state * s.head_dim, v.begin() + (state + 1) * s.head_dim, s.zero_empty_v ? 0.0f : kNaN);
  }
  int64_t rows() const { return shape.num_tokens * shape.num_heads; }
};

struct References {
  std::vector<double> v, lse;
  ref::MergeErrorScales scales;
};

References references(const HostStates& h) {
  References r;
  ref::merge_states(h.shape, h.v, h.lse, &r.v, &r.lse, &r.scales);
  return r;
}

struct MergeOutput {
  std::vector<float> v;    // decoded v_out
  std::vector<uint8_t> v_bits;
  std::vector<float> lse;  // empty when lse_out was null
};

// The states on the device, stacked and (two states) as separate tensors.
class DeviceStates {
 public:
  explicit DeviceStates(const HostStates& h) : h_(h) {
    const MergeSpec& s = h.spec;
    const std::vector<uint8_t> v_bytes = ref::encode_states(h.v, s.v_dtype);
    v_ = upload_vector(v_bytes);
    lse_ = upload_vector(h.lse);
    v_out_ = DeviceBuffer(std::max<size_t>(16, h.rows() * s.head_dim * ref::state_element_bytes(s.out_dtype)));
    lse_out_ = DeviceBuffer(std::max<size_t>(16, h.rows() * sizeof(float)));
    if (s.num_states == 2) {
      // State k of every (token, head) row, as its own tensor.
      const int64_t row_bytes = s.num_heads * s.head_dim * ref::state_element_bytes(s.v_dtype);
      std::vector<uint8_t> v_k[2];
      std::vector<float> lse_k[2];
      for (int64_t t = 0; t < s.num_tokens; ++t)
        for (int k = 0; k < 2; ++k) {
          const auto v_row = v_bytes.begin() + (t * 2 + k) * row_bytes;
          v_k[k].insert(v_k[k].end(), v_row, v_row + row_bytes);
          const auto lse_row = h.lse.begin() + (t * 2 + k) * s.num_heads;
          lse_k[k].insert(lse_k[k].end(), lse_row, lse_row + s.num_heads);
        }
      for (int k = 0; k < 2; ++k) {
        v_pair_[k] = upload_vector(v_k[k]);
        lse_pair_[k] = upload_vector(lse_k[k]);
      }
    }
  }

  // merge_states (pair = false) or merge_state, after filling the outputs
  // with output_word, NaN in shared memory and then before_run.
  MergeOutput run(bool pair, bool with_lse, uint32_t output_word = kUnwrittenWord,
                  const std::function<void()>& before_run = {}) {
    const MergeSpec& s = h_.spec;
    v_out_.fill_u32(output_word);
    lse_out_.fill_u32(output_word);
    pollute_shared_memory(pattern::kQuietNaN);
    if (before_run) before_run();
    Status status;
    if (pair) {
      MergeStateTensors t;
      t.v_dtype = s.v_dtype, t.out_dtype = s.out_dtype;
      t.num_heads = s.num_heads, t.head_dim = s.head_dim, t.num_tokens = s.num_tokens;
      t.v_a = v_pair_[0].get(), t.lse_a = lse_pair_[0].as<float>();
      t.v_b = v_pair_[1].get(), t.lse_b = lse_pair_[1].as<float>();
      t.v_out = v_out_.get(), t.lse_out = with_lse ? lse_out_.as<float>() : nullptr;
      status = merge_state(t, nullptr);
    } else {
      MergeStatesTensors t;
      t.v_dtype = s.v_dtype, t.out_dtype = s.out_dtype;
      t.num_states = s.num_states, t.num_heads = s.num_heads, t.head_dim = s.head_dim, t.num_tokens = s.num_tokens;
      t.v = v_.get(), t.lse = lse_.as<float>();
      t.v_out = v_out_.get(), t.lse_out = with_lse ? lse_out_.as<float>() : nullptr;
      status = merge_states(t, nullptr);
    }
    INFO(status.message);
    REQUIRE(status.ok());
    PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
    MergeOutput out;
    out.v_bits = download_vector<uint8_t>(v_out_, h_.rows() * s.head_dim * ref::state_element_bytes(s.out_dtype));
    out.v = ref::decode_states(out.v_bits, s.out_dtype);
    if (with_lse) out.lse = download_vector<float>(lse_out_, h_.rows());
    return out;
  }

 private:
  const HostStates& h_;
  DeviceBuffer v_, lse_, v_out_, lse_out_, v_pair_[2], lse_pair_[2];
};

struct ErrorStats {
  double max_err_over_tol = 0.0;
  double max_abs_err = 0.0;
  int64_t compared = 0;
};

bool bits_equal(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// "" or the first element that breaks the contract: NaN rows NaN, all-empty
// rows +0 and -inf exactly, every other element finite and within the
// derived tolerance of the exact reference.
std::string check_output(const HostStates& h, const References& r, const MergeOutput& out, ErrorStats& stats) {
  const MergeSpec& s = h.spec;
  for (int64_t row = 0; row < h.rows(); ++row) {
    const std::string where = "token " + std::to_string(row / s.num_heads) + " head " + std::to_string(row % s.num_heads);
    const bool lse_given = !out.lse.empty();
    const double expected_lse = r.lse[row];
    if (lse_given) {
      const float got = out.lse[row];
      if (std::isnan(expected_lse) ? !std::isnan(got)
          : expected_lse == -double(kInf) ? !bits_equal(got, -kInf)
          : !(std::abs(got - expected_lse) <=
              ref::merge_lse_tolerance(expected_lse, r.scales.lse_magnitude[row], s.num_states)))
        return where + ": lse_out " + std::to_string(got) + ", expected " + std::to_string(expected_lse);
    }
    for (int32_t d = 0; d < s.head_dim; ++d) {
      const int64_t e = row * s.head_dim + d;
      const double got = out.v[e], expected = r.v[e];
      std::ostringstream bad;
      if (std::isnan(expected)) {
        if (!std::isnan(got)) bad << "got " << got << ", expected NaN (an lse is NaN or +inf)";
      } else if (expected_lse == -double(kInf)) {
        if (!bits_equal(float(got), 0.0f)) bad << "got " << got << ", expected +0 (every state empty)";
      } else {
        const double tol = ref::merge_v_tolerance(expected, r.scales.abs_weighted[e], r.scales.lse_magnitude[row],
                                                  s.num_states, s.out_dtype);
        const double err = std::abs(got - expected);
        if (!(err <= tol)) bad << "got " << got << ", expected " << expected << " (tolerance " << tol << ")";
        stats.max_abs_err = std::max(stats.max_abs_err, err);
        stats.max_err_over_tol = std::max(stats.max_err_over_tol, err / tol);
        ++stats.compared;
      }
      if (!bad.str().empty()) return where + " dim " + std::to_string(d) + ": " + bad.str();
    }
  }
  return "";
}

// "" or where two outputs' bits first differ.
std::string bit_difference(const MergeOutput& a, const MergeOutput& b) {
  const auto v_diff = std::mismatch(a.v_bits.begin(), a.v_bits.end(), b.v_bits.begin());
  if (v_diff.first != a.v_bits.end())
    return "v_out bytes differ first at byte " + std::to_string(v_diff.first - a.v_bits.begin());
  for (size_t i = 0; i < std::min(a.lse.size(), b.lse.size()); ++i)
    if (!bits_equal(a.lse[i], b.lse[i])) return "lse_out differs first at row " + std::to_string(i);
  return "";
}

// Runs a spec: merge_states against the reference (lse_out given), then
// without lse_out, which must leave v_out's bits as they were.
void check_spec(const MergeSpec& spec, ErrorStats& stats) {
  INFO(spec.describe());
  const HostStates h(spec);
  const References r = references(h);
  DeviceStates device(h);
  const MergeOutput with_lse = device.run(false, true);
  CHECK(check_output(h, r, with_lse, stats) == "");
  const MergeOutput without_lse = device.run(false, false);
  CHECK(bit_difference(with_lse, without_lse) == "");
}

TEST_CASE("merge_states gpu: random cases match the reference for every dtype pair", "[merge][gpu]") {
  const int32_t head_dims[] = {64, 128, 256, 40};
  const int32_t state_counts[] = {1, 2, 3, 5, 8, 16};
  const int32_t head_counts[] = {1, 3, 8};
  const int64_t token_counts[] = {1, 7, 33};
  ErrorStats stats;
  int cases = 0;
  for (StateDType v_dtype : kAllDtypes)
    for (StateDType out_dtype : kAllDtypes)
      for (int32_t head_dim : head_dims) {
        MergeSpec spec;
        spec.seed = 1000 + cases;
        spec.v_dtype = v_dtype, spec.out_dtype = out_dtype, spec.head_dim = head_dim;
        spec.num_states = state_counts[cases % 6];
        spec.num_heads = head_counts[cases % 3];
        spec.num_tokens = token_counts[(cases / 3) % 3];
        spec.bad_lse_row = cases % 2 == 0;
        check_spec(spec, stats);
        ++cases;
      }
  // Many states (the limit), the widest head_dim, and no empty state at all.
  for (StateDType dtype : kAllDtypes) {
    MergeSpec many;
    many.seed = 2000 + cases;
    many.v_dtype = dtype, many.out_dtype = StateDType::kFP32;
    many.num_tokens = 2, many.num_states = 4096, many.num_heads = 2, many.head_dim = 64;
    check_spec(many, stats);
    MergeSpec wide = many;
    wide.seed = 3000 + cases;
    wide.out_dtype = dtype;
    wide.num_tokens = 5, wide.num_states = 3, wide.num_heads = 4, wide.head_dim = 1024;
    wide.empty_fraction = 0.0, wide.all_empty_row = false;
    check_spec(wide, stats);
    cases += 2;
  }
  std::printf("merge_states random suite: %d cases, %lld elements compared, max |err| %.3g, max err/tol %.3g\n", cases,
              (long long)stats.compared, stats.max_abs_err, stats.max_err_over_tol);
  CHECK(stats.max_err_over_tol <= 1.0);
}

TEST_CASE("merge_states gpu: one state in fp32 is copied bit-exactly", "[merge][gpu]") {
  MergeSpec spec;
  spec.v_dtype = spec.out_dtype = StateDType::kFP32;
  spec.num_states = 1;
  spec.empty_fraction = 0.0, spec.all_empty_row = false;
  const HostStates h(spec);
  DeviceStates device(h);
  const MergeOutput out = device.run(false, true);
  for (size_t i = 0; i < h.v.size(); ++i) REQUIRE(bits_equal(out.v[i], h.v[i]));
  for (size_t i = 0; i < h.lse.size(); ++i) REQUIRE(bits_equal(out.lse[i], h.lse[i]));
}

TEST_CASE("merge_states gpu: empty states holding NaN give the bits of the same case with them zeroed",
          "[merge][gpu][empty]") {
  int cases = 0;
  for (StateDType v_dtype : kAllDtypes)
    for (StateDType out_dtype : kAllDtypes)
      for (int32_t states : {2, 7}) {
        MergeSpec spec;
        spec.seed = 4000 + cases++;
        spec.v_dtype = v_dtype, spec.out_dtype = out_dtype;
        spec.num_states = states, spec.num_tokens = 9, spec.num_heads = 4, spec.head_dim = 64;
        spec.empty_fraction = 0.5;  // and row (0, 0) all empty
        MergeSpec zeroed = spec;
        zeroed.zero_empty_v = true;
        INFO(spec.describe());
        const HostStates nan_states(spec), zero_states(zeroed);
        const References r = references(nan_states);
        DeviceStates nan_device(nan_states), zero_device(zero_states);
        ErrorStats stats;
        for (bool pair : {false, true}) {
          if (pair && states != 2) continue;
          INFO((pair ? "merge_state" : "merge_states"));
          const MergeOutput with_nan = nan_device.run(pair, true);
          CHECK(check_output(nan_states, r, with_nan, stats) == "");
          CHECK(bit_difference(with_nan, zero_device.run(pair, true)) == "");
        }
      }
}

TEST_CASE("merge_states gpu: three runs and runs after every polluter give the same bits",
          "[merge][gpu][pollution]") {
  for (StateDType v_dtype : kAllDtypes) {
    MergeSpec spec;
    spec.seed = 5000 + int(v_dtype);
    spec.v_dtype = v_dtype, spec.out_dtype = StateDType::kBF16;
    spec.num_tokens = 65, spec.num_states = 6, spec.num_heads = 8, spec.head_dim = 128;
    spec.bad_lse_row = true;
    INFO(spec.describe());
    const HostStates h(spec);
    DeviceStates device(h);
    const MergeOutput clean = device.run(false, true, kUnwrittenWord, scrub_gpu_state);
    for (int i = 0; i < 2; ++i) CHECK(bit_difference(clean, device.run(false, true, kUnwrittenWord, scrub_gpu_state)) == "");
    ErrorStats stats;
    CHECK(check_output(h, references(h), clean, stats) == "");
    for (Polluter p : all_polluters()) {
      if (p == Polluter::kCacheSlots) continue;  // no cache: the NaN-in-empty-states test covers unused data
      for (int seed = 0; seed < polluter_variants(p); ++seed) {
        INFO(polluter_variant_name(p, seed));
        // kOutputs fills the outputs with its pattern; the others pollute the GPU's state.
        const bool outputs = p == Polluter::kOutputs;
        std::function<void()> before_run;
        if (!outputs) before_run = [p, seed] { run_state_polluter(p, uint64_t(seed)); };
        const MergeOutput polluted =
            device.run(false, true, outputs ? output_pattern(seed).word : kUnwrittenWord, before_run);
        CHECK(bit_difference(clean, polluted) == "");
      }
    }
  }
}

TEST_CASE("merge_state gpu: two tensors give the bits of merge_states over the two stacked", "[merge][gpu]") {
  int cases = 0;
  for (StateDType v_dtype : kAllDtypes)
    for (StateDType out_dtype : kAllDtypes)
      for (int32_t head_dim : {64, 40}) {
        MergeSpec spec;
        spec.seed = 6000 + cases++;
        spec.v_dtype = v_dtype, spec.out_dtype = out_dtype, spec.head_dim = head_dim;
        spec.num_states = 2, spec.num_tokens = 17, spec.num_heads = 5;
        spec.bad_lse_row = true;
        INFO(spec.describe());
        const HostStates h(spec);
        DeviceStates device(h);
        const MergeOutput stacked = device.run(false, true);
        CHECK(bit_difference(stacked, device.run(true, true)) == "");
        CHECK(bit_difference(stacked, device.run(true, false)) == "");
      }
}

}  // namespace
}  // namespace ptxattn::testing
