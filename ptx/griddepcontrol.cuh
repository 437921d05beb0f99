// griddepcontrol: programmatic dependent launch (PTX ISA 9.7.13.13 "Parallel
// Synchronization and Communication Instructions: griddepcontrol").
//
// NOTES: a grid launched with the programmatic stream serialization attribute
// (cudaLaunchAttributeProgrammaticStreamSerialization) may be scheduled before
// the grid ahead of it in the stream has finished: once every CTA of that grid
// has issued launch_dependents or exited. It must then wait before it touches
// anything that grid reads or writes. Without the attribute both instructions
// do nothing, so a kernel that waits is correct however it is launched.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace ptxattn::ptx {

// griddepcontrol.launch_dependents: this CTA lets the dependent grid be
// scheduled. Any one thread; further calls in the CTA change nothing.
__device__ __forceinline__ void griddepcontrol_launch_dependents() {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

// griddepcontrol.wait: returns once every prerequisite grid has completed and
// its memory operations are visible to this grid. Every thread that reads or
// writes what a prerequisite grid may touch.
__device__ __forceinline__ void griddepcontrol_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }

// Host side: launches kernel with the programmatic stream serialization
// attribute, so it may be scheduled while the grid ahead of it in stream
// still runs. The kernel must call griddepcontrol_wait before it touches
// anything that grid reads or writes.
template <typename... Params, typename... Args>
cudaError_t launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t dynamic_smem_bytes,
                             cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = dynamic_smem_bytes;
  config.stream = stream;
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace ptxattn::ptx
