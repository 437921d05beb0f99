// CPU reference for batch prefill attention (Eigen), in two roundings:
//   kExact  inputs decoded exactly to double, everything computed in double:
//           the mathematical result the GPU output is measured against.
//   kGpu    the rounding of the GPU kernel: fp32 scores, fp32 softmax with
//           exp2 and the scale folded into log2 units, P rounded to the input
//           dtype before P·V, fp32 P·V, O = acc * (1/l) rounded to the dtype.
// compare.hpp derives its per-element tolerance from both plus ErrorScales.
//
// Semantics (include/ptxattn/ptxattn.hpp, docs/validation.md):
//   s_j = sm_scale · q·k_j (sm_scale 0 means 1/sqrt(head_dim));
//   soft cap (logits_soft_cap > 0): s_j = cap · tanh(s_j / cap), before masking;
//   query i of a request with qo_len queries and kv_len keys sits at position
//   pos = kv_len - qo_len + i and sees key j iff j < kv_len, (causal) j <= pos,
//   (window_left >= 0) j >= pos - window_left;
//   o = Σ_j softmax(s)_j v_j over visible keys; lse = log Σ_j exp(s_j) (natural log).
//   A row with no visible key has o = 0 and lse = -inf.
//   GQA: qo head h reads kv head h / (num_qo_heads / num_kv_heads).
//
// Malformed indices (out-of-range pages, decreasing indptr, ...) throw
// std::invalid_argument naming the array and the bad value; this is test
// infrastructure, so it fails loudly rather than returning a Status.
#pragma once

#include <cstdint>
#include <vector>

#include "ptxattn/ptxattn.hpp"

namespace ptxattn::ref {

enum class Rounding { kExact, kGpu };

// Raw bf16/fp16 bits on the host, shaped as in ptxattn.hpp: q is
// [num_q_tokens][num_qo_heads][head_dim]; k and v are the paged pool
// (NHD or HND) or the ragged rows, as the config says.
struct HostTensors {
  const uint16_t* q = nullptr;
  const uint16_t* k = nullptr;
  const uint16_t* v = nullptr;
};

// out: [num_q_tokens][num_qo_heads][head_dim]; lse: [num_q_tokens][num_qo_heads]
// or null. Both are resized. kGpu outputs are dtype values (exact in double),
// its lse a float value. num_threads 0 uses every hardware thread.
void prefill(const PrefillConfig& config, const BatchIndices& indices, const HostTensors& tensors,
             Rounding rounding, std::vector<double>* out, std::vector<double>* lse,
             int num_threads = 0);

// What the rounding errors of a fp32 kernel scale with, per output element
// (e = token·H_qo·D + head·D + d) or per row (r = token·H_qo + head), for the
// tolerance derivation in docs/validation.md. p_j are the exact softmax
// probabilities of the row, the sums run over its visible keys.
struct ErrorScales {
  std::vector<float> abs_weighted;   // [e] Σ_j p_j |v_jd|
  std::vector<float> rms_weighted;   // [e] sqrt(Σ_j p_j² v_jd²)
  std::vector<float> v_norm;         // [e] sqrt(Σ_j v_jd²)
  std::vector<float> score_bound;    // [r] sm_scale · |q| · max_j |k_j| (Euclidean norms)
  std::vector<int32_t> visible_keys; // [r] number of visible keys
};

// kExact prefill that also fills `scales` (one pass: the probabilities are shared).
void prefill_exact_with_scales(const PrefillConfig& config, const BatchIndices& indices,
                               const HostTensors& tensors, std::vector<double>* out,
                               std::vector<double>* lse, ErrorScales* scales, int num_threads = 0);

}  // namespace ptxattn::ref
