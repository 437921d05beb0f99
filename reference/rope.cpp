// CPU reference for RoPE (see rope.hpp). Written independently of the
// library's host code (src/rope_api.cpp): the Llama-3.1 rule is stated with
// wavelengths as in Meta's published code, the library's with a clamp.
#include "reference/rope.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "reference/numeric.hpp"

namespace ptxattn::ref {
namespace {

constexpr double kPi = 3.14159265358979323846;

// NOTES: g++ 12.2 at -O2 fuses std::cos and std::sin of one angle into
// sincos and then drops the float conversions of both results (checked on
// this project's toolchain), so kGpu's rounding to float goes through a volatile.
float round_to_float(double value) {
  volatile float rounded = float(value);
  return rounded;
}

void require(bool condition, const std::string& message) {
  if (!condition) throw std::invalid_argument("ref rope: " + message);
}

void check_rope(const RopeConfig& rope) {
  require(rope.rotary_dim > 0 && rope.rotary_dim % 2 == 0,
          "rotary_dim = " + std::to_string(rope.rotary_dim) + " must be even and positive");
  require(rope.theta > 0 && rope.rope_scale > 0, "theta and rope_scale must be positive");
  if (rope.llama31)
    require(rope.low_freq_factor > 0 && rope.high_freq_factor > rope.low_freq_factor && rope.old_context_len > 0,
            "llama31 needs 0 < low_freq_factor < high_freq_factor and old_context_len > 0");
}

// (a, b) -> (a·c - b·s, b·c + a·s), in the given rounding.
void rotate_pair(float a, float b, CosSin cs, Rounding rounding, double* a_out, double* b_out) {
  if (rounding == Rounding::kExact) {
    *a_out = double(a) * cs.cos - double(b) * cs.sin;
    *b_out = double(b) * cs.cos + double(a) * cs.sin;
    return;
  }
  const float c = float(cs.cos), s = float(cs.sin);
  const float b_sin = b * s, a_sin = a * s;  // rounded to float, as the kernel's __fmul_rn
  *a_out = std::fma(a, c, -b_sin);
  *b_out = std::fma(b, c, a_sin);
}

}  // namespace

std::vector<double> rope_frequencies(const RopeConfig& rope) {
  check_rope(rope);
  const int32_t half = rope.rotary_dim / 2;
  std::vector<double> freq(half);
  for (int32_t i = 0; i < half; ++i) {
    const double base = std::pow(double(rope.theta), -2.0 * i / rope.rotary_dim);
    if (!rope.llama31) {
      freq[i] = base / rope.rope_scale;
      continue;
    }
    // Llama 3.1: short wavelengths kept, long ones divided by the factor,
    // linear in old_context_len / wavelength between the two limits.
    const double wavelength = 2 * kPi / base;
    const double high_freq_wavelength = double(rope.old_context_len) / rope.high_freq_factor;
    const double low_freq_wavelength = double(rope.old_context_len) / rope.low_freq_factor;
    if (wavelength < high_freq_wavelength) {
      freq[i] = base;
    } else if (wavelength > low_freq_wavelength) {
      freq[i] = base / rope.rope_scale;
    } else {
      const double smooth = (rope.old_context_len / wavelength - rope.low_freq_factor) /
                            (double(rope.high_freq_factor) - rope.low_freq_factor);
      freq[i] = (1 - smooth) * base / rope.rope_scale + smooth * base;
    }
  }
  return freq;
}

float rope_gpu_half_turns(int64_t position, double frequency) {
  const double u = double(position) * (frequency / kPi);
  // u - 2·rint(u/2) is exact in double (Sterbenz), so only the float rounding loses anything.
  return float(u - 2.0 * std::nearbyint(0.5 * u));
}

CosSin rope_cos_sin(int64_t position, double frequency, Rounding rounding) {
  if (rounding == Rounding::kExact) {
    const double angle = double(position) * frequency;
    return {std::cos(angle), std::sin(angle)};
  }
  const double angle = kPi * double(rope_gpu_half_turns(position, frequency));
  return {round_to_float(std::cos(angle)), round_to_float(std::sin(angle))};
}

std::vector<double> rope_cos_sin_cache(int32_t max_position, const RopeConfig& rope, Rounding rounding) {
  require(max_position >= 0, "max_position = " + std::to_string(max_position) + " must be >= 0");
  const std::vector<double> freq = rope_frequencies(rope);
  const int32_t half = rope.rotary_dim / 2;
  std::vector<double> cache(size_t(max_position) * rope.rotary_dim);
  for (int32_t p = 0; p < max_position; ++p)
    for (int32_t i = 0; i < half; ++i) {
      const CosSin cs = rope_cos_sin(p, freq[i], rounding);
      cache[size_t(p) * rope.rotary_dim + i] = cs.cos;
      cache[size_t(p) * rope.rotary_dim + half + i] = cs.sin;
    }
  return cache;
}

void rope_rotate_row(const float* in, double* out, int32_t head_dim, int32_t rotary_dim, bool interleave,
                     const CosSin* cos_sin, Rounding rounding) {
  require(rotary_dim >= 0 && rotary_dim % 2 == 0 && rotary_dim <= head_dim,
          "rotary_dim = " + std::to_string(rotary_dim) + " must be even and in [0, head_dim]");
  const int32_t half = rotary_dim / 2;
  for (int32_t i = 0; i < half; ++i) {
    // NeoX: (i, i + half); GPT-J: (2i, 2i + 1). Both use frequency i.
    const int32_t first = interleave ? 2 * i : i;
    const int32_t second = interleave ? 2 * i + 1 : i + half;
    rotate_pair(in[first], in[second], cos_sin[i], rounding, &out[first], &out[second]);
  }
  for (int32_t i = rotary_dim; i < head_dim; ++i) out[i] = in[i];
}

std::vector<int32_t> rope_positions_from_indptr(const std::vector<int32_t>& indptr,
                                                const std::vector<int32_t>& offsets) {
  require(!indptr.empty() && indptr.size() == offsets.size() + 1 && indptr[0] == 0,
          "indptr needs offsets.size() + 1 entries starting at 0");
  std::vector<int32_t> positions;
  for (size_t b = 0; b < offsets.size(); ++b) {
    require(indptr[b + 1] >= indptr[b], "indptr must be non-decreasing");
    for (int32_t t = indptr[b]; t < indptr[b + 1]; ++t) positions.push_back(offsets[b] + (t - indptr[b]));
  }
  return positions;
}

namespace {

// Rotates every row of token t with cos_sin_of(t) (rotary_dim/2 entries).
template <typename CosSinOf>
std::vector<double> rotate_rows(const std::vector<float>& x, int32_t heads, int32_t head_dim, size_t num_tokens,
                                int32_t rotary_dim, bool interleave, Rounding rounding, CosSinOf cos_sin_of) {
  require(heads > 0 && head_dim > 0 && x.size() == num_tokens * heads * head_dim,
          "x must hold num_tokens * heads * head_dim values");
  std::vector<double> out(x.size());
  std::vector<CosSin> cos_sin(rotary_dim / 2);
  for (size_t t = 0; t < num_tokens; ++t) {
    cos_sin_of(t, cos_sin.data());
    for (int32_t h = 0; h < heads; ++h) {
      const size_t row = (t * heads + h) * head_dim;
      rope_rotate_row(&x[row], &out[row], head_dim, rotary_dim, interleave, cos_sin.data(), rounding);
    }
  }
  return out;
}

}  // namespace

std::vector<double> apply_rope(const std::vector<float>& x, int32_t heads, int32_t head_dim,
                               const std::vector<int32_t>& positions, const RopeConfig& rope, Rounding rounding) {
  const std::vector<double> freq = rope_frequencies(rope);
  return rotate_rows(x, heads, head_dim, positions.size(), rope.rotary_dim, rope.interleave, rounding,
                     [&](size_t t, CosSin* cos_sin) {
                       for (size_t i = 0; i < freq.size(); ++i)
                         cos_sin[i] = rope_cos_sin(positions[t], freq[i], rounding);
                     });
}

std::vector<double> apply_rope_with_cos_sin_cache(const std::vector<float>& x, int32_t heads, int32_t head_dim,
                                                  const std::vector<int32_t>& positions,
                                                  const std::vector<float>& cos_sin_cache, int32_t max_position,
                                                  int32_t rotary_dim, bool interleave, Rounding rounding) {
  require(rotary_dim > 0 && rotary_dim % 2 == 0, "rotary_dim must be even and positive");
  require(max_position >= 0 && cos_sin_cache.size() == size_t(max_position) * rotary_dim,
          "cos_sin_cache must hold max_position * rotary_dim values");
  const int32_t half = rotary_dim / 2;
  return rotate_rows(x, heads, head_dim, positions.size(), rotary_dim, interleave, rounding,
                     [&](size_t t, CosSin* cos_sin) {
                       const int32_t p = positions[t];
                       for (int32_t i = 0; i < half; ++i) {
                         if (p < 0 || p >= max_position) {
                           cos_sin[i] = {NAN, NAN};
                           continue;
                         }
                         const float* row = &cos_sin_cache[size_t(p) * rotary_dim];
                         cos_sin[i] = {row[i], row[half + i]};
                       }
                     });
}

std::vector<AppendTarget> append_targets(const AppendIndices& indices, int32_t page_size) {
  require(page_size > 0 && indices.num_requests >= 0, "page_size must be positive, num_requests >= 0");
  require(indices.append_indptr && indices.kv_indptr && indices.append_indptr[0] == 0 && indices.kv_indptr[0] == 0,
          "append_indptr and kv_indptr must be given and start at 0");
  std::vector<AppendTarget> targets;
  for (int32_t b = 0; b < indices.num_requests; ++b) {
    const int32_t pages = indices.kv_indptr[b + 1] - indices.kv_indptr[b];
    const int32_t append_len = indices.append_indptr[b + 1] - indices.append_indptr[b];
    require(pages >= 0 && append_len >= 0, "indptrs must be non-decreasing (request " + std::to_string(b) + ")");
    const int64_t kv_len = pages == 0 ? 0 : int64_t(page_size) * (pages - 1) + indices.kv_last_page_len[b];
    require(append_len <= kv_len, "request " + std::to_string(b) + " appends more tokens than its kv_len");
    for (int32_t j = 0; j < append_len; ++j) {
      const int32_t position = int32_t(kv_len - append_len + j);
      const int32_t page = indices.kv_indices[indices.kv_indptr[b] + position / page_size];
      targets.push_back({b, position, page, position % page_size});
    }
  }
  return targets;
}

int64_t paged_row_offset(KvLayout layout, int32_t page_size, int32_t num_kv_heads, int32_t head_dim, int32_t page,
                         int32_t slot, int32_t head) {
  const int64_t page_elements = int64_t(page_size) * num_kv_heads * head_dim;
  if (layout == KvLayout::kNHD) return page * page_elements + (int64_t(slot) * num_kv_heads + head) * head_dim;
  return page * page_elements + (int64_t(head) * page_size + slot) * head_dim;
}

int32_t rope_pair_partner(int32_t dim, int32_t rotary_dim, bool interleave) {
  if (interleave) return dim ^ 1;
  return dim < rotary_dim / 2 ? dim + rotary_dim / 2 : dim - rotary_dim / 2;
}

double rope_rotated_tolerance(double r, double pair_magnitude, double cos_sin_error, DType dtype) {
  const double delta = pair_magnitude * (cos_sin_error + 0x1p-22);
  return unit_roundoff(dtype) * (std::abs(r) + delta) + delta + 0.5 * subnormal_spacing(dtype);
}

}  // namespace ptxattn::ref
