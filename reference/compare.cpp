// GPU-vs-reference comparison (see compare.hpp). The tolerance formulas are
// derived in docs/validation.md, "Tolerances"; the names below follow it.
#include "reference/compare.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "reference/numeric.hpp"

namespace ptxattn::testing {
namespace {

// Per-element failure probability a correct kernel may have under the
// random-rounding model; kappa = sqrt(2 ln(2 / p)) is the Hoeffding factor.
constexpr double kFailureProbability = 1e-12;
// Relative error of one fp32 add in the kernel's accumulators, allowing for
// truncation instead of round-to-nearest in the tensor cores.
constexpr double kAccumulatorUnit = 0x1p-23;

double hoeffding_factor() { return std::sqrt(2.0 * std::log(2.0 / kFailureProbability)); }

// Bound on the fp32 arithmetic differences between two faithful kernels for
// one row, relative to Σ_j p_j|v_j| (output) or absolute (LSE): accumulation
// over the visible keys, over the D products of each score (whose effect on
// the output is at most twice the score error), and exp2/FMA/log2 rounding.
double fp32_row_term(int32_t visible_keys, int32_t head_dim, double score_bound, double kappa) {
  return 2.0 * kappa * kAccumulatorUnit *
         (std::sqrt(double(visible_keys)) + 2.0 * std::sqrt(double(head_dim)) * score_bound + 1.0);
}

// Maps a flat [token][head][...] row to (request, head, token within request).
BadElement locate(const HostCase& c, int64_t row, int32_t dim, double got, double expected, double tol) {
  BadElement bad;
  bad.found = true;
  const int64_t token = row / c.config.num_qo_heads;
  const auto next = std::upper_bound(c.qo_indptr.begin(), c.qo_indptr.end(), token);
  bad.request = int32_t(next - c.qo_indptr.begin()) - 1;
  bad.qo_head = int32_t(row % c.config.num_qo_heads);
  bad.token = token - c.qo_indptr[bad.request];
  bad.dim = dim;
  bad.got = got;
  bad.expected = expected;
  bad.tol = tol;
  return bad;
}

void compare_lse(const HostCase& c, const References& refs, const float* gpu_lse, const CompareOptions& options,
                 double kappa, CompareResult* result) {
  result->lse_compared = true;
  const int64_t rows = int64_t(refs.lse_exact.size());
  for (int64_t row = 0; row < rows; ++row) {
    const double got = gpu_lse[row];
    const double expected = refs.lse_exact[row];
    const double model = refs.lse_gpu[row];
    bool bad;
    double tol = 0.0;
    if (std::isinf(expected)) {  // fully masked row: only -inf is right
      bad = !(std::isinf(got) && got < 0.0);
      if (!std::isfinite(got) && bad) ++result->lse_nonfinite_count;
    } else {
      const ref::ErrorScales& s = refs.scales;
      tol = (options.include_model_gap ? std::fabs(expected - model) : 0.0) +
            kAccumulatorUnit * std::fabs(model) +
            fp32_row_term(s.visible_keys[row], c.config.head_dim, s.score_bound[row], kappa);
      const double err = std::fabs(got - expected);
      bad = !(err <= tol);  // NaN fails
      if (!std::isfinite(got)) ++result->lse_nonfinite_count;
      if (std::isfinite(got)) result->lse_max_abs_err = std::max(result->lse_max_abs_err, err);
    }
    if (!bad) continue;
    if (result->lse_bad_count++ == 0) result->first_bad_lse = locate(c, row, -1, got, expected, tol);
  }
}

}  // namespace

References compute_references(const HostCase& c, int num_threads) {
  References refs;
  ref::prefill_exact_with_scales(c.config, c.indices(), c.tensors(), &refs.out_exact, &refs.lse_exact, &refs.scales,
                                 num_threads);
  ref::prefill(c.config, c.indices(), c.tensors(), ref::Rounding::kGpu, &refs.out_gpu, &refs.lse_gpu, num_threads);
  return refs;
}

CompareResult compare_prefill(const HostCase& c, const References& refs, const uint16_t* gpu_out,
                              const float* gpu_lse, const CompareOptions& options) {
  CompareResult result;
  const DType dtype = c.config.dtype;
  const int32_t dim = c.config.head_dim;
  const double u = ref::unit_roundoff(dtype);
  const double subnormal = ref::subnormal_spacing(dtype);
  const double kappa = hoeffding_factor();
  const ref::ErrorScales& s = refs.scales;
  result.num_elements = int64_t(refs.out_exact.size());
  double abs_err_sum = 0.0;
  for (int64_t e = 0; e < result.num_elements; ++e) {
    const int64_t row = e / dim;
    const double got = ref::to_double(gpu_out[e], dtype);
    const double expected = refs.out_exact[e];
    const double model = refs.out_gpu[e];
    const double weighted_abs = s.abs_weighted[e];  // Σ p_j |v_jd|
    const double p_rounding =
        std::min(2.0 * u * weighted_abs, 2.0 * kappa * u * s.rms_weighted[e]) + kappa * subnormal * s.v_norm[e];
    const double tol = (options.include_model_gap ? std::fabs(expected - model) : 0.0) +
                       2.0 * u * std::fabs(model) + subnormal + p_rounding +
                       fp32_row_term(s.visible_keys[row], dim, s.score_bound[row], kappa) * weighted_abs;
    const double err = std::fabs(got - expected);
    if (!std::isfinite(got)) {
      ++result.nonfinite_count;
    } else {
      result.max_abs_err = std::max(result.max_abs_err, err);
      result.max_rel_err = std::max(result.max_rel_err, err / std::max(std::fabs(expected), weighted_abs));
      result.max_err_over_tol = std::max(result.max_err_over_tol, err / tol);
      abs_err_sum += err;
    }
    if (err <= tol) continue;  // NaN fails
    if (result.bad_count++ == 0) result.first_bad = locate(c, row, int32_t(e % dim), got, expected, tol);
  }
  const int64_t finite = result.num_elements - result.nonfinite_count;
  result.mean_abs_err = finite > 0 ? abs_err_sum / double(finite) : 0.0;
  if (gpu_lse != nullptr) compare_lse(c, refs, gpu_lse, options, kappa, &result);
  result.pass = result.bad_count == 0 && result.lse_bad_count == 0;
  return result;
}

std::string BadElement::to_string() const {
  if (!found) return "none";
  std::ostringstream text;
  text.precision(8);
  text << "request " << request << " head " << qo_head << " token " << token;
  if (dim >= 0) {
    text << " dim " << dim;
  } else {
    text << " lse";
  }
  text << ": got " << got << ", expected " << expected << " (tol " << tol << ", err " << std::fabs(got - expected)
       << ")";
  return text.str();
}

std::string CompareResult::summary() const {
  std::ostringstream text;
  text.precision(3);
  text << (pass ? "PASS" : "FAIL") << ": " << bad_count << "/" << num_elements << " bad, " << nonfinite_count
       << " non-finite, max abs err " << max_abs_err << ", max rel err " << max_rel_err << ", mean abs err "
       << mean_abs_err << ", max err/tol " << max_err_over_tol;
  if (bad_count > 0) text << "; first bad: " << first_bad.to_string();
  if (lse_compared) {
    text << "; lse: " << lse_bad_count << " bad, " << lse_nonfinite_count << " non-finite, max abs err "
         << lse_max_abs_err;
    if (lse_bad_count > 0) text << "; first bad lse: " << first_bad_lse.to_string();
  }
  return text.str();
}

int64_t first_bit_difference(const uint16_t* a, const uint16_t* b, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (a[i] != b[i]) return i;
  }
  return -1;
}

int64_t first_bit_difference(const float* a, const float* b, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return i;
  }
  return -1;
}

}  // namespace ptxattn::testing
