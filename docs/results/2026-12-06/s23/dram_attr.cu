#include <cstdio>
#include <cuda_runtime_api.h>
int main() {
  int clk = -1, bus = -1, sms = -1;
  cudaError_t a = cudaDeviceGetAttribute(&clk, cudaDevAttrMemoryClockRate, 0);
  cudaError_t b = cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, 0);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  std::printf("memory clock %d kHz (%s), bus %d bits (%s), %d SMs: %.1f GB/s per SM\n", clk, cudaGetErrorString(a), bus,
              cudaGetErrorString(b), sms, sms > 0 ? 2.0 * clk * 1e3 * bus / 8 / sms / 1e9 : 0.0);
}
