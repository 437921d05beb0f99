// Internal helpers for building ptxattn::Status values: messages assembled
// from pieces, one constructor per error code, and the early-return macros
// every host function uses (a failed CUDA call is reported with the call and
// file:line, a missing GPU in plain words).
#pragma once

#include <cuda_runtime_api.h>

#include <sstream>
#include <string>

#include "ptxattn/ptxattn.hpp"

namespace ptxattn::detail {

// Concatenates the arguments as operator<< prints them.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <typename... Args>
Status invalid_argument(const Args&... args) {
  return {StatusCode::kInvalidArgument, str_cat(args...)};
}

template <typename... Args>
Status unsupported(const Args&... args) {
  return {StatusCode::kUnsupported, str_cat(args...)};
}

template <typename... Args>
Status plan_mismatch(const Args&... args) {
  return {StatusCode::kPlanMismatch, str_cat(args...)};
}

// A failed CUDA runtime call: kNoDevice when the error means there is no
// usable GPU (none, no driver or one too old, a GPU that is not SM90), with a
// message that says what is missing; else kCudaError, with a message naming
// the call, file:line and the CUDA error.
Status cuda_error(cudaError_t err, const char* call, const char* file, int line);

}  // namespace ptxattn::detail

// Returns the Status of `expr` from the enclosing function unless it is ok.
#define PTXATTN_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::ptxattn::Status ptxattn_status_ = (expr);        \
    if (!ptxattn_status_.ok()) return ptxattn_status_; \
  } while (0)

// Runs a CUDA runtime call; on failure returns its Status from the enclosing function.
#define PTXATTN_CUDA_RETURN_IF_ERROR(call)                                                                          \
  do {                                                                                                              \
    const cudaError_t ptxattn_err_ = (call);                                                                        \
    if (ptxattn_err_ != cudaSuccess) return ::ptxattn::detail::cuda_error(ptxattn_err_, #call, __FILE__, __LINE__); \
  } while (0)
