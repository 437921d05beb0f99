// Device side of bounded waits (PTXATTN_BOUNDED_WAITS): the timeout handler
// that ptx::mbarrier_wait_parity calls when a wait ran out of cycles. It
// writes one WaitTimeoutRecord (src/wait_timeout.hpp) into host-mapped pinned
// memory and traps; no printf. The host reads the record after the trap has
// left the CUDA context unusable (ptxattn::last_wait_timeout).
#pragma once

#include <cstdint>

#include "ptx/smem.cuh"
#include "wait_timeout.hpp"

namespace ptxattn::detail {

// How long a thread that lost the record waits for the winner to finish
// writing it before trapping itself (a trap ends the whole grid, the winner too).
constexpr long long kWaitRecordWriteCycles = 100'000'000LL;

// Records this thread's timed-out wait on `bar` (first timeout only) and traps.
// NOTES: the stores are volatile (st.volatile.global, straight to host
// memory) and fenced system-wide before `valid` says the record is complete,
// so the host never sees a half-written record marked complete.
__device__ __forceinline__ void record_wait_timeout(WaitTimeoutRecord* record, WaitKernel kernel, uint32_t variant,
                                                    WaitBarrier barrier, uint32_t barrier_index,
                                                    const uint64_t* bar, uint32_t parity) {
  if (record != nullptr) {
    volatile WaitTimeoutRecord* r = record;
    if (atomicCAS_system(&record->valid, 0u, kWaitRecordClaimed) == 0u) {
      r->kernel = uint32_t(kernel);
      r->kernel_variant = variant;
      r->block = blockIdx.x;
      r->thread = threadIdx.x;
      r->barrier = uint32_t(barrier);
      r->barrier_index = barrier_index;
      r->parity = parity;
      r->smem_address = ptx::smem_u32(bar);
      __threadfence_system();
      r->valid = kWaitRecordComplete;
      __threadfence_system();
    } else {
      // Another thread won: trapping now could end the grid before its record is complete.
      const long long start = clock64();
      while (r->valid != kWaitRecordComplete && clock64() - start < kWaitRecordWriteCycles) {
      }
    }
  }
  __trap();
}

}  // namespace ptxattn::detail
