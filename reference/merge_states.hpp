// CPU reference for merging attention states (merge_states / merge_state),
// in double, with the semantics of include/ptxattn/ptxattn.hpp ("Merging
// attention states"): m = max_k lse_k, w_k = exp(lse_k - m),
// v = Σ_k w_k v_k / Σ_k w_k, lse = m + log Σ_k w_k; empty states (lse = -inf)
// are left out and their v never read; no non-empty state: v = 0,
// lse = -inf; any lse NaN or +inf: v and lse NaN. Also the encoding of state
// tensors (StateDType) on the host and the GPU tolerance
// (docs/validation.md "Merging states").
#pragma once

#include <cstdint>
#include <vector>

#include "ptxattn/ptxattn.hpp"

namespace ptxattn::ref {

int64_t state_element_bytes(StateDType dtype);  // 2 or 4
// Unit roundoff of one rounding to `dtype` (bf16 2^-8, fp16 2^-11, fp32 2^-24).
double state_unit_roundoff(StateDType dtype);

// values rounded to `dtype` (nearest even) as raw little-endian bytes, and back.
std::vector<uint8_t> encode_states(const std::vector<float>& values, StateDType dtype);
std::vector<float> decode_states(const std::vector<uint8_t>& bytes, StateDType dtype);

// The shape of a stacked merge: v [num_tokens][num_states][num_heads][head_dim],
// lse [num_tokens][num_states][num_heads] (as MergeStatesTensors).
struct MergeShape {
  int64_t num_tokens = 0;
  int32_t num_states = 0;
  int32_t num_heads = 0;
  int32_t head_dim = 0;
};

// Per output element (e = (token · num_heads + head) · head_dim + d) and
// per row (r = token · num_heads + head): what the GPU's float32 rounding
// errors scale with.
struct MergeErrorScales {
  std::vector<double> abs_weighted;   // [e] Σ_k p_k |v_k,d|, p_k = w_k / Σ w (exact)
  std::vector<double> lse_magnitude;  // [r] max |lse_k| over the non-empty states (0: none)
};

// v_out [num_tokens][num_heads][head_dim], lse_out [num_tokens][num_heads]
// (both resized); scales may be null. Throws std::invalid_argument when the
// sizes do not match the shape.
void merge_states(const MergeShape& shape, const std::vector<float>& v, const std::vector<float>& lse,
                  std::vector<double>* v_out, std::vector<double>* lse_out, MergeErrorScales* scales = nullptr);

// Bounds on |gpu - exact| (docs/validation.md "Merging states", which derives
// them). The float32 merge is within
// (8·num_states + 8·lse_magnitude + 8)·2^-24 · abs_weighted of the exact v
// and within (8·num_states + 8·lse_magnitude + 8)·2^-24 + 2^-22·|lse| of the
// exact lse; v_out is then rounded once to out_dtype.
double merge_float_error_factor(int32_t num_states, double lse_magnitude);
double merge_v_tolerance(double exact, double abs_weighted, double lse_magnitude, int32_t num_states,
                         StateDType out_dtype);
double merge_lse_tolerance(double exact, double lse_magnitude, int32_t num_states);

}  // namespace ptxattn::ref
