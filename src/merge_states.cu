// The merge kernel behind merge_states and merge_state (merge_states_params.hpp
// says how both map onto it; ptxattn.hpp states the contract).
//
// NOTES:
// - Memory bound: every input byte is read once. head_dim / 8 threads serve
//   one (token, head), each owning 8 contiguous elements of v: one 16-byte
//   load per state for bf16/fp16, two for float32. Consecutive threads cover
//   consecutive (token, head) rows, so for one state a warp reads one
//   contiguous run; the lse of a state is one 4-byte word that the threads
//   of a row share.
// - A thread loads kStateBatch states (lse and v) before it merges the
//   first, so several loads are in flight per thread.
// - The merge is online, in float32, over the states in index order: the
//   same operations in the same order on every run, hence bit-identical
//   results, and merge_state gives the bits of merge_states over the two
//   states stacked.
// - State: no shared memory. An empty state's v is loaded (it lies inside
//   the tensor) but only ever selected away, never multiplied (RULE below).
//   Where tokens have fewer states than num_states (MergeParams::
//   state_indptr), the loop still runs to num_states, and a state past the
//   token's enters as empty without a load.
// - Launched as the programmatic dependent of whatever runs before it in the
//   stream (launch_merge_states), so it may start while that grid still runs:
//   split-KV's prefill kernel lets it in at once. RULE: nothing is read or
//   written before griddepcontrol.wait.
#include <cstdint>
#include <limits>
#include <type_traits>

#include "element_type.cuh"
#include "merge_states_params.hpp"
#include "ptx/griddepcontrol.cuh"

