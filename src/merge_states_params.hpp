// Plain data shared by the host API of merge_states / merge_state
// (merge_states_api.cpp) and the merge kernel (merge_states.cu): the
// kernel's parameter block, the limits the API enforces, and the launch
// function.
//
// NOTES: one kernel serves both entry points. State 0 of a (token, head) is
// read from `first`, state k >= 1 from `rest` + (k - 1) · state stride, each
// plus token · token stride + head · head_dim: merge_states passes the stacked
// tensor as both (rest = first + one state), merge_state passes v_a / lse_a
// and v_b / lse_b, whose tokens are num_heads rows apart.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ptxattn/ptxattn.hpp"

namespace ptxattn::detail {

// A thread owns 8 contiguous elements of v: one 16-byte vector of bf16/fp16,
// two of float32.
constexpr int32_t kMergeUnitElements = 8;
// NOTES: head_dim / 8 threads serve one (token, head); at 1024 that is 128
// threads, inside one CTA (kMergeThreads). No model uses more.
constexpr int32_t kMergeMaxHeadDim = 1024;
// NOTES: the float32 rounding error bound of the online merge grows with the
// number of states (a rescale and an accumulation each; docs/validation.md
// "Merging states"): at 4096 it is about 2^-9 of the weighted |v| for
// |lse| <= 10, and 4096 is what the GPU tests reach. A split-KV over a
// 1M-token KV range still has chunks of 256 keys.
constexpr int32_t kMergeMaxStates = 4096;
constexpr int32_t kMergeThreads = 256;

// Pointers into one tensor kind (v or lse), in elements of that tensor.
template <typename Pointer>
struct MergeOperand {
  Pointer first;  // state 0 of token 0, head 0
  Pointer rest;   // state 1 of token 0, head 0
  int64_t token_stride;
  int64_t state_stride;  // between states 1, 2, ... (unused with 2 states)
};

struct MergeParams {
  MergeOperand<const void*> v;  // rows of head_dim elements; head h at + h · head_dim
  MergeOperand<const float*> lse;  // head h at + h
  void* v_out;     // [num_tokens][num_heads][head_dim], tokens out_token_stride elements apart
  int64_t out_token_stride;
  float* lse_out;  // [num_tokens][num_heads] or null
  int64_t num_tokens;
  // Null, or the tokens to merge, on the device (at most num_tokens): a
  // graph plan's batch, which its upload writes. Rows past it are left alone.
  const int64_t* live_tokens;
  // Null, or on the device where each token's states lie (split-KV where
  // tiles have different chunk counts): token t's are states
  // state_indptr[t] .. state_indptr[t + 1] - 1 (at most num_states) of one
  // tensor, counted from token 0's first, `rest` being `first` + one state;
  // token_stride is then unused. A token without states is left alone (its
  // tile stored its row of v_out).
  const int32_t* state_indptr;
  int32_t num_states;
  int32_t num_heads;
  int32_t head_dim;
};

// Launches the merge on `stream` (num_tokens > 0); returns the launch error
// (cudaGetLastError), if any.
cudaError_t launch_merge_states(const MergeParams& params, StateDType v_dtype, StateDType out_dtype,
                                cudaStream_t stream);

// Which tokens the split-KV merge (prefill_run.cpp) merges, and how many
// states of each, on the device (MergeParams). Null: all of them.
struct MergeOfTokens {
  const int64_t* live_tokens = nullptr;
  const int32_t* state_indptr = nullptr;
  int64_t state_rows = 0;  // with state_indptr: the states of each head (its last entry), what v and lse hold
};

// merge_states, checked the same way, merging only the tokens and states of
// `tokens`, into v_out rows out_token_stride elements apart (at least
// num_heads x head_dim: a strided o; the caller has checked the span).
Status merge_states_of_tokens(const MergeStatesTensors& t, const MergeOfTokens& tokens, int64_t out_token_stride,
                              cudaStream_t stream);

}  // namespace ptxattn::detail
