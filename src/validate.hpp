// Argument validation for the prefill entry points. The public checks
// (validate_prefill_config, validate_batch_indices) are declared in
// ptxattn.hpp; this header adds the run-time tensor check and the limits the
// kernels rely on. README "Validation" lists every rule.
#pragma once

#include <cstdint>
#include <limits>

#include "ptxattn/ptxattn.hpp"

namespace ptxattn {

// NOTES: the kernels index tokens, per-request lengths and (token, head) rows
// with int32 and compute element offsets in int64; these limits keep every
// int32 index in range. Page sizes above kMaxPageSize are not tested.
inline constexpr int32_t kMaxPageSize = 1024;
inline constexpr int64_t kMaxRows = std::numeric_limits<int32_t>::max();
// Every device pointer (q, k, v, o, lse) must be 16-byte aligned: TMA and
// 16-byte vector accesses need it (cudaMalloc gives 256).
inline constexpr uintptr_t kTensorAlignment = 16;

// Whether this build compiled kernels for the head dim / dtype (meson options head_dims, dtypes).
bool head_dim_is_built(int32_t head_dim);
bool dtype_is_built(DType dtype);

// Checks the tensors of run_prefill against the plan they are used with:
// plan_num_q_tokens = plan.num_q_tokens(), plan_num_kv_rows = plan.num_kv_rows().
// tensors.num_q_tokens must equal the plan's; tensors.num_kv_rows must equal
// config.num_pages (paged) or be at least the plan's K/V rows (ragged), else kPlanMismatch.
// Pointers must be non-null (unless their tensor is empty), 16-byte aligned,
// and the outputs (o, lse) must not overlap each other or an input.
// `config` is the plan's (already validated) config.
Status validate_prefill_tensors(const PrefillConfig& config, int64_t plan_num_q_tokens, int64_t plan_num_kv_rows,
                                const PrefillTensors& tensors);

}  // namespace ptxattn
