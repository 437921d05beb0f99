// A deliberately plain attention in double, written apart from
// reference/attention.cpp (no Eigen, no shared helpers beyond HostCase) so the
// two can check each other. Tests only: it is slow.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "reference/testdata.hpp"

namespace ptxattn::testing {

// bf16/fp16 bits to double by the textbook formula (sign, exponent, fraction).
inline double naive_decode(uint16_t bits, DType dtype) {
  const int fraction_bits = dtype == DType::kBF16 ? 7 : 10;
  const int exponent_bits = 15 - fraction_bits;
  const int bias = (1 << (exponent_bits - 1)) - 1;
  const double sign = (bits & 0x8000) ? -1.0 : 1.0;
  const int exponent = (bits >> fraction_bits) & ((1 << exponent_bits) - 1);
  const int fraction = bits & ((1 << fraction_bits) - 1);
  if (exponent == (1 << exponent_bits) - 1) {
    return fraction ? std::numeric_limits<double>::quiet_NaN() : sign * std::numeric_limits<double>::infinity();
  }
  if (exponent == 0) return sign * std::ldexp(fraction, 1 - bias - fraction_bits);
  return sign * std::ldexp(fraction + (1 << fraction_bits), exponent - bias - fraction_bits);
}

// out: [tokens][H_qo][D], lse: [tokens][H_qo] (natural log, -inf when nothing is visible).
inline void naive_prefill(const HostCase& c, std::vector<double>* out, std::vector<double>* lse) {
  const PrefillConfig& cfg = c.config;
  const int H = cfg.num_qo_heads, HK = cfg.num_kv_heads, D = cfg.head_dim;
  const double scale = cfg.options.sm_scale != 0.0f ? cfg.options.sm_scale : 1.0 / std::sqrt(double(D));
  const double cap = cfg.options.logits_soft_cap;
  const int window = cfg.options.window_left;
  auto decode_all = [&](const std::vector<uint16_t>& bits) {
    std::vector<double> values(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) values[i] = naive_decode(bits[i], cfg.dtype);
    return values;
  };
  const std::vector<double> Q = decode_all(c.q), K = decode_all(c.k), V = decode_all(c.v);
  out->assign(c.num_q_tokens * H * D, 0.0);
  lse->assign(c.num_q_tokens * H, -std::numeric_limits<double>::infinity());

  for (int b = 0; b < c.num_requests(); ++b) {
    // Element offset of head 0 of every K/V token of the request, in order,
    // found by walking its pages slot by slot (or its ragged rows).
    std::vector<int64_t> token_offset;
    if (cfg.kv_format == KvFormat::kRagged) {
      for (int row = c.kv_indptr[b]; row < c.kv_indptr[b + 1]; ++row) token_offset.push_back(int64_t(row) * HK * D);
    } else {
      for (int i = c.kv_indptr[b]; i < c.kv_indptr[b + 1]; ++i) {
        const int64_t page = c.kv_indices[i];
        const int slots = (i + 1 == c.kv_indptr[b + 1]) ? c.kv_last_page_len[b] : cfg.page_size;
        for (int slot = 0; slot < slots; ++slot) {
          token_offset.push_back(cfg.kv_layout == KvLayout::kNHD ? (page * cfg.page_size + slot) * HK * D
                                                                 : (page * HK * cfg.page_size + slot) * D);
        }
      }
    }
    // Distance between heads of one token.
    const int64_t head_stride = cfg.kv_format == KvFormat::kPaged && cfg.kv_layout == KvLayout::kHND
                                    ? int64_t(cfg.page_size) * D
                                    : D;
    const int kv_len = int(token_offset.size());
    const int qo_len = c.qo_indptr[b + 1] - c.qo_indptr[b];

    for (int i = 0; i < qo_len; ++i) {
      const int64_t token = c.qo_indptr[b] + i;
      const int pos = kv_len - qo_len + i;
      for (int h = 0; h < H; ++h) {
        const int kv_head = h / (H / HK);
        const double* q = &Q[(token * H + h) * D];
        std::vector<double> score(kv_len);
        std::vector<bool> visible(kv_len);
        double max_score = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < kv_len; ++j) {
          visible[j] = true;
          if (cfg.options.causal && j > pos) visible[j] = false;
          if (window >= 0 && j < int64_t(pos) - window) visible[j] = false;
          if (!visible[j]) continue;
          const double* k = &K[token_offset[j] + kv_head * head_stride];
          double dot = 0.0;
          for (int d = 0; d < D; ++d) dot += q[d] * k[d];
          score[j] = dot * scale;
          if (cap > 0.0) score[j] = cap * std::tanh(score[j] / cap);
          if (score[j] > max_score) max_score = score[j];
        }
        double denominator = 0.0;
        std::vector<double> numerator(D, 0.0);
        for (int j = 0; j < kv_len; ++j) {
          if (!visible[j]) continue;
          const double weight = std::exp(score[j] - max_score);
          denominator += weight;
          const double* v = &V[token_offset[j] + kv_head * head_stride];
          for (int d = 0; d < D; ++d) numerator[d] += weight * v[d];
        }
        if (denominator == 0.0) continue;  // nothing visible: 0 and -inf
        for (int d = 0; d < D; ++d) (*out)[(token * H + h) * D + d] = numerator[d] / denominator;
        (*lse)[token * H + h] = max_score + std::log(denominator);
      }
    }
  }
}

}  // namespace ptxattn::testing