namespace ptxattn::detail {
namespace {

constexpr int kStateBatch = 4;  // states a thread loads before it merges the first
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using Unit = float[kMergeUnitElements];

// 8 elements of T at `src` (16-byte aligned: base pointers are, and rows are
// head_dim · sizeof(T) bytes, a multiple of 16) to float, exactly.
template <typename T>
__device__ __forceinline__ void load_unit(const T* src, Unit& x) {
  if constexpr (std::is_same_v<T, float>) {
    const float4 lo = reinterpret_cast<const float4*>(src)[0], hi = reinterpret_cast<const float4*>(src)[1];
    x[0] = lo.x, x[1] = lo.y, x[2] = lo.z, x[3] = lo.w, x[4] = hi.x, x[5] = hi.y, x[6] = hi.z, x[7] = hi.w;
  } else {
    const uint4 v = *reinterpret_cast<const uint4*>(src);
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 pair = ElementType<T>::unpack(words[i]);
      x[2 * i] = pair.x;
      x[2 * i + 1] = pair.y;
    }
  }
}

// x rounded to T (round to nearest even) at `dst`.
template <typename T>
__device__ __forceinline__ void store_unit(T* dst, const Unit& x) {
  if constexpr (std::is_same_v<T, float>) {
    reinterpret_cast<float4*>(dst)[0] = make_float4(x[0], x[1], x[2], x[3]);
    reinterpret_cast<float4*>(dst)[1] = make_float4(x[4], x[5], x[6], x[7]);
  } else {
    uint32_t words[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) words[i] = pack<T>(make_float2(x[2 * i], x[2 * i + 1]));
    *reinterpret_cast<uint4*>(dst) = make_uint4(words[0], words[1], words[2], words[3]);
  }
}

// The merge so far: Σ_k exp(lse_k - max) (sum) and Σ_k exp(lse_k - max) v_k
// (acc) over the non-empty states seen, max their largest lse (-inf: none yet).
struct RunningState {
  float max = -kInf;
  float sum = 0.0f;
  Unit acc = {};
  bool poisoned = false;  // a state had lse NaN or +inf
};

__device__ __forceinline__ void merge_one(RunningState& s, float lse, const Unit& v) {
  if (!(lse < kInf)) {  // NaN or +inf: the result is NaN (API contract)
    s.poisoned = true;
    return;
  }
#ifndef PTXATTN_INJECT_BUG_MERGE_EMPTY_BY_WEIGHT
  // RULE: an empty state (lse = -inf) is skipped, never weighted by
  // exp(-inf) = 0: its v may hold NaN, and 0 x NaN = NaN.
  if (lse == -kInf) return;
#endif
  if (lse > s.max) {
    // Rescale what was merged to the new maximum: by exp(-inf) = 0 at the
    // first non-empty state, when sum and acc are still exact zeros.
    const float scale = expf(s.max - lse);
    s.sum = fmaf(s.sum, scale, 1.0f);
#pragma unroll
    for (int e = 0; e < kMergeUnitElements; ++e) s.acc[e] = fmaf(s.acc[e], scale, v[e]);
    s.max = lse;
  } else {
    const float weight = expf(lse - s.max);
    s.sum += weight;
#pragma unroll
    for (int e = 0; e < kMergeUnitElements; ++e) s.acc[e] = fmaf(v[e], weight, s.acc[e]);
  }
}

template <typename In, typename Out>
__global__ void __launch_bounds__(kMergeThreads) merge_states_kernel(const __grid_constant__ MergeParams p) {
  const int32_t units = p.head_dim / kMergeUnitElements;
  const int64_t thread = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t row = thread / units;  // token · num_heads + head
  if (row >= p.num_tokens * p.num_heads) return;
  const int32_t begin = int32_t(thread - row * units) * kMergeUnitElements;
  const int64_t token = row / p.num_heads;
  const int64_t head = row - token * p.num_heads;

  Out* const out_at = static_cast<Out*>(p.v_out) + (token * p.out_token_stride + head * p.head_dim + begin);

#ifndef PTXATTN_INJECT_BUG_MERGE_SKIPS_GRID_WAIT
  ptx::griddepcontrol_wait();  // the states may come from the grid before this one
#endif
#ifndef PTXATTN_INJECT_BUG_MERGE_PAST_BATCH
  // RULE: a graph plan's merge writes the batch's rows only; the rest of o
  // belongs to the caller.
  if (p.live_tokens != nullptr && token >= *p.live_tokens) return;
#endif
  // The token's states: num_states from its own stride, or where
  // state_indptr puts them. RULE: a token merges its own states only, and
  // reads no others (split-KV writes exactly these).
  int64_t v_token = token * p.v.token_stride, lse_token = token * p.lse.token_stride;
  int32_t states = p.num_states;
  if (p.state_indptr != nullptr) {
    const int32_t first = p.state_indptr[token];
#ifdef PTXATTN_INJECT_BUG_MERGE_OTHER_TOKENS_STATES
    states = min(p.num_states, p.state_indptr[p.num_tokens] - first);  // the bug: the states after its own too
#else
    states = p.state_indptr[token + 1] - first;
    if (states == 0) return;  // none: the token's row of v_out is not the merge's
#endif
    v_token = int64_t(first) * p.v.state_stride;
    lse_token = int64_t(first) * p.lse.state_stride;
  }
  const int64_t v_offset = v_token + head * p.head_dim + begin;
  const In* v_first = static_cast<const In*>(p.v.first) + v_offset;
  const In* v_rest = static_cast<const In*>(p.v.rest) + v_offset;
  const float* lse_first = p.lse.first + lse_token + head;
  const float* lse_rest = p.lse.rest + lse_token + head;
  RunningState s;
  for (int32_t k0 = 0; k0 < p.num_states; k0 += kStateBatch) {
    float lse[kStateBatch];
    Unit v[kStateBatch];
#pragma unroll
    for (int i = 0; i < kStateBatch; ++i) {
      const int32_t k = k0 + i;
      if (k >= p.num_states) break;
      lse[i] = -kInf;  // past the token's states: empty, not loaded
      if (k >= states) continue;
      lse[i] = k == 0 ? *lse_first : lse_rest[(k - 1) * p.lse.state_stride];
      load_unit(k == 0 ? v_first : v_rest + (k - 1) * p.v.state_stride, v[i]);
    }
#pragma unroll
    for (int i = 0; i < kStateBatch; ++i) {
      if (k0 + i >= p.num_states) break;
      merge_one(s, lse[i], v[i]);
    }
  }

  Unit out;
  float lse_out;
  if (s.poisoned) {
    for (float& x : out) x = kNaN;
    lse_out = kNaN;
  } else if (s.max == -kInf) {
    // RULE: every state empty: v_out = 0 and lse_out = -inf, selected.
    for (float& x : out) x = 0.0f;
    lse_out = -kInf;
  } else {
    // sum >= 1: the state at the maximum adds exp(0) = 1.
#pragma unroll
    for (int e = 0; e < kMergeUnitElements; ++e) out[e] = s.acc[e] / s.sum;
    lse_out = s.max + logf(s.sum);
  }
  store_unit(out_at, out);
  if (p.lse_out != nullptr && begin == 0) p.lse_out[row] = lse_out;
}

using MergeKernel = void (*)(const MergeParams);

template <typename In>
MergeKernel merge_kernel(StateDType out_dtype) {
  switch (out_dtype) {
    case StateDType::kBF16: return merge_states_kernel<In, __nv_bfloat16>;
    case StateDType::kFP16: return merge_states_kernel<In, __half>;
    case StateDType::kFP32: return merge_states_kernel<In, float>;
  }
  return nullptr;  // unreachable: the API refuses values outside StateDType
}

MergeKernel merge_kernel(StateDType v_dtype, StateDType out_dtype) {
  switch (v_dtype) {
    case StateDType::kBF16: return merge_kernel<__nv_bfloat16>(out_dtype);
    case StateDType::kFP16: return merge_kernel<__half>(out_dtype);
    case StateDType::kFP32: return merge_kernel<float>(out_dtype);
  }
  return nullptr;  // unreachable: the API refuses values outside StateDType
}

}  // namespace

cudaError_t launch_merge_states(const MergeParams& p, StateDType v_dtype, StateDType out_dtype, cudaStream_t stream) {
  const MergeKernel kernel = merge_kernel(v_dtype, out_dtype);
  if (kernel == nullptr) return cudaErrorInvalidValue;  // unreachable: the API refuses values outside StateDType
  // At most INT32_MAX rows x 128 units (API limits): under 2^31 CTAs of 256.
  const int64_t threads = p.num_tokens * p.num_heads * (p.head_dim / kMergeUnitElements);
  const dim3 grid(unsigned((threads + kMergeThreads - 1) / kMergeThreads));
  // The kernel may be scheduled before the grid ahead of it ends; it waits
  // for that grid's writes itself.
  return ptx::launch_dependent(kernel, grid, dim3(kMergeThreads), 0, stream, p);
}

}  // namespace ptxattn::detail
