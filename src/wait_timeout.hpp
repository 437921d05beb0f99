// The record a timed-out bounded mbarrier wait leaves behind (build option
// bounded_waits, PTXATTN_BOUNDED_WAITS): plain data shared by the kernels,
// which write it (src/wait_timeout.cuh), and the host, which allocates it in
// host-mapped pinned memory and decodes it (src/wait_timeout.cpp,
// ptxattn::last_wait_timeout). docs/kernels.md, "Bounded waits", documents
// every field.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#ifndef PTXATTN_BOUNDED_WAITS
#define PTXATTN_BOUNDED_WAITS 0
#endif

namespace ptxattn::detail {

// Which kernel waited (WaitTimeoutRecord::kernel).
enum class WaitKernel : uint32_t { kPrefill = 1, kTest = 2 };

// Which of the kernel's barriers (WaitTimeoutRecord::barrier); arrays also
// record the index (stage) in WaitTimeoutRecord::barrier_index.
enum class WaitBarrier : uint32_t {
  kUnknown = 0,  // an address outside the kernel's barriers
  kQFull = 1,
  kKFull = 2,
  kVFull = 3,
  kKEmpty = 4,
  kVEmpty = 5,
  kTest = 6,  // the test kernel's barrier array (tests/gpu/test_bounded_wait_gpu.cu)
  kItemFull = 7,   // the dynamic schedule's item slots (prefill_pipeline.cuh)
  kItemEmpty = 8,
};

// WaitTimeoutRecord::kernel_variant of the prefill kernel: head_dim in bits
// 0-15, then one bit each for the gather load path and fp16 (else TMA, bf16).
constexpr uint32_t kWaitVariantGather = 1u << 16;
constexpr uint32_t kWaitVariantFP16 = 1u << 17;
constexpr uint32_t kWaitVariantHeadDimMask = 0xFFFFu;
// ... and the KV block's rows in bits 20-27 (kernels of one head dim differ in it).
constexpr uint32_t kWaitVariantBlockShift = 20;
constexpr uint32_t kWaitVariantBlockMask = 0xFFu;

// WaitTimeoutRecord::valid: 0 while empty; kWaitRecordClaimed once a timed-out
// thread won the record (atomicCAS) and is writing it; kWaitRecordComplete
// (ASCII "WAIT") after every other field has been written and fenced.
constexpr uint32_t kWaitRecordClaimed = 1u;
constexpr uint32_t kWaitRecordComplete = 0x57414954u;

// One record per device and process, in host-mapped pinned memory; only the
// first timeout after the allocation is recorded. 32-bit fields only: the
// kernel writes each with one volatile store.
struct WaitTimeoutRecord {
  uint32_t valid;
  uint32_t kernel;          // WaitKernel
  uint32_t kernel_variant;  // prefill: head_dim | kWaitVariant* bits; test: 0
  uint32_t block;           // blockIdx.x (every ptxattn grid is one-dimensional)
  uint32_t thread;          // threadIdx.x
  uint32_t barrier;         // WaitBarrier
  uint32_t barrier_index;   // stage of k_full / v_full / k_empty / v_empty, index of a test barrier; else 0
  uint32_t parity;          // the phase parity the thread waited for
  uint32_t smem_address;    // the barrier's shared::cta address
  uint32_t reserved[7];     // pads the record to 64 bytes
};
static_assert(sizeof(WaitTimeoutRecord) == 64, "one record, 64 bytes");

// Host: the device pointer of the current device's record, made on first use
// (thread-safe; also under stream capture) and kept for the life of the
// process. Launchers of kernels with bounded waits pass it in their params.
cudaError_t current_device_wait_timeout_record(WaitTimeoutRecord** record);

}  // namespace ptxattn::detail
