// setmaxnreg (PTX ISA 9.7.17.1): moves registers between warpgroups. Needs a
// register cap at kernel entry (__launch_bounds__(threads, 1)); every thread of
// the warpgroup executes it. Registers gained by .inc hold undefined values.
#pragma once

#include <cstdint>

namespace ptxattn::ptx {

template <uint32_t kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  static_assert(kRegs >= 24 && kRegs <= 256 && kRegs % 8 == 0, "setmaxnreg takes 24..256 in steps of 8");
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

template <uint32_t kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  static_assert(kRegs >= 24 && kRegs <= 256 && kRegs % 8 == 0, "setmaxnreg takes 24..256 in steps of 8");
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

}  // namespace ptxattn::ptx
