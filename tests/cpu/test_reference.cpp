// CPU tests of the attention reference, the shared test-data generator and the
// comparator: the reference against an independent naive implementation,
// storage and GQA invariances, masks and soft cap on hand-computed cases,
// fully masked rows, poisoned cache slots, and the derived tolerance itself.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "reference/attention.hpp"
#include "reference/compare.hpp"
#include "reference/numeric.hpp"
#include "reference/testdata.hpp"
#include "tests/cpu/naive_attention.hpp"

namespace ptxattn::testing {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kDoubleTol = 1e-12;  // reference vs other double implementations

struct Output {
  std::vector<double> out, lse;
};

Output run_reference(const HostCase& c, ref::Rounding rounding, int num_threads = 2) {
  Output o;
  ref::prefill(c.config, c.indices(), c.tensors(), rounding, &o.out, &o.lse, num_threads);
  return o;
}

// kGpu outputs are dtype values: these are the bits a kernel matching the model stores.
std::vector<uint16_t> to_bits(const std::vector<double>& values, DType dtype) {
  std::vector<uint16_t> bits;
  for (double x : values) bits.push_back(ref::from_float(float(x), dtype));
  return bits;
}

std::vector<float> to_floats(const std::vector<double>& values) { return {values.begin(), values.end()}; }

// Largest |a - b|; equal infinities count as 0, anything involving NaN as +inf.
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return kInf;
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i]) continue;
    const double diff = std::fabs(a[i] - b[i]);
    worst = std::isnan(diff) ? kInf : std::max(worst, diff);
  }
  return worst;
}

bool all_finite(const std::vector<double>& values) {
  return std::all_of(values.begin(), values.end(), [](double x) { return std::isfinite(x); });
}

RandomLimits small_limits() {
  RandomLimits limits;
  limits.max_requests = 4;
  limits.max_qo_len = 24;
  limits.max_kv_len = 72;
  limits.page_sizes = {1, 3, 4, 16, 64};
  return limits;
}

// bf16, head_dim 64, paged NHD with pages of 16 unless a test changes it.
CaseSpec fixed_spec(uint64_t seed, int32_t num_qo_heads, int32_t num_kv_heads, std::vector<int32_t> qo_lens,
                    std::vector<int32_t> kv_lens, bool causal) {
  CaseSpec spec;
  spec.seed = seed;
  spec.num_qo_heads = num_qo_heads;
  spec.num_kv_heads = num_kv_heads;
  spec.head_dim = 64;
  spec.qo_lens = std::move(qo_lens);
  spec.kv_lens = std::move(kv_lens);
  spec.options.causal = causal;
  return spec;
}

// One request, one head, ragged bf16, from values exact in bf16.
HostCase tiny_case(int32_t qo_len, int32_t head_dim, const std::vector<float>& q, const std::vector<float>& k,
                   const std::vector<float>& v, const PrefillOptions& options) {
  HostCase c;
  c.config.num_qo_heads = c.config.num_kv_heads = 1;
  c.config.head_dim = head_dim;
  c.config.kv_format = KvFormat::kRagged;
  c.config.options = options;
  const int32_t kv_len = int32_t(k.size()) / head_dim;
  c.qo_indptr = {0, qo_len};
  c.kv_indptr = {0, kv_len};
  c.num_q_tokens = qo_len;
  c.num_kv_rows = kv_len;
  for (float x : q) c.q.push_back(ref::float_to_bf16(x));
  for (float x : k) c.k.push_back(ref::float_to_bf16(x));
  for (float x : v) c.v.push_back(ref::float_to_bf16(x));
  return c;
}

