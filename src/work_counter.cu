// The dynamic schedule's claim counter, zeroed on the stream before each
// run's prefill kernel (prefill_run.cpp).
#include "prefill_launch.hpp"
#include "ptx/griddepcontrol.cuh"

namespace ptxattn::detail {
namespace {

// Lets the prefill kernel, launched next as this grid's programmatic
// dependent, be scheduled at once: its CTAs set up and start their first
// items while this one thread stores, and wait for this grid only before
// they claim from the counter (claim_item, prefill_pipeline.cuh). A memset
// in its place would hold the whole prefill grid back until it had ended.
__global__ void zero_work_counter_kernel(int32_t* counter) {
  ptx::griddepcontrol_launch_dependents();
  *counter = 0;
}

}  // namespace

cudaError_t zero_work_counter(int32_t* counter, cudaStream_t stream) {
  zero_work_counter_kernel<<<1, 1, 0, stream>>>(counter);
  return cudaGetLastError();
}

}  // namespace ptxattn::detail
