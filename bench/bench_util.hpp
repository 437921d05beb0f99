// Timing and counters shared by every ptxattn-bench benchmark.
//
// Each benchmark registers with UseManualTime() and times through
// time_iterations(): CUDA events around exactly one launch per Google
// Benchmark iteration, after warm-up, with the L2 flushed first when the
// workload would not stay in L2 between real calls anyway. Counters are set
// from the MEDIAN iteration (every number docs/benchmarks.md reports is a
// median); Google Benchmark's own time column is the mean of the same samples.
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"

namespace ptxattn::bench {

// What one timed iteration runs: exactly one call of the kernel under test,
// enqueued on `stream`. A non-ok Status ends the benchmark with its message.
using Launch = std::function<Status(cudaStream_t stream)>;

// The stream every benchmark enqueues on (created on first use, never destroyed).
cudaStream_t bench_stream();

// True when `bytes` (the data one call reads and writes) is at most half the
// L2: such a working set could stay resident between calls in real use, so it
// is timed warm. Anything larger is timed with a flushed L2.
bool fits_in_l2(size_t bytes);

// Times `launch` once per benchmark iteration and returns the per-iteration
// seconds. Sequence per iteration: [L2 flush], a ~20 us GPU spin that hides
// the host's launch latency from the events, start event, launch, stop event,
// synchronise. kWarmupLaunches untimed launches come first. On an error (a
// launch Status or a CUDA error) it calls state.SkipWithError and returns
// what it has; check state.error_occurred().
std::vector<double> time_iterations(benchmark::State& state, const Launch& launch, bool flush_l2);

double median(std::vector<double> samples);

// Attention counters: "TFLOP/s" = flops / median time, "median_us".
void set_flop_counters(benchmark::State& state, const std::vector<double>& seconds, double flops);

// Memory-bound counters: "GB/s" = bytes (read + written) / median time,
// "copy_GB/s" (the same-run device copy, device_copy_bandwidth()), "%copy"
// (the kernel's share of it) and "median_us".
void set_bandwidth_counters(benchmark::State& state, const std::vector<double>& seconds, double bytes);

// Device-to-device copy bandwidth of this GPU in this run, bytes read plus
// written per second: the median of cudaMemcpyAsync copies of 512 MiB.
// Measured on the first call and cached, so every %copy counter of a run
// divides by the same number.
double device_copy_bandwidth();

// The same for a copy that moves `bytes` in total (bytes / 2 read, bytes / 2
// written), i.e. the same byte count as a kernel's bytes read + written.
// Measured on the first call for each size and cached.
double copy_bandwidth_for_bytes(size_t bytes);

// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 50 MiB L2, driver supports CUDA 13.0,
// runtime CUDA 13.0":
// recorded as Google Benchmark context by the bench main.
std::string describe_device();

}  // namespace ptxattn::bench