// Dense single-request, single-head attention under an explicit mask matrix.
std::vector<double> masked_attention(const HostCase& c, const std::vector<std::vector<bool>>& visible) {
  const int32_t dim = c.config.head_dim;
  auto at = [&](const std::vector<uint16_t>& t, size_t row, int32_t d) { return ref::to_double(t[row * dim + d], c.config.dtype); };
  std::vector<double> out(c.q.size(), 0.0);
  for (size_t i = 0; i < visible.size(); ++i) {
    std::vector<double> weight(visible[i].size(), 0.0);
    double max_score = -kInf, sum = 0.0;
    for (size_t j = 0; j < weight.size(); ++j) {
      for (int32_t d = 0; d < dim; ++d) weight[j] += at(c.q, i, d) * at(c.k, j, d) / std::sqrt(double(dim));
      if (visible[i][j]) max_score = std::max(max_score, weight[j]);
    }
    for (size_t j = 0; j < weight.size(); ++j) sum += weight[j] = visible[i][j] ? std::exp(weight[j] - max_score) : 0.0;
    for (size_t j = 0; j < weight.size(); ++j) {
      for (int32_t d = 0; d < dim; ++d) out[i * dim + d] += weight[j] / sum * at(c.v, j, d);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("16-bit conversions are exact and round to nearest even", "[numeric]") {
  int64_t decode_mismatches = 0, round_trip_mismatches = 0;
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    for (DType dtype : {DType::kBF16, DType::kFP16}) {
      const float value = ref::to_float(uint16_t(bits), dtype);
      const double textbook = naive_decode(uint16_t(bits), dtype);
      if (std::isnan(textbook)) {
        decode_mismatches += !std::isnan(value);
        continue;
      }
      decode_mismatches += double(value) != textbook;
      round_trip_mismatches += ref::from_float(value, dtype) != bits;
    }
  }
  CHECK(decode_mismatches == 0);
  CHECK(round_trip_mismatches == 0);

  // Ties go to the even neighbour; overflow and underflow per IEEE.
  CHECK(ref::float_to_bf16(1.0f + 0x1p-8f) == 0x3F80);
  CHECK(ref::float_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82);
  CHECK(ref::float_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);
  CHECK(std::isnan(ref::bf16_to_float(ref::float_to_bf16(std::nanf("")))));
  CHECK(ref::float_to_fp16(1.0f + 0x1p-11f) == 0x3C00);
  CHECK(ref::float_to_fp16(1.0f + 3 * 0x1p-11f) == 0x3C02);
  CHECK(ref::float_to_fp16(65519.0f) == 0x7BFF);
  CHECK(ref::float_to_fp16(65520.0f) == 0x7C00);
  CHECK(ref::float_to_fp16(0x1p-25f) == 0x0000);
  CHECK(ref::float_to_fp16(3 * 0x1p-25f) == 0x0002);
  CHECK(ref::float_to_fp16(-0x1.ffcp-15f) == 0x8400);  // rounds up into the normal range

#if defined(__FLT16_MAX__)
  // Against the compiler's IEEE float -> _Float16 conversion on random floats
  // around the fp16 range (subnormals, normals, overflow).
  uint64_t state = 12345;
  int64_t fp16_mismatches = 0;
  for (int i = 0; i < 200000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const uint32_t exponent = 97 + uint32_t(state >> 59) + uint32_t((state >> 40) & 15);  // 97..143
    const uint32_t bits = uint32_t(state >> 32 & 0x807FFFFFu) | (exponent << 23);
    const float value = ref::float_from_bits(bits);
    const _Float16 expected = _Float16(value);
    uint16_t expected_bits;
    std::memcpy(&expected_bits, &expected, 2);
    fp16_mismatches += ref::float_to_fp16(value) != expected_bits;
  }
  CHECK(fp16_mismatches == 0);
#endif
}

TEST_CASE("reference matches the naive implementation on random cases", "[reference]") {
  const RandomLimits limits = small_limits();
  std::set<std::string> features;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    const HostCase c = make_case(random_spec(seed, limits));
    INFO(c.describe());
    std::vector<double> naive_out, naive_lse;
    naive_prefill(c, &naive_out, &naive_lse);
    const References refs = compute_references(c, 2);
    REQUIRE(max_abs_diff(refs.out_exact, naive_out) <= kDoubleTol);
    REQUIRE(max_abs_diff(refs.lse_exact, naive_lse) <= kDoubleTol);
    // Poison in unused slots never reaches either reference.
    REQUIRE(all_finite(refs.out_exact));
    REQUIRE(all_finite(refs.out_gpu));
    // The kGpu model is itself a faithful fp32 kernel: it must sit within the
    // derived rounding bound of the exact result, without the model-gap term.
    const std::vector<uint16_t> bits = to_bits(refs.out_gpu, c.config.dtype);
    const std::vector<float> lse = to_floats(refs.lse_gpu);
    const CompareResult result = compare_prefill(c, refs, bits.data(), lse.data(), CompareOptions{false});
    INFO(result.summary());
    REQUIRE(result.pass);

    const PrefillOptions& o = c.config.options;
    features.insert(to_string(c.config.dtype) + " " + to_string(c.config.kv_format));
    if (o.causal) features.insert("causal");
    if (o.window_left >= 0) features.insert("window");
    if (o.logits_soft_cap > 0) features.insert("soft cap");
    if (c.config.kv_layout == KvLayout::kHND) features.insert("HND");
    if (std::isinf(*std::min_element(naive_lse.begin(), naive_lse.end()))) features.insert("masked rows");
  }
  CHECK(features.size() == 9);  // {bf16, fp16} x {paged, ragged} + the five above
}

TEST_CASE("the derived bound holds for longer and peaked rows", "[reference]") {
  for (DType dtype : {DType::kBF16, DType::kFP16}) {
    for (float amplitude : {1.0f, 8.0f}) {
      CaseSpec spec = fixed_spec(99, 2, 1, {64, 130}, {700, 130}, true);
      spec.dtype = dtype;
      spec.head_dim = 128;
      spec.q_amplitude = amplitude;
      const HostCase c = make_case(spec);
      INFO(c.describe());
      const References refs = compute_references(c, 2);
      const std::vector<uint16_t> bits = to_bits(refs.out_gpu, dtype);
      const std::vector<float> lse = to_floats(refs.lse_gpu);
      const CompareResult result = compare_prefill(c, refs, bits.data(), lse.data(), CompareOptions{false});
      INFO(result.summary());
      REQUIRE(result.pass);
      CHECK(result.max_abs_err > 0.0);  // the model really rounds
    }
  }
}

// Also shows that the result does not depend on the thread count (1 vs 3).
TEST_CASE("paged, ragged and contiguous storage of the same data agree; NHD == HND", "[reference]") {
  CaseSpec spec = fixed_spec(7, 4, 2, {5, 0, 17, 1}, {21, 9, 17, 33}, false);
  spec.page_size = 4;
  for (bool causal : {false, true}) {
    spec.options.causal = causal;
    spec.options.logits_soft_cap = causal ? 0.0f : 3.0f;
    const HostCase base = make_case(spec);
    std::vector<CaseSpec> variants(4, spec);
    variants[0].layout = KvLayout::kHND;
    variants[1].format = KvFormat::kRagged;
    variants[2].page_size = 64;  // contiguous: one page per request, in request order
    variants[2].shuffle_pages = false;
    variants[2].extra_pages = 0;
    variants[3].page_size = 1;
    variants[3].layout = KvLayout::kHND;
    for (ref::Rounding rounding : {ref::Rounding::kExact, ref::Rounding::kGpu}) {
      const Output expected = run_reference(base, rounding, 1);
      for (const CaseSpec& variant : variants) {
        const HostCase c = make_case(variant);
        INFO(c.describe() << " rounding " << to_string(rounding));
        const Output got = run_reference(c, rounding, 3);
        CHECK(got.out == expected.out);
        CHECK(got.lse == expected.lse);
      }
    }
  }
}

TEST_CASE("GQA equals attention with the KV heads repeated", "[reference]") {
  CaseSpec spec = fixed_spec(3, 4, 2, {6, 11}, {13, 11}, true);
  spec.format = KvFormat::kRagged;
  const HostCase grouped = make_case(spec);
  HostCase repeated = grouped;
  repeated.config.num_kv_heads = 4;
  repeated.k.clear();
  repeated.v.clear();
  const int64_t dim = spec.head_dim;
  for (int64_t row = 0; row < grouped.num_kv_rows; ++row) {
    for (int64_t head = 0; head < 4; ++head) {
      const int64_t source = (row * 2 + head / 2) * dim;  // qo head h reads kv head h / 2
      repeated.k.insert(repeated.k.end(), grouped.k.begin() + source, grouped.k.begin() + source + dim);
      repeated.v.insert(repeated.v.end(), grouped.v.begin() + source, grouped.v.begin() + source + dim);
    }
  }
  for (ref::Rounding rounding : {ref::Rounding::kExact, ref::Rounding::kGpu}) {
    const Output a = run_reference(grouped, rounding), b = run_reference(repeated, rounding);
    CHECK(a.out == b.out);
    CHECK(a.lse == b.lse);
  }
}

TEST_CASE("causal masks are bottom-right aligned lower triangles", "[reference]") {
  for (auto [qo_len, kv_len] : {std::pair{9, 9}, std::pair{3, 7}}) {
    CaseSpec spec = fixed_spec(11, 1, 1, {qo_len}, {kv_len}, true);
    spec.format = KvFormat::kRagged;
    spec.extra_rows = 0;
    const HostCase c = make_case(spec);
    std::vector<std::vector<bool>> lower(qo_len, std::vector<bool>(kv_len));
    for (int i = 0; i < qo_len; ++i) {
      for (int j = 0; j < kv_len; ++j) lower[i][j] = j <= kv_len - qo_len + i;
    }
    INFO("qo_len " << qo_len << " kv_len " << kv_len);
    CHECK(max_abs_diff(run_reference(c, ref::Rounding::kExact).out, masked_attention(c, lower)) <= kDoubleTol);
  }
}

TEST_CASE("sliding window, soft cap and default scale on hand-computed cases", "[reference]") {
  const double e = std::exp(1.0);
  auto exact = [](const HostCase& c) { return run_reference(c, ref::Rounding::kExact); };
  PrefillOptions options;
  options.sm_scale = 1.0f;

  // Keys 0..3 with scores q·k = q·j. Causal, window_left 1: the one query
  // (position 3) sees keys 2 and 3 only.
  options.causal = true;
  options.window_left = 1;
  Output o = exact(tiny_case(1, 1, {1}, {0, 1, 2, 3}, {1, 2, 4, 8}, options));
  CHECK(o.out[0] == Approx((4 * e * e + 8 * e * e * e) / (e * e + e * e * e)).epsilon(1e-13));
  CHECK(o.lse[0] == Approx(std::log(e * e + e * e * e)).epsilon(1e-13));

  // Not causal, window_left 0: query 0 (position 2) sees keys 2 and 3 (the
  // window bounds only the left side); query 1 (position 3) sees key 3 alone.
  options.causal = false;
  options.window_left = 0;
  o = exact(tiny_case(2, 1, {1, 0.5f}, {0, 1, 2, 3}, {1, 2, 4, 8}, options));
  CHECK(o.out[0] == Approx((4 * e * e + 8 * e * e * e) / (e * e + e * e * e)).epsilon(1e-13));
  CHECK(o.out[1] == Approx(8.0).epsilon(1e-13));
  CHECK(o.lse[1] == Approx(1.5).epsilon(1e-13));

  // Soft cap 2: s_j = 2 tanh(j / 2).
  options.window_left = -1;
  options.logits_soft_cap = 2.0f;
  o = exact(tiny_case(1, 1, {1}, {0, 1, 2}, {1, 2, 4}, options));
  double numerator = 0.0, denominator = 0.0;
  for (int j = 0; j < 3; ++j) {
    const double weight = std::exp(2.0 * std::tanh(j / 2.0));
    numerator += weight * double(1 << j);
    denominator += weight;
  }
  CHECK(o.out[0] == Approx(numerator / denominator).epsilon(1e-13));
  CHECK(o.lse[0] == Approx(std::log(denominator)).epsilon(1e-13));

  // Scores 0 and -2^-10, V = +1 and -1: the exact output is tanh(2^-11). The
  // kGpu model rounds p_1 = exp(-2^-10) to bf16 before P·V, which gives 1.0,
  // so its output cancels to exactly 0 (the kernel rounds P the same way).
  options.logits_soft_cap = 0.0f;
  const HostCase cancel = tiny_case(1, 1, {1}, {0, -0x1p-10f}, {1, -1}, options);
  CHECK(exact(cancel).out[0] == Approx(std::tanh(0x1p-11)).epsilon(1e-13));
  CHECK(run_reference(cancel, ref::Rounding::kGpu).out[0] == 0.0);

  // Default scale 1/sqrt(4): scores 1/2 and 0.
  o = exact(tiny_case(1, 4, {1, 1, 1, 1}, {1, 0, 0, 0, 0, 0, 0, 0}, {2, 2, 2, 2, 4, 4, 4, 4}, PrefillOptions{}));
  CHECK(o.out[3] == Approx((2 * std::sqrt(e) + 4) / (std::sqrt(e) + 1)).epsilon(1e-13));
}

// With V = 1 the exact output is 1. The kGpu model divides Σ round(p_j) by the
// fp32 Σ p_j, so it may deviate by up to the dtype's unit roundoff.
TEST_CASE("every row is a convex combination: V = 1 gives 1", "[reference]") {
  for (uint64_t seed = 200; seed < 220; ++seed) {
    HostCase c = make_case(random_spec(seed, small_limits()));
    INFO(c.describe());
    std::fill(c.v.begin(), c.v.end(), ref::from_float(1.0f, c.config.dtype));
    const Output exact = run_reference(c, ref::Rounding::kExact), gpu = run_reference(c, ref::Rounding::kGpu);
    const double u = ref::unit_roundoff(c.config.dtype);
    for (size_t e = 0; e < exact.out.size(); ++e) {
      const double expected = std::isinf(exact.lse[e / c.config.head_dim]) ? 0.0 : 1.0;
      REQUIRE(std::fabs(exact.out[e] - expected) <= kDoubleTol);
      REQUIRE(std::fabs(gpu.out[e] - expected) <= 2.0 * u);
    }
  }
}

TEST_CASE("fully masked rows give 0 and -inf in both roundings", "[reference]") {
  // Rows 0-1 of request 0 precede every key (causal); request 1 has no key.
  const HostCase c = make_case(fixed_spec(1, 2, 1, {5, 3}, {3, 0}, true));
  for (ref::Rounding rounding : {ref::Rounding::kExact, ref::Rounding::kGpu}) {
    const Output o = run_reference(c, rounding);
    for (int64_t token = 0; token < c.num_q_tokens; ++token) {
      const bool masked = token < 2 || token >= 5;
      for (int64_t head = 0; head < 2; ++head) {
        const int64_t row = token * 2 + head;
        INFO("token " << token << " head " << head << " rounding " << to_string(rounding));
        CHECK((o.lse[row] == -kInf) == masked);
        for (int64_t d = 0; d < 64; ++d) CHECK((o.out[row * 64 + d] == 0.0) == masked);
      }
    }
  }
}

TEST_CASE("unused cache slots never influence the result", "[reference]") {
  CaseSpec spec = fixed_spec(21, 2, 1, {17, 1, 4}, {17, 33, 4}, false);  // every last page ends early
  spec.extra_pages = 2;
  for (KvFormat format : {KvFormat::kPaged, KvFormat::kRagged}) {
    for (KvLayout layout : {KvLayout::kNHD, KvLayout::kHND}) {
      spec.format = format;
      spec.layout = layout;
      spec.poison_unused = true;
      const HostCase poisoned = make_case(spec);
      INFO(poisoned.describe());
      REQUIRE(std::any_of(poisoned.k.begin(), poisoned.k.end(),
                          [](uint16_t b) { return !std::isfinite(ref::bf16_to_float(b)); }));
      spec.poison_unused = false;
      const HostCase clean = make_case(spec);
      for (ref::Rounding rounding : {ref::Rounding::kExact, ref::Rounding::kGpu}) {
        const Output a = run_reference(poisoned, rounding), b = run_reference(clean, rounding);
        CHECK(all_finite(a.out));
        CHECK(a.out == b.out);
        CHECK(a.lse == b.lse);
      }
    }
  }
}

TEST_CASE("the comparator pinpoints bad elements", "[compare]") {
  const CaseSpec spec = fixed_spec(5, 2, 1, {4, 0, 6}, {10, 5, 30}, false);
  const HostCase c = make_case(spec);
  const References refs = compute_references(c, 2);
  const std::vector<uint16_t> good = to_bits(refs.out_gpu, c.config.dtype);
  const std::vector<float> good_lse = to_floats(refs.lse_gpu);
  REQUIRE(compare_prefill(c, refs, good.data(), good_lse.data()).pass);

  // Request 2, head 1, token 3, dim 5 off by 0.02: a visible error.
  std::vector<uint16_t> bad = good;
  const int64_t element = ((c.qo_indptr[2] + 3) * 2 + 1) * 64 + 5;
  bad[element] = ref::float_to_bf16(ref::bf16_to_float(bad[element]) + 0.02f);
  bad.back() = 0x7FC0;  // and a NaN further on
  std::vector<float> bad_lse = good_lse;
  bad_lse[1] += 1e-3f;  // request 0, token 0, head 1
  const CompareResult result = compare_prefill(c, refs, bad.data(), bad_lse.data());
  INFO(result.summary());
  CHECK_FALSE(result.pass);
  CHECK(result.bad_count == 2);
  CHECK(result.nonfinite_count == 1);
  const BadElement& first = result.first_bad;
  CHECK((first.request == 2 && first.qo_head == 1 && first.token == 3 && first.dim == 5));
  CHECK(first.got == ref::bf16_to_float(bad[element]));
  CHECK(first.expected == refs.out_exact[element]);
  CHECK(std::fabs(first.got - first.expected) > first.tol);
  CHECK(result.lse_bad_count == 1);
  CHECK((result.first_bad_lse.request == 0 && result.first_bad_lse.qo_head == 1 && result.first_bad_lse.token == 0));

  // A finite LSE where the row is fully masked fails too.
  CaseSpec masked = spec;
  masked.options.causal = false;
  masked.kv_lens = {10, 5, 0};
  const HostCase m = make_case(masked);
  const References masked_refs = compute_references(m, 2);
  const std::vector<uint16_t> masked_out = to_bits(masked_refs.out_gpu, m.config.dtype);
  std::vector<float> masked_lse = to_floats(masked_refs.lse_gpu);
  masked_lse.back() = 0.0f;
  CHECK(compare_prefill(m, masked_refs, masked_out.data(), masked_lse.data()).lse_bad_count == 1);
}

TEST_CASE("the tolerance catches a window that is one key too wide", "[compare]") {
  CaseSpec spec = fixed_spec(8, 2, 1, {300}, {300}, true);
  spec.head_dim = 128;
  spec.options.window_left = 4;
  const HostCase c = make_case(spec);
  spec.options.window_left = 5;
  const Output wide = run_reference(make_case(spec), ref::Rounding::kGpu);
  const std::vector<uint16_t> bits = to_bits(wide.out, c.config.dtype);
  const CompareResult result = compare_prefill(c, compute_references(c, 2), bits.data(), nullptr);
  INFO(result.summary());
  CHECK_FALSE(result.pass);
  CHECK(result.bad_count > result.num_elements / 4);
}

TEST_CASE("bit-identity comparison reports the first difference", "[compare]") {
  std::vector<uint16_t> a(100, 0x3F80), b = a;
  CHECK(first_bit_difference(a.data(), b.data(), 100) == -1);
  b[42] = 0x3F81;
  b[77] = 0;
  CHECK(first_bit_difference(a.data(), b.data(), 100) == 42);
  std::vector<float> x(10, 0.0f), y = x;
  y[3] = -0.0f;  // equal as numbers, not as bits
  CHECK(first_bit_difference(x.data(), y.data(), 10) == 3);
}

TEST_CASE("random_spec produces the promised edge cases", "[testdata]") {
  const RandomLimits limits;
  int empty = 0, single = 0, cached_prefix = 0, one_into_page = 0, no_kv = 0;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    const CaseSpec spec = random_spec(seed, limits);
    REQUIRE(spec.qo_lens.size() == spec.kv_lens.size());
    int64_t total_qo = 0;
    for (size_t b = 0; b < spec.qo_lens.size(); ++b) {
      const int32_t qo = spec.qo_lens[b], kv = spec.kv_lens[b];
      if (spec.options.causal) REQUIRE(qo <= kv);
      total_qo += qo;
      empty += qo == 0;
      single += qo == 1;
      cached_prefix += kv > qo && qo > 1;
      one_into_page += kv > 1 && kv % spec.page_size == 1 && spec.format == KvFormat::kPaged;
      no_kv += kv == 0 && qo > 0;
    }
    REQUIRE(total_qo > 0);
  }
  CHECK(empty > 20);
  CHECK(single > 20);
  CHECK(cached_prefix > 20);
  CHECK(one_into_page > 20);
  CHECK(no_kv > 5);
}

