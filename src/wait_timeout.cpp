// Host side of bounded waits: the per-device record in host-mapped pinned
// memory (made lazily, once per process and device) and the public
// bounded_waits_built / last_wait_timeout (include/ptxattn/ptxattn.hpp).
//
// NOTES: the record is a page this file allocates and registers with
// cudaHostRegister (mapped, portable) rather than cudaHostAlloc memory: the
// page belongs to the process, not to the CUDA context, so it stays readable
// after a trap, after cudaDeviceReset too. It is never freed.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>

#include "ptxattn/ptxattn.hpp"
#include "wait_timeout.hpp"

namespace ptxattn {
namespace detail {
namespace {

constexpr int kMaxDevices = 64;
constexpr size_t kRecordPageBytes = 4096;

struct RecordSlot {
  std::atomic<WaitTimeoutRecord*> host{nullptr};    // set once registered
  std::atomic<WaitTimeoutRecord*> device{nullptr};  // the kernels' pointer to the same page
};
RecordSlot g_slots[kMaxDevices];
std::mutex g_alloc_mutex;

// Allocates, zeroes and registers the record of the current device.
cudaError_t make_record(RecordSlot& slot) {
  void* page = std::aligned_alloc(kRecordPageBytes, kRecordPageBytes);
  if (page == nullptr) return cudaErrorMemoryAllocation;
  std::memset(page, 0, kRecordPageBytes);
  // Registration is not a stream operation, but the runtime refuses it while
  // a stream of this thread is being captured in global or thread-local mode.
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  cudaThreadExchangeStreamCaptureMode(&mode);
  cudaError_t err = cudaHostRegister(page, kRecordPageBytes, cudaHostRegisterMapped | cudaHostRegisterPortable);
  void* device_ptr = nullptr;
  if (err == cudaSuccess) {
    err = cudaHostGetDevicePointer(&device_ptr, page, 0);
    if (err != cudaSuccess) cudaHostUnregister(page);
  }
  cudaThreadExchangeStreamCaptureMode(&mode);
  if (err != cudaSuccess) {
    std::free(page);
    return err;
  }
  slot.device.store(static_cast<WaitTimeoutRecord*>(device_ptr), std::memory_order_release);
  slot.host.store(static_cast<WaitTimeoutRecord*>(page), std::memory_order_release);
  return cudaSuccess;
}

const char* barrier_name(WaitBarrier barrier) {
  switch (barrier) {
    case WaitBarrier::kQFull: return "q_full";
    case WaitBarrier::kKFull: return "k_full";
    case WaitBarrier::kVFull: return "v_full";
    case WaitBarrier::kKEmpty: return "k_empty";
    case WaitBarrier::kVEmpty: return "v_empty";
    case WaitBarrier::kTest: return "test";
    case WaitBarrier::kItemFull: return "item_full";
    case WaitBarrier::kItemEmpty: return "item_empty";
    case WaitBarrier::kUnknown: break;
  }
  return "unknown";
}

std::string kernel_name(uint32_t kernel, uint32_t variant) {
  std::ostringstream out;
  switch (WaitKernel(kernel)) {
    case WaitKernel::kPrefill:
      out << "prefill (head_dim " << (variant & kWaitVariantHeadDimMask) << ", "
          << ((variant & kWaitVariantFP16) ? "fp16" : "bf16") << ", "
          << ((variant & kWaitVariantGather) ? "gather" : "TMA") << ", KV block "
          << ((variant >> kWaitVariantBlockShift) & kWaitVariantBlockMask) << ")";
      break;
    case WaitKernel::kTest: out << "test"; break;
    default: out << "unknown kernel " << kernel;
  }
  return out.str();
}

WaitTimeout decode(const volatile WaitTimeoutRecord& r, int device) {
  WaitTimeout w;
  w.device = device;
  w.kernel = kernel_name(r.kernel, r.kernel_variant);
  w.block = r.block;
  w.thread = r.thread;
  const WaitBarrier barrier = WaitBarrier(r.barrier);
  w.barrier = barrier_name(barrier);
  if (barrier != WaitBarrier::kQFull && barrier != WaitBarrier::kUnknown)
    w.barrier += "[" + std::to_string(r.barrier_index) + "]";
  w.parity = r.parity;
  w.smem_address = r.smem_address;
  std::ostringstream out;
  out << w.kernel << " on device " << device << ": block " << w.block << " thread " << w.thread
      << " timed out waiting for parity " << w.parity << " of " << w.barrier << " (shared address 0x" << std::hex
      << w.smem_address << ")";
  w.message = out.str();
  return w;
}

}  // namespace

cudaError_t current_device_wait_timeout_record(WaitTimeoutRecord** record) {
  int device = 0;
  if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return err;
  if (device < 0 || device >= kMaxDevices) return cudaErrorInvalidDevice;
  RecordSlot& slot = g_slots[device];
  if (WaitTimeoutRecord* r = slot.device.load(std::memory_order_acquire)) {
    *record = r;
    return cudaSuccess;
  }
  std::lock_guard<std::mutex> lock(g_alloc_mutex);
  if (slot.device.load(std::memory_order_acquire) == nullptr) {
    if (cudaError_t err = make_record(slot); err != cudaSuccess) return err;
  }
  *record = slot.device.load(std::memory_order_acquire);
  return cudaSuccess;
}

}  // namespace detail

bool bounded_waits_built() { return PTXATTN_BOUNDED_WAITS != 0; }

bool last_wait_timeout(WaitTimeout* out) {
  for (int device = 0; device < detail::kMaxDevices; ++device) {
    const volatile detail::WaitTimeoutRecord* r = detail::g_slots[device].host.load(std::memory_order_acquire);
    if (r == nullptr || r->valid != detail::kWaitRecordComplete) continue;
    std::atomic_thread_fence(std::memory_order_acquire);  // the fields were written before `valid`
    if (out != nullptr) *out = detail::decode(*r, device);
    return true;
  }
  return false;
}

}  // namespace ptxattn
