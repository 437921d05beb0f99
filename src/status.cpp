// Status names and the CUDA-error constructor (see status.hpp).
#include "status.hpp"

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

Status cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  const bool no_usable_gpu =
      err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver || err == cudaErrorNoKernelImageForDevice;
  return {
      no_usable_gpu ? StatusCode::kNoDevice : StatusCode::kCudaError,
      str_cat(call, " failed at ", file, ":", line, ": ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")")};
}

}  // namespace detail
}  // namespace ptxattn
