// Helpers shared by the GPU tests, the validator and the benchmarks:
// checked CUDA calls, an owning device buffer, and the shared-memory polluter
// that every GPU test runs first so it cannot pass on clean memory.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ptxattn::testing {

// Throws std::runtime_error naming file:line and the CUDA error.
void cuda_check(cudaError_t err, const char* what, const char* file, int line);
#define PTXATTN_CUDA_CHECK(call) ::ptxattn::testing::cuda_check((call), #call, __FILE__, __LINE__)

// True when device 0 is an SM90 GPU (compute capability 9.0); `why` says what was found otherwise.
bool have_sm90_gpu(std::string* why = nullptr);

// Owning device allocation (cudaMalloc), move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

  void upload(const void* host, size_t bytes);
  void download(void* host, size_t bytes) const;
  void fill_bytes(uint8_t value);       // cudaMemset
  void fill_u32(uint32_t pattern);      // every 4-byte word = pattern (bytes must be a multiple of 4)

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

template <typename T>
DeviceBuffer upload_vector(const std::vector<T>& v) {
  DeviceBuffer b(v.size() * sizeof(T) > 0 ? v.size() * sizeof(T) : 16);
  if (!v.empty()) b.upload(v.data(), v.size() * sizeof(T));
  return b;
}

template <typename T>
std::vector<T> download_vector(const DeviceBuffer& b, size_t count) {
  std::vector<T> v(count);
  if (count) b.download(v.data(), count * sizeof(T));
  return v;
}

// Owning CUDA event (cudaEventCreate), for timing with cudaEventElapsedTime.
class CudaEvent {
 public:
  CudaEvent() { PTXATTN_CUDA_CHECK(cudaEventCreate(&event_)); }
  ~CudaEvent() { cudaEventDestroy(event_); }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// Milliseconds between two recorded events (synchronises on `stop`).
inline float elapsed_ms(const CudaEvent& start, const CudaEvent& stop) {
  PTXATTN_CUDA_CHECK(cudaEventSynchronize(stop.get()));
  float ms = 0.0f;
  PTXATTN_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), stop.get()));
  return ms;
}

// Bit patterns the polluters write (32-bit words; 16-bit dtypes see two halves).
namespace pattern {
constexpr uint32_t kQuietNaN = 0x7FC07FC0u;      // f32 qNaN; as bf16 pairs also qNaN
constexpr uint32_t kSignalingNaN = 0x7F817F81u;  // f32 sNaN; bf16 halves sNaN
constexpr uint32_t kPosInf = 0x7F807F80u;        // bf16 +Inf pairs (read as f32: a NaN)
constexpr uint32_t kNegInf = 0xFF80FF80u;        // bf16 -Inf pairs
constexpr uint32_t kAllOnes = 0xFFFFFFFFu;       // NaN in every float width
constexpr uint32_t kHalfNaN = 0x7E007E00u;       // fp16 qNaN pairs
}  // namespace pattern

// Launches one CTA per SM on every SM, each with the largest dynamic shared
// memory a block may opt into, and fills all of it with `word` (checks that
// the grid really was resident one per SM). Synchronises.
void pollute_shared_memory(uint32_t word);
// As above with random bits: word i of the CTA on SM s is a hash of (seed, s, i).
void pollute_shared_memory_random(uint64_t seed);

// For polluter kernels launched one CTA per SM, each CTA having written its
// %smid to sm_of_block[blockIdx.x]: throws unless every SM ran exactly one.
void require_one_block_per_sm(const DeviceBuffer& sm_of_block, int num_sms, const char* who);

}  // namespace ptxattn::testing
