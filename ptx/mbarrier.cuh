// mbarrier: shared-memory barriers with transaction counts (PTX ISA 9.7.13.15
// "Parallel Synchronization and Communication Instructions: mbarrier").
//
// NOTES: a fresh barrier is in phase 0; waiting for parity 1 returns at once,
// so producers wait on "empty" barriers with phase ^ 1 first. With
// PTXATTN_BOUNDED_WAITS (build option bounded_waits) every wait gives up after
// a cycle budget and calls its timeout handler, which traps (the library's
// handler first records the wait: src/wait_timeout.cuh), so a wrong phase
// becomes an error instead of a hung GPU.
#pragma once

#include <cstdint>

#include "ptx/smem.cuh"

#ifndef PTXATTN_BOUNDED_WAITS
#define PTXATTN_BOUNDED_WAITS 0
#endif

namespace ptxattn::ptx {

// Cycle budget of a bounded wait (~2 s at 1.98 GHz): far above any legitimate wait.
constexpr long long kBoundedWaitCycles = 4'000'000'000LL;

// Timeout handler of a bounded wait that records nothing.
struct TrapOnTimeout {
  __device__ __forceinline__ void operator()() const { __trap(); }
};

// mbarrier.init.shared::cta.b64 (9.7.13.15.9). One thread; follow with
// fence_mbarrier_init() and a CTA barrier before any other thread uses it.
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t arrive_count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(arrive_count) : "memory");
}

// mbarrier.inval.shared::cta.b64 (9.7.13.15.10): before re-initialising or
// reusing the barrier's memory for data. One thread.
__device__ __forceinline__ void mbarrier_inval(uint64_t* bar) {
  asm volatile("mbarrier.inval.shared::cta.b64 [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}

// fence.mbarrier_init.release.cluster (9.7.13.4): makes initialisations visible
// to the async proxy (TMA complete_tx). The initialising thread.
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// fence.proxy.async.shared::cta (9.7.13.4): orders this thread's generic-proxy
// shared-memory writes (st.shared, cp.async) before later async-proxy accesses
// (wgmma operand reads, TMA). Each writing thread, before the barrier that
// publishes the data.
__device__ __forceinline__ void fence_proxy_async_shared_cta() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// mbarrier.arrive.shared::cta.b64 (9.7.13.15.13): one arrival, release semantics.
__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}\n" ::"r"(smem_u32(bar))
               : "memory");
}

// mbarrier.arrive.expect_tx.shared::cta.b64 (9.7.13.15.13): one arrival that
// also raises the expected transaction count by `bytes` (the TMA loads that
// follow complete it). Usually one elected thread.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1;\n}\n" ::"r"(
                   smem_u32(bar)),
               "r"(bytes)
               : "memory");
}

// mbarrier.try_wait.parity.shared::cta.b64 (9.7.13.15.16): true once the phase
// with the given parity has completed. Acquire semantics.
__device__ __forceinline__ bool mbarrier_try_wait_parity(uint64_t* bar, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(smem_u32(bar)), "r"(parity)
      : "memory");
  return done != 0;
}

// Loop over mbarrier_try_wait_parity until the phase of `parity` completes
// (9.7.13.15.16). Any thread. With PTXATTN_BOUNDED_WAITS the first failed
// try_wait starts a clock64 count, and after kBudgetCycles the loop gives up
// and calls on_timeout(), which must not return (trap). The fast path (the
// first try_wait succeeds) reads no clock; without the macro there is no
// clock and no handler at all.
// NOTES: the handler runs after the loop, not inside it: a trap inside the
// loop made ptxas spill in the prefill consumers (TMA, head_dim 128: 28 bytes
// with a bare trap, 148 with the record), a trap after it does not.
template <long long kBudgetCycles = kBoundedWaitCycles, class OnTimeout = TrapOnTimeout>
__device__ __forceinline__ void mbarrier_wait_parity(uint64_t* bar, uint32_t parity,
                                                     const OnTimeout& on_timeout = OnTimeout{}) {
#if PTXATTN_BOUNDED_WAITS
  static_assert(kBudgetCycles > 0, "a bounded wait needs a positive cycle budget");
  if (mbarrier_try_wait_parity(bar, parity)) return;
  const long long start = clock64();
  bool timed_out = false;
  while (!mbarrier_try_wait_parity(bar, parity)) {
    if (clock64() - start > kBudgetCycles) {
      timed_out = true;
      break;
    }
  }
  if (timed_out) on_timeout();
#else
  (void)on_timeout;
  while (!mbarrier_try_wait_parity(bar, parity)) {
  }
#endif
}

}  // namespace ptxattn::ptx
