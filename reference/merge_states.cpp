// CPU reference for merging attention states (see merge_states.hpp): each
// (token, head) row is a weighted mean of its non-empty states' v rows,
// computed in double with Eigen.
#include "reference/merge_states.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "reference/numeric.hpp"

namespace ptxattn::ref {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kFloatRoundoff = 0x1p-24;

DType storage_dtype(StateDType dtype) { return dtype == StateDType::kBF16 ? DType::kBF16 : DType::kFP16; }

}  // namespace

int64_t state_element_bytes(StateDType dtype) { return dtype == StateDType::kFP32 ? 4 : 2; }

double state_unit_roundoff(StateDType dtype) {
  return dtype == StateDType::kFP32 ? kFloatRoundoff : unit_roundoff(storage_dtype(dtype));
}

std::vector<uint8_t> encode_states(const std::vector<float>& values, StateDType dtype) {
  std::vector<uint8_t> bytes(values.size() * state_element_bytes(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == StateDType::kFP32) {
      std::memcpy(&bytes[4 * i], &values[i], 4);
    } else {
      const uint16_t bits = from_float(values[i], storage_dtype(dtype));
      std::memcpy(&bytes[2 * i], &bits, 2);
    }
  }
  return bytes;
}

std::vector<float> decode_states(const std::vector<uint8_t>& bytes, StateDType dtype) {
  const int64_t size = state_element_bytes(dtype);
  std::vector<float> values(bytes.size() / size);
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == StateDType::kFP32) {
      std::memcpy(&values[i], &bytes[4 * i], 4);
    } else {
      uint16_t bits;
      std::memcpy(&bits, &bytes[2 * i], 2);
      values[i] = to_float(bits, storage_dtype(dtype));
    }
  }
  return values;
}

void merge_states(const MergeShape& shape, const std::vector<float>& v, const std::vector<float>& lse,
                  std::vector<double>* v_out, std::vector<double>* lse_out, MergeErrorScales* scales) {
  const int64_t rows = shape.num_tokens * shape.num_heads, d = shape.head_dim, n = shape.num_states;
  if (int64_t(lse.size()) != rows * n || int64_t(v.size()) != rows * n * d)
    throw std::invalid_argument("ref::merge_states: v has " + std::to_string(v.size()) + " and lse " +
                                std::to_string(lse.size()) + " elements, not " + std::to_string(rows * n * d) +
                                " and " + std::to_string(rows * n));
  v_out->assign(rows * d, 0.0);
  lse_out->assign(rows, -kInfinity);
  if (scales) {
    scales->abs_weighted.assign(rows * d, 0.0);
    scales->lse_magnitude.assign(rows, 0.0);
  }
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t token = row / shape.num_heads, head = row % shape.num_heads;
    // State k of this row: lse at (token · n + k) · heads + head, v row at that index · d.
    const auto at = [&](int64_t k) { return (token * n + k) * shape.num_heads + head; };
    bool poisoned = false;
    double max = -kInfinity, magnitude = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      const double l = lse[at(k)];
      if (std::isnan(l) || l == kInfinity) poisoned = true;
      if (l == -kInfinity || poisoned) continue;
      max = std::max(max, l);
      magnitude = std::max(magnitude, std::abs(l));
    }
    Eigen::Map<Eigen::VectorXd> out(v_out->data() + row * d, d);
    if (poisoned) {
      out.setConstant(kNaN);
      (*lse_out)[row] = kNaN;
      continue;
    }
    if (max == -kInfinity) continue;  // every state empty: 0 and -inf, as assigned
    // p_k = w_k / Σ w over the non-empty states; empty ones keep p = 0 and are not read.
    Eigen::VectorXd weighted = Eigen::VectorXd::Zero(d), abs_weighted = Eigen::VectorXd::Zero(d);
    double sum = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      const double l = lse[at(k)];
      if (l == -kInfinity) continue;
      const double w = std::exp(l - max);
      const Eigen::VectorXd state =
          Eigen::Map<const Eigen::VectorXf>(v.data() + at(k) * d, d).cast<double>();
      weighted += w * state;
      abs_weighted += w * state.cwiseAbs();
      sum += w;
    }
    out = weighted / sum;
    (*lse_out)[row] = max + std::log(sum);
    if (scales) {
      Eigen::Map<Eigen::VectorXd>(scales->abs_weighted.data() + row * d, d) = abs_weighted / sum;
      scales->lse_magnitude[row] = magnitude;
    }
  }
}

double merge_float_error_factor(int32_t num_states, double lse_magnitude) {
  return (8.0 * num_states + 8.0 * lse_magnitude + 8.0) * kFloatRoundoff;
}

double merge_v_tolerance(double exact, double abs_weighted, double lse_magnitude, int32_t num_states,
                         StateDType out_dtype) {
  const double float_error = merge_float_error_factor(num_states, lse_magnitude) * abs_weighted;
  // One rounding to out_dtype of a float within float_error of exact; below
  // the normal range the rounding error is absolute (half a subnormal step).
  const double subnormal_step = out_dtype == StateDType::kFP32 ? 0x1p-149
                                                               : subnormal_spacing(storage_dtype(out_dtype));
  return float_error + state_unit_roundoff(out_dtype) * (std::abs(exact) + float_error) + 0.5 * subnormal_step;
}

double merge_lse_tolerance(double exact, double lse_magnitude, int32_t num_states) {
  return merge_float_error_factor(num_states, lse_magnitude) + 4 * kFloatRoundoff * std::abs(exact);
}

}  // namespace ptxattn::ref
