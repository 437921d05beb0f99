// See gpu_test.hpp.
#include "gpu_test.hpp"

#include <stdexcept>
#include <utility>

namespace ptxattn::testing {

void cuda_check(cudaError_t err, const char* what, const char* file, int line) {
  if (err == cudaSuccess) return;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + " failed: " +
                           cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

bool have_sm90_gpu(std::string* why) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    if (why) *why = std::string("no CUDA device (") + cudaGetErrorString(err) + ")";
    cudaGetLastError();  // clear the sticky-free error so later calls are not confused
    return false;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    if (why) *why = "cudaGetDeviceProperties failed";
    return false;
  }
  if (prop.major != 9 || prop.minor != 0) {
    if (why) *why = std::string(prop.name) + " is sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", not sm_90";
    return false;
  }
  if (why) *why = prop.name;
  return true;
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  PTXATTN_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::upload(const void* host, size_t bytes) {
  PTXATTN_CUDA_CHECK(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice));
}

void DeviceBuffer::download(void* host, size_t bytes) const {
  PTXATTN_CUDA_CHECK(cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost));
}

void DeviceBuffer::fill_bytes(uint8_t value) { PTXATTN_CUDA_CHECK(cudaMemset(ptr_, value, bytes_)); }

namespace {

__global__ void fill_words_kernel(uint32_t* dst, size_t count, uint32_t word) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = word;
}

// A 32-bit hash (splitmix64 finaliser) of a seed and a position.
__device__ uint32_t mix_bits(uint64_t seed, uint64_t position) {
  uint64_t z = seed + (position + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return static_cast<uint32_t>(z ^ (z >> 31));
}

// Each CTA records the SM it ran on, so the host can check one CTA per SM.
__global__ void pollute_shared_kernel(uint32_t word, bool random, uint64_t seed, uint32_t words,
                                      unsigned* sm_of_block) {
  extern __shared__ uint32_t smem[];
  for (uint32_t i = threadIdx.x; i < words; i += blockDim.x)
    smem[i] = random ? mix_bits(seed, uint64_t(blockIdx.x) * words + i) : word;
  // Keep the stores: the compiler may not drop writes to shared memory that
  // is never read, but an asm barrier makes the intent explicit.
  asm volatile("" ::: "memory");
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    sm_of_block[blockIdx.x] = smid;
  }
}

}  // namespace

void DeviceBuffer::fill_u32(uint32_t pattern) {
  if (bytes_ % 4 != 0) throw std::runtime_error("fill_u32: buffer size is not a multiple of 4");
  fill_words_kernel<<<264, 256>>>(static_cast<uint32_t*>(ptr_), bytes_ / 4, pattern);
  PTXATTN_CUDA_CHECK(cudaGetLastError());
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
}

void require_one_block_per_sm(const DeviceBuffer& sm_of_block, int num_sms, const char* who) {
  // One CTA per SM and as many CTAs as SMs: every SM must appear exactly once.
  std::vector<unsigned> seen = download_vector<unsigned>(sm_of_block, num_sms);
  std::vector<int> hits(num_sms, 0);
  for (unsigned sm : seen)
    if (sm < unsigned(num_sms)) ++hits[sm];
  for (int sm = 0; sm < num_sms; ++sm)
    if (hits[sm] != 1)
      throw std::runtime_error(std::string(who) + ": SM " + std::to_string(sm) + " ran " + std::to_string(hits[sm]) +
                               " polluting CTAs (expected 1)");
}

namespace {

void pollute_shared(uint32_t word, bool random, uint64_t seed) {
  int device = 0;
  PTXATTN_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  PTXATTN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  const int smem_bytes = static_cast<int>(prop.sharedMemPerBlockOptin);
  PTXATTN_CUDA_CHECK(
      cudaFuncSetAttribute(pollute_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
  int blocks_per_sm = 0;
  PTXATTN_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, pollute_shared_kernel, 1024, smem_bytes));
  if (blocks_per_sm != 1)
    throw std::runtime_error("pollute_shared_memory: expected exactly one CTA per SM, occupancy says " +
                             std::to_string(blocks_per_sm));
  const int blocks = prop.multiProcessorCount;
  DeviceBuffer sms(sizeof(unsigned) * blocks);
  pollute_shared_kernel<<<blocks, 1024, smem_bytes>>>(word, random, seed, smem_bytes / 4, sms.as<unsigned>());
  PTXATTN_CUDA_CHECK(cudaGetLastError());
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
  require_one_block_per_sm(sms, blocks, "pollute_shared_memory");
}

}  // namespace

void pollute_shared_memory(uint32_t word) { pollute_shared(word, false, 0); }

void pollute_shared_memory_random(uint64_t seed) { pollute_shared(0, true, seed); }

}  // namespace ptxattn::testing
