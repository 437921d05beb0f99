// Conversions and fast math: cvt packing (PTX ISA 9.7.9.21 "cvt"), ex2.approx
// (9.7.4.7 "ex2").
#pragma once

#include <cstdint>

#include "ptx/wgmma.cuh"

namespace ptxattn::ptx {

// cvt.rn.{bf16x2,f16x2}.f32 d, hi, lo: the FIRST source goes to the UPPER 16
// bits. This packs (lo, hi) so that `lo` is the lower half, i.e. the element
// with the smaller column index in memory order.
template <MmaType kType>
__device__ __forceinline__ uint32_t cvt_pack_f32x2(float lo, float hi) {
  uint32_t packed;
  if constexpr (kType == MmaType::kBF16)
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(packed) : "f"(hi), "f"(lo));
  else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(packed) : "f"(hi), "f"(lo));
  return packed;
}

// ex2.approx.ftz.f32: 2^x on the MUFU unit (~2 ulp); ex2(-inf) = +0.
__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace ptxattn::ptx
