// bf16/fp16 <-> float conversions of packed pairs, shared by the RoPE
// (rope.cu) and merge (merge_states.cu) kernels: a 32-bit word holds two
// elements, the one with the lower index in memory in the lower 16 bits.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "ptx/cvt.cuh"

namespace ptxattn::detail {

template <typename T>
struct ElementType;

template <>
struct ElementType<__nv_bfloat16> {
  static constexpr ptx::MmaType kType = ptx::MmaType::kBF16;
  // A bf16 is the upper half of a float.
  static __device__ __forceinline__ float2 unpack(uint32_t w) {
    return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xFFFF0000u));
  }
};

template <>
struct ElementType<__half> {
  static constexpr ptx::MmaType kType = ptx::MmaType::kFP16;
  static __device__ __forceinline__ float2 unpack(uint32_t w) {
    return __half22float2(*reinterpret_cast<const __half2*>(&w));
  }
};

// Rounds both to T (round to nearest even) and packs them, v.x in the lower half.
template <typename T>
__device__ __forceinline__ uint32_t pack(float2 v) {
  return ptx::cvt_pack_f32x2<ElementType<T>::kType>(v.x, v.y);
}

}  // namespace ptxattn::detail
