// See bench_util.hpp.
#include "bench/bench_util.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

#include "tests/common/gpu_test.hpp"

namespace ptxattn::bench {
namespace {

using testing::DeviceBuffer;

constexpr int kWarmupLaunches = 3;
// Long enough to cover a host-side launch (argument checks + cudaLaunchKernelEx
// take a few microseconds), short next to anything worth timing.
constexpr uint64_t kLaunchCushionNs = 20'000;
constexpr size_t kCopyBytes = size_t(512) << 20;
constexpr int kCopyRepetitions = 20;

// Spins on the global timer, so that the start event and the launch behind it
// are already queued when the GPU reaches them: the events then measure the
// kernel, not the host's launch latency.
__global__ void spin_kernel(uint64_t duration_ns) {
  uint64_t start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < duration_ns);
}

int current_device() {
  int device = 0;
  PTXATTN_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

size_t l2_bytes() {
  int bytes = 0;
  PTXATTN_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrL2CacheSize, current_device()));
  return size_t(bytes);
}

// Writing a buffer of twice the L2 evicts whatever the previous iteration left
// there (and pays its write-backs outside the timed region).
DeviceBuffer& l2_flush_buffer() {
  static DeviceBuffer buffer(2 * l2_bytes());
  return buffer;
}

std::string cuda_version_string(int version) {
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

// The CUDA error of the last launch or asynchronous failure, as text, or "".
std::string pending_cuda_error(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return {};
  return std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
}

}  // namespace

cudaStream_t bench_stream() {
  static cudaStream_t stream = [] {
    cudaStream_t s = nullptr;
    PTXATTN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
  }();
  return stream;
}

bool fits_in_l2(size_t bytes) { return bytes <= l2_bytes() / 2; }

double median(std::vector<double> samples) {
  if (samples.empty()) return 0.0;
  const size_t mid = samples.size() / 2;
  std::nth_element(samples.begin(), samples.begin() + mid, samples.end());
  const double upper = samples[mid];
  if (samples.size() % 2 == 1) return upper;
  return 0.5 * (upper + *std::max_element(samples.begin(), samples.begin() + mid));
}

std::vector<double> time_iterations(benchmark::State& state, const Launch& launch, bool flush_l2) {
  std::vector<double> seconds;
  const cudaStream_t stream = bench_stream();
  DeviceBuffer& flush_buffer = l2_flush_buffer();

  for (int i = 0; i < kWarmupLaunches; ++i) {
    if (const Status status = launch(stream); !status.ok()) {
      state.SkipWithError(("launch failed: " + status.message).c_str());
      return seconds;
    }
  }
  if (const cudaError_t err = cudaStreamSynchronize(stream); err != cudaSuccess) {
    state.SkipWithError((std::string("warm-up failed: ") + cudaGetErrorString(err)).c_str());
    return seconds;
  }

  cudaEvent_t start = nullptr, stop = nullptr;
  PTXATTN_CUDA_CHECK(cudaEventCreate(&start));
  PTXATTN_CUDA_CHECK(cudaEventCreate(&stop));
  for (auto _ : state) {
    if (flush_l2) cudaMemsetAsync(flush_buffer.get(), 0, flush_buffer.bytes(), stream);
    spin_kernel<<<1, 1, 0, stream>>>(kLaunchCushionNs);
    cudaEventRecord(start, stream);
    const Status status = launch(stream);
    cudaEventRecord(stop, stream);
    if (!status.ok()) {
      state.SkipWithError(("launch failed: " + status.message).c_str());
      break;
    }
    float ms = 0.0f;
    if (cudaEventSynchronize(stop) != cudaSuccess || cudaEventElapsedTime(&ms, start, stop) != cudaSuccess) {
      state.SkipWithError(pending_cuda_error("timed iteration").c_str());
      break;
    }
    state.SetIterationTime(ms * 1e-3);
    seconds.push_back(ms * 1e-3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (!state.error_occurred()) {
    if (const std::string err = pending_cuda_error("after timing"); !err.empty()) state.SkipWithError(err.c_str());
  }
  return seconds;
}

void set_flop_counters(benchmark::State& state, const std::vector<double>& seconds, double flops) {
  const double t = median(seconds);
  if (t <= 0.0) return;
  state.counters["TFLOP/s"] = flops / t * 1e-12;
  state.counters["median_us"] = t * 1e6;
}

void set_bandwidth_counters(benchmark::State& state, const std::vector<double>& seconds, double bytes) {
  const double t = median(seconds);
  if (t <= 0.0) return;
  const double bandwidth = bytes / t;
  const double copy = device_copy_bandwidth();
  state.counters["GB/s"] = bandwidth * 1e-9;
  state.counters["copy_GB/s"] = copy * 1e-9;
  state.counters["%copy"] = 100.0 * bandwidth / copy;
  state.counters["median_us"] = t * 1e6;
}

namespace {

// Median bandwidth (read + written per second) of cudaMemcpyAsync copies of copy_bytes.
double measure_copy_bandwidth(size_t copy_bytes) {
  DeviceBuffer src(copy_bytes), dst(copy_bytes);
  src.fill_bytes(0x3C);
  const cudaStream_t stream = bench_stream();
  cudaEvent_t start = nullptr, stop = nullptr;
  PTXATTN_CUDA_CHECK(cudaEventCreate(&start));
  PTXATTN_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> seconds;
  for (int i = 0; i < kWarmupLaunches + kCopyRepetitions; ++i) {
    spin_kernel<<<1, 1, 0, stream>>>(kLaunchCushionNs);  // as in time_iterations: no host latency timed
    PTXATTN_CUDA_CHECK(cudaEventRecord(start, stream));
    PTXATTN_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), copy_bytes, cudaMemcpyDeviceToDevice, stream));
    PTXATTN_CUDA_CHECK(cudaEventRecord(stop, stream));
    PTXATTN_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    PTXATTN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (i >= kWarmupLaunches) seconds.push_back(ms * 1e-3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 2.0 * double(copy_bytes) / median(seconds);  // read + written
}

}  // namespace

double device_copy_bandwidth() {
  static const double bandwidth = measure_copy_bandwidth(kCopyBytes);
  return bandwidth;
}

double copy_bandwidth_for_bytes(size_t bytes) {
  static std::map<size_t, double> measured;
  const size_t copy_bytes = std::max<size_t>(bytes / 2, 1);
  auto it = measured.find(copy_bytes);
  if (it == measured.end()) it = measured.emplace(copy_bytes, measure_copy_bandwidth(copy_bytes)).first;
  return it->second;
}

std::string describe_device() {
  cudaDeviceProp prop{};
  PTXATTN_CUDA_CHECK(cudaGetDeviceProperties(&prop, current_device()));
  int driver = 0, runtime = 0;
  PTXATTN_CUDA_CHECK(cudaDriverGetVersion(&driver));
  PTXATTN_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  return std::string(prop.name) + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.multiProcessorCount) + " SMs, " + std::to_string(prop.l2CacheSize >> 20) +
         " MiB L2, driver supports CUDA " + cuda_version_string(driver) + ", runtime CUDA " +
         cuda_version_string(runtime);
}

}  // namespace ptxattn::bench
