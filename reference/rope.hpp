// CPU reference for the RoPE kernels: frequencies, cos/sin, the rotation of
// rows, the cos/sin cache and where appended K/V tokens land in a paged cache.
// Two roundings (ref::Rounding, as for attention):
//   kExact  everything in double: angle = position · freq, std::cos/std::sin,
//           rotation in double, no final rounding. The ground truth.
//   kGpu    what the kernels compute: the angle in half turns
//           u = position · (freq / pi), reduced exactly in double to
//           x = u - 2·rint(u/2) in [-1, 1] and rounded to float; cos/sin =
//           cos(pi·x), sin(pi·x) rounded to float (the GPU's sincospif is within
//           one float ulp of these); the rotation in float exactly as the kernels
//           evaluate it: a' = fma(a, c, -(b·s)), b' = fma(b, c, a·s), with
//           b·s and a·s rounded to float first. The caller rounds to the dtype.
// Conventions are the ones of include/ptxattn/ptxattn.hpp (RoPE section).
// Malformed inputs throw std::invalid_argument (test infrastructure).
#pragma once

#include <cstdint>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/attention.hpp"  // ref::Rounding

namespace ptxattn::ref {

struct CosSin {
  double cos;
  double sin;
};

// freq_i, i in [0, rotary_dim/2), in radians per position (double).
std::vector<double> rope_frequencies(const RopeConfig& rope);

// The kGpu angle of (position, freq) in half turns: float in [-1, 1].
float rope_gpu_half_turns(int64_t position, double frequency);

CosSin rope_cos_sin(int64_t position, double frequency, Rounding rounding);

// [max_position][rotary_dim]: cos of every frequency, then sin (kGpu values
// are floats held in double).
std::vector<double> rope_cos_sin_cache(int32_t max_position, const RopeConfig& rope, Rounding rounding);

// One row of head_dim values: pairs (NeoX or GPT-J) rotated with cos_sin
// (rotary_dim/2 entries, one per frequency), dims >= rotary_dim copied.
void rope_rotate_row(const float* in, double* out, int32_t head_dim, int32_t rotary_dim, bool interleave,
                     const CosSin* cos_sin, Rounding rounding);

// Position of every token from request indptr + offsets (RopePositions).
std::vector<int32_t> rope_positions_from_indptr(const std::vector<int32_t>& indptr,
                                                const std::vector<int32_t>& offsets);

// x: [num_tokens][heads][head_dim] as float (values of the tensor dtype);
// positions: [num_tokens]. Returns the rotated rows (before dtype rounding).
std::vector<double> apply_rope(const std::vector<float>& x, int32_t heads, int32_t head_dim,
                               const std::vector<int32_t>& positions, const RopeConfig& rope, Rounding rounding);

// As apply_rope, with cos/sin read from a cache ([max_position][rotary_dim]
// floats). A position outside [0, max_position) gives cos = sin = NaN.
std::vector<double> apply_rope_with_cos_sin_cache(const std::vector<float>& x, int32_t heads, int32_t head_dim,
                                                  const std::vector<int32_t>& positions,
                                                  const std::vector<float>& cos_sin_cache, int32_t max_position,
                                                  int32_t rotary_dim, bool interleave, Rounding rounding);

// Where appended token t (row t of k_new / v_new) lands.
struct AppendTarget {
  int32_t request;
  int32_t position;  // kv position within the request
  int32_t page;      // index into the pool
  int32_t slot;      // position % page_size
};

// One target per appended token, in row order. Throws on indices that
// plan_append_paged_kv would refuse (except the same-slot rule).
std::vector<AppendTarget> append_targets(const AppendIndices& indices, int32_t page_size);

// Element offset of row (page, slot, head) in a paged pool.
int64_t paged_row_offset(KvLayout layout, int32_t page_size, int32_t num_kv_heads, int32_t head_dim, int32_t page,
                         int32_t slot, int32_t head);

// ---- Accuracy of the GPU kernels (docs/validation.md "RoPE accuracy", docs/validator.md "RoPE tolerance") ----

// GPU cos/sin against the exact values: x = half turns rounded to float
// (|x| <= 1, so pi · 2^-25), sincospif (1 ulp <= 2^-24), double terms (< 1e-9).
inline constexpr double kRopeCosSinBound = 3.14159265358979323846 * 0x1p-25 + 0x1p-24 + 1e-9;

// Index of the element that element `dim` of a row is rotated with (NeoX:
// dim and dim + rotary_dim/2; GPT-J: 2j and 2j+1). dim < rotary_dim.
int32_t rope_pair_partner(int32_t dim, int32_t rotary_dim, bool interleave);

// Bound on |gpu - r| for a rotated element whose pair is (a, b), r being a
// reference value before dtype rounding and cos_sin_error how far the GPU's
// cos/sin may be from that reference's. The float results differ by at most
// (|a| + |b|) · (cos_sin_error + 2^-22) (the cos/sin gap, plus the product
// and fma roundings of both sides); then the GPU rounds once to the dtype.
double rope_rotated_tolerance(double r, double pair_magnitude, double cos_sin_error, DType dtype);

}  // namespace ptxattn::ref