TEST_CASE("make_case lays out pages and rows as described", "[testdata]") {
  CaseSpec spec = random_spec(17, small_limits());
  spec.format = KvFormat::kPaged;
  spec.extra_pages = 4;
  const HostCase c = make_case(spec);
  INFO(c.describe());
  const int32_t used = c.kv_indptr.back();
  CHECK(c.config.num_pages == used + 4);
  CHECK(c.num_kv_rows == c.config.num_pages);
  CHECK(int64_t(c.k.size()) == int64_t(c.config.num_pages) * c.config.page_size * c.config.num_kv_heads * c.config.head_dim);
  std::set<int32_t> pages(c.kv_indices.begin(), c.kv_indices.end());
  CHECK(int32_t(pages.size()) == used);
  CHECK((pages.empty() || (*pages.begin() >= 0 && *pages.rbegin() < c.config.num_pages)));
  for (int32_t b = 0; b < c.num_requests(); ++b) CHECK(c.kv_len(b) == spec.kv_lens[b]);

  spec.format = KvFormat::kRagged;
  const HostCase r = make_case(spec);
  CHECK(r.num_kv_rows == r.kv_indptr.back() + spec.extra_rows);
  CHECK(r.config.kv_layout == KvLayout::kNHD);

  CHECK(w1_spec(512, true, 16).qo_lens.size() == 32);
  CHECK(w1_spec(16384, false, 0).format == KvFormat::kRagged);
  CHECK_THROWS_AS(w1_spec(1000, true, 16), std::invalid_argument);
  const CaseSpec w2 = w2_spec();
  CHECK(w2.qo_lens.size() == 16);
  CHECK(std::accumulate(w2.qo_lens.begin(), w2.qo_lens.end(), 0) == 19798);
  CHECK((w2.num_qo_heads == 32 && w2.num_kv_heads == 8 && w2.page_size == 16 && w2.options.causal));
}

}  // namespace ptxattn::testing
