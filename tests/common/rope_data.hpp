// RoPE test inputs shared by the GPU tests, the validator and the RoPE
// benchmark: random 16-bit rows and their exact float values (the form the
// CPU reference, reference/rope.hpp, takes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/numeric.hpp"

namespace ptxattn::testing {

// `count` values uniform in [-4, 4] drawn from `rng`, rounded to `dtype` (raw bits).
inline std::vector<uint16_t> random_values(size_t count, DType dtype, std::mt19937& rng) {
  std::uniform_real_distribution<float> value(-4.0f, 4.0f);
  std::vector<uint16_t> bits(count);
  for (uint16_t& b : bits) b = ref::from_float(value(rng), dtype);
  return bits;
}

// The exact float value of every element of raw `dtype` bits.
inline std::vector<float> decode(const std::vector<uint16_t>& bits, DType dtype) {
  std::vector<float> values(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) values[i] = ref::to_float(bits[i], dtype);
  return values;
}

}  // namespace ptxattn::testing
