// Exact conversions between the 16-bit storage types (bf16, fp16) and float /
// double, and IEEE round-to-nearest-even conversions from float, as the GPU's
// cvt.rn.{bf16,f16}.f32 does. Every 16-bit value is exactly representable in
// float, so decoding is exact; encoding rounds once.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "ptxattn/ptxattn.hpp"

namespace ptxattn::ref {

inline float float_from_bits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

inline uint32_t bits_of_float(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

// bf16 is the upper half of a float.
inline float bf16_to_float(uint16_t bits) { return float_from_bits(uint32_t(bits) << 16); }

inline float fp16_to_float(uint16_t bits) {
  const uint32_t sign = uint32_t(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1Fu;
  const uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0x1F) return float_from_bits(sign | 0x7F800000u | (mantissa << 13));  // Inf/NaN
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
    const float magnitude = std::ldexp(float(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  // Rebias the exponent from 15 to 127.
  return float_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

inline uint16_t float_to_bf16(float value) {
  const uint32_t bits = bits_of_float(value);
  if (std::isnan(value)) return uint16_t((bits >> 16) | 0x0040u);  // quiet NaN, sign kept
  // Round to nearest even: add just under half an ulp, plus one when the kept
  // lsb is odd. A carry into the exponent is correct (up to Inf).
  const uint32_t kept_lsb = (bits >> 16) & 1u;
  return uint16_t((bits + 0x7FFFu + kept_lsb) >> 16);
}

inline uint16_t float_to_fp16(float value) {
  const uint32_t bits = bits_of_float(value);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
  const uint32_t magnitude_bits = bits & 0x7FFFFFFFu;
  if (magnitude_bits > 0x7F800000u) return uint16_t(sign | 0x7E00u | ((magnitude_bits >> 13) & 0x3FFu));
  // >= 65520 (half-way between 65504, the largest fp16, and 2^16) rounds to Inf.
  if (magnitude_bits >= 0x477FF000u) return uint16_t(sign | 0x7C00u);
  if (magnitude_bits >= 0x38800000u) {  // >= 2^-14: normal fp16
    const uint32_t kept_lsb = (magnitude_bits >> 13) & 1u;
    const uint32_t rounded = magnitude_bits + 0xFFFu + kept_lsb;
    return uint16_t(sign | ((rounded - (112u << 23)) >> 13));
  }
  // Subnormal fp16: the result is round(|value| * 2^24) units of 2^-24; the
  // scaling is exact and nearbyint rounds half to even (default FP mode).
  // 1024 units come out as the smallest normal, which is the right encoding.
  const float units = std::nearbyint(std::fabs(value) * 0x1p24f);
  return uint16_t(sign | uint16_t(units));
}

inline float to_float(uint16_t bits, DType dtype) {
  return dtype == DType::kBF16 ? bf16_to_float(bits) : fp16_to_float(bits);
}

inline double to_double(uint16_t bits, DType dtype) { return double(to_float(bits, dtype)); }

inline uint16_t from_float(float value, DType dtype) {
  return dtype == DType::kBF16 ? float_to_bf16(value) : float_to_fp16(value);
}

// value rounded to the storage type and back (what a cvt.rn + unpack does).
inline float round_to(float value, DType dtype) { return to_float(from_float(value, dtype), dtype); }

// Unit roundoff u: the relative error bound of one round-to-nearest
// (half the spacing of values in [1, 2)). bf16 keeps 8 significant bits, fp16 11.
inline double unit_roundoff(DType dtype) { return dtype == DType::kBF16 ? 0x1p-8 : 0x1p-11; }

// Spacing of the subnormals: below the normal range, rounding errors are
// absolute (half of this), not relative.
inline double subnormal_spacing(DType dtype) { return dtype == DType::kBF16 ? 0x1p-133 : 0x1p-24; }

}  // namespace ptxattn::ref
