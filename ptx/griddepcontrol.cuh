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

}  // namespace ptxattn::ptx
