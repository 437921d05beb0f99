// Status names and the CUDA-error constructor (see status.hpp).
#include "status.hpp"

#include <string>

namespace ptxattn {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid_argument";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kPlanMismatch: return "plan_mismatch";
    case StatusCode::kCudaError: return "cuda_error";
    case StatusCode::kNoDevice: return "no_device";
  }
  return "unknown_status";
}

namespace detail {
namespace {

// "13.0" from a CUDA version number such as 13000.
std::string cuda_version_name(int version) { return str_cat(version / 1000, ".", version % 1000 / 10); }

// What is missing when `err` means that no GPU can run ptxattn, said so that
// a user can act on it; "" for every other error.
std::string missing_gpu(cudaError_t err) {
  switch (err) {
    case cudaErrorNoDevice:
    case cudaErrorStubLibrary:  // libcuda is only the link-time stub: no driver, so no GPU
      return "no CUDA GPU is available: ptxattn needs an NVIDIA SM90 (Hopper) GPU";
    case cudaErrorInsufficientDriver: {
      // The runtime says this both with no driver at all and with an old one.
      int driver = 0;
      if (cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0)
        return "no CUDA GPU is available (no NVIDIA driver is installed): ptxattn needs an NVIDIA SM90 (Hopper) GPU";
      return str_cat("the NVIDIA driver is too old: it supports CUDA ", cuda_version_name(driver),
                     ", ptxattn was built with CUDA ", cuda_version_name(CUDART_VERSION), "; update the driver");
    }
    case cudaErrorNoKernelImageForDevice:
      return "this GPU cannot run ptxattn: its kernels are built for NVIDIA SM90 (Hopper) GPUs only";
    default: return "";
  }
}

}  // namespace

Status cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  // A missing GPU is the user's setup, not a bug: no call or source location.
  if (const std::string missing = missing_gpu(err); !missing.empty())
    return {StatusCode::kNoDevice, str_cat(missing, " (the CUDA runtime reports: ", cudaGetErrorString(err), ")")};
  return {StatusCode::kCudaError,
          str_cat(call, " failed at ", file, ":", line, ": ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")")};
}

}  // namespace detail
}  // namespace ptxattn
