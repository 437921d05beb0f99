// The child-process half of the bounded-wait tests
// (tests/gpu/test_bounded_wait_gpu.cu). A timed-out wait traps, and a trap
// leaves the whole process's CUDA context unusable, so those tests run the
// hanging kernel in a child: the test executable again (/proc/self/exe) with
// kTestChildEnv set, which gpu_main.cpp hands to bounded_wait_child_main
// instead of running Catch.
#pragma once

namespace ptxattn::testing {

constexpr const char* kTestChildEnv = "PTXATTN_TEST_CHILD";

// Tag of the test cases that need a library built with bounded waits
// (gpu_main.cpp skips them, visibly, in other builds).
constexpr const char* kBoundedWaitTag = "bounded-wait";

// Runs scenario `mode` (kTestChildEnv's value), prints what the wait recorded
// and returns the process exit code: 0 when a record was read back.
int bounded_wait_child_main(const char* mode);

}  // namespace ptxattn::testing
