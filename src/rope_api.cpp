// Host API of the RoPE kernels (build_rope_cos_sin_cache, apply_rope,
// apply_rope_with_cos_sin_cache): every argument validated, then one launch.
// Also the helpers append_kv.cu shares: config validation and the frequency
// table (pointer, aliasing and indptr checks: validate.cpp). Every message
// names the argument and the bad value.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "rope_params.hpp"
#include "status.hpp"
#include "validate.hpp"

namespace ptxattn {
namespace {

using detail::invalid_argument;
using detail::unsupported;

constexpr double kPi = 3.14159265358979323846;
constexpr uintptr_t kIndexAlignment = alignof(int32_t);

bool finite_positive(float value) { return std::isfinite(value) && value > 0.0f; }

// Shapes, pointers and aliasing of q/k in and out (apply_rope and the cache variant).
Status check_rope_tensors(const RopeTensors& t, int32_t rotary_dim, const char* rotary_dim_name) {
  PTXATTN_RETURN_IF_ERROR(detail::check_dtype("tensors.dtype", t.dtype));
  PTXATTN_RETURN_IF_ERROR(detail::check_head_dim("tensors.head_dim", t.head_dim));
  PTXATTN_RETURN_IF_ERROR(detail::check_rotary_dim(rotary_dim_name, rotary_dim, t.head_dim));
  PTXATTN_RETURN_IF_ERROR(detail::check_heads("tensors.num_qo_heads", t.num_qo_heads));
  PTXATTN_RETURN_IF_ERROR(detail::check_heads("tensors.num_kv_heads", t.num_kv_heads));
  if (t.num_tokens < 0) return invalid_argument("tensors.num_tokens = ", t.num_tokens, " must be >= 0");
  const int64_t rows_per_token = int64_t(t.num_qo_heads) + t.num_kv_heads;
  if (t.num_tokens > kMaxRows / rows_per_token)
    return invalid_argument("tensors.num_tokens * (num_qo_heads + num_kv_heads) = ", t.num_tokens, " * ",
                            rows_per_token, " rows exceed INT32_MAX");

  const int64_t q_elements = t.num_tokens * t.num_qo_heads * t.head_dim;
  const int64_t k_elements = t.num_tokens * t.num_kv_heads * t.head_dim;
  using detail::check_device_pointer;
  PTXATTN_RETURN_IF_ERROR(check_device_pointer("tensors.q_in", t.q_in, q_elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(check_device_pointer("tensors.k_in", t.k_in, k_elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(check_device_pointer("tensors.q_out", t.q_out, q_elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(check_device_pointer("tensors.k_out", t.k_out, k_elements, kTensorAlignment));
  const detail::TensorRange q_in{"tensors.q_in", t.q_in, q_elements * detail::kRopeElementBytes};
  const detail::TensorRange k_in{"tensors.k_in", t.k_in, k_elements * detail::kRopeElementBytes};
  return detail::check_aliasing({{{"tensors.q_out", t.q_out, q_in.bytes}, q_in},
                                 {{"tensors.k_out", t.k_out, k_in.bytes}, k_in}},
                                {q_in, k_in});
}

Status check_positions(const RopePositions& positions, int64_t num_tokens) {
  using detail::check_device_pointer;
  if (positions.pos_ids != nullptr) {
    if (positions.indptr != nullptr || positions.offsets != nullptr || positions.num_requests != 0)
      return invalid_argument("positions.pos_ids is set together with positions.indptr / offsets / num_requests (",
                              positions.num_requests, "): give either pos_ids or indptr + offsets");
    return check_device_pointer("positions.pos_ids", positions.pos_ids, num_tokens, kIndexAlignment);
  }
  if (positions.num_requests < 0)
    return invalid_argument("positions.num_requests = ", positions.num_requests, " must be >= 0");
  if (num_tokens > 0 && positions.indptr == nullptr)
    return invalid_argument("positions.pos_ids and positions.indptr are both null (", num_tokens,
                            " tokens need positions)");
  if (num_tokens > 0 && positions.num_requests == 0)
    return invalid_argument("positions.num_requests = 0 but tensors.num_tokens = ", num_tokens,
                            ": the requests of positions.indptr must cover every token");
  const int64_t num_requests = positions.num_requests;
  PTXATTN_RETURN_IF_ERROR(check_device_pointer("positions.indptr", positions.indptr,
                                               num_requests > 0 ? num_requests + 1 : 0, kIndexAlignment));
  return check_device_pointer("positions.offsets", positions.offsets, num_requests, kIndexAlignment);
}

// The dense Q and K groups of apply_rope / apply_rope_with_cos_sin_cache.
detail::RopeParams rope_params(const RopeTensors& t, int32_t rotary_dim, bool interleave) {
  detail::RopeParams p{};
  p.groups[0] = {t.q_in, t.q_out, t.num_qo_heads, /*rotate=*/true, /*paged=*/false, 0, 0};
  p.groups[1] = {t.k_in, t.k_out, t.num_kv_heads, /*rotate=*/true, /*paged=*/false, 0, 0};
  p.num_groups = 2;
  p.num_tokens = t.num_tokens;
  p.head_dim = t.head_dim;
  p.rotary_dim = rotary_dim;
  p.interleave = interleave;
  return p;
}

}  // namespace

namespace detail {

Status check_dtype(const char* name, DType dtype) {
  if (dtype != DType::kBF16 && dtype != DType::kFP16)
    return invalid_argument(name, " = ", int(dtype), " is not a DType (0 = bf16, 1 = fp16)");
  if (!dtype_is_built(dtype))
    return unsupported(name, " = ", dtype == DType::kBF16 ? "bf16" : "fp16",
                       " is not built into this library (meson option dtypes)");
  return Status::Ok();
}

Status check_heads(const char* name, int32_t heads) {
  if (heads <= 0 || heads > kRopeMaxHeads)
    return invalid_argument(name, " = ", heads, " is outside [1, ", kRopeMaxHeads, "]");
  return Status::Ok();
}

Status check_rotary_dim(const char* name, int32_t rotary_dim, int32_t head_dim) {
  if (rotary_dim <= 0 || rotary_dim % 2 != 0 || rotary_dim > head_dim)
    return invalid_argument(name, " = ", rotary_dim, " must be even and in [2, head_dim = ", head_dim, "]");
  return Status::Ok();
}

Status check_head_dim(const char* name, int32_t head_dim) {
  if (head_dim != 64 && head_dim != 128 && head_dim != 256)
    return invalid_argument(name, " = ", head_dim, " is not supported (64, 128 or 256)");
  return Status::Ok();
}

void fill_rope_half_turns(const RopeConfig& rope, RopeParams& params) {
  for (int32_t i = 0; i < rope.rotary_dim / 2; ++i) {
    const double base = std::pow(double(rope.theta), -2.0 * i / rope.rotary_dim);
    double freq = base / rope.rope_scale;
    if (rope.llama31) {
      // Weight of the unscaled frequency: 0 for wavelengths above
      // old_context_len / low_freq_factor, 1 below old_context_len / high_freq_factor.
      const double cycles_in_old_context = rope.old_context_len * base / (2 * kPi);
      const double smooth = std::clamp((cycles_in_old_context - rope.low_freq_factor) /
                                           (double(rope.high_freq_factor) - rope.low_freq_factor),
                                       0.0, 1.0);
      freq = base * ((1 - smooth) / rope.rope_scale + smooth);
    }
    params.half_turns[i] = freq / kPi;
  }
}

}  // namespace detail

Status validate_rope_config(const RopeConfig& rope) {
  if (rope.rotary_dim <= 0 || rope.rotary_dim % 2 != 0 || rope.rotary_dim > detail::kRopeMaxRotaryDim)
    return invalid_argument("rope.rotary_dim = ", rope.rotary_dim, " must be even and in [2, ",
                            detail::kRopeMaxRotaryDim, "]");
  if (!finite_positive(rope.theta)) return invalid_argument("rope.theta = ", rope.theta, " must be finite and > 0");
  if (!finite_positive(rope.rope_scale))
    return invalid_argument("rope.rope_scale = ", rope.rope_scale, " must be finite and > 0");
  if (!rope.llama31) return Status::Ok();
  if (!finite_positive(rope.low_freq_factor))
    return invalid_argument("rope.low_freq_factor = ", rope.low_freq_factor, " must be finite and > 0 (llama31)");
  if (!std::isfinite(rope.high_freq_factor) || !(rope.high_freq_factor > rope.low_freq_factor))
    return invalid_argument("rope.high_freq_factor = ", rope.high_freq_factor,
                            " must be finite and > rope.low_freq_factor = ", rope.low_freq_factor, " (llama31)");
  if (rope.old_context_len <= 0)
    return invalid_argument("rope.old_context_len = ", rope.old_context_len, " must be > 0 (llama31)");
  return Status::Ok();
}

Status build_rope_cos_sin_cache(float* cos_sin_cache, int32_t max_position, int32_t rotary_dim,
                                const RopeConfig& rope, cudaStream_t stream) {
  PTXATTN_RETURN_IF_ERROR(validate_rope_config(rope));
  if (rotary_dim != rope.rotary_dim)
    return invalid_argument("rotary_dim = ", rotary_dim, " differs from rope.rotary_dim = ", rope.rotary_dim);
  if (max_position <= 0) return invalid_argument("max_position = ", max_position, " must be > 0");
  if (cos_sin_cache == nullptr) return invalid_argument("cos_sin_cache is null");
  PTXATTN_RETURN_IF_ERROR(detail::check_device_pointer("cos_sin_cache", cos_sin_cache,
                                                       int64_t(max_position) * rotary_dim, kTensorAlignment));
  detail::RopeParams p{};
  p.rotary_dim = rotary_dim;
  p.max_position = max_position;
  detail::fill_rope_half_turns(rope, p);
  PTXATTN_CUDA_RETURN_IF_ERROR(detail::launch_build_cos_sin_cache(cos_sin_cache, p, stream));
  return Status::Ok();
}

Status apply_rope(const RopeTensors& tensors, const RopePositions& positions, const RopeConfig& rope,
                  cudaStream_t stream) {
  PTXATTN_RETURN_IF_ERROR(validate_rope_config(rope));
  PTXATTN_RETURN_IF_ERROR(check_rope_tensors(tensors, rope.rotary_dim, "rope.rotary_dim"));
  PTXATTN_RETURN_IF_ERROR(check_positions(positions, tensors.num_tokens));
  if (tensors.num_tokens == 0) return Status::Ok();
  detail::RopeParams p = rope_params(tensors, rope.rotary_dim, rope.interleave);
  p.pos_ids = positions.pos_ids;
  p.indptr = positions.indptr;
  p.offsets = positions.offsets;
  p.num_requests = positions.num_requests;
  detail::fill_rope_half_turns(rope, p);
  PTXATTN_CUDA_RETURN_IF_ERROR(detail::launch_rope_rows(p, tensors.dtype, stream));
  return Status::Ok();
}

Status apply_rope_with_cos_sin_cache(const RopeTensors& tensors, const int32_t* pos_ids,
                                     const float* cos_sin_cache, int32_t max_position, int32_t rotary_dim,
                                     bool interleave, cudaStream_t stream) {
  PTXATTN_RETURN_IF_ERROR(check_rope_tensors(tensors, rotary_dim, "rotary_dim"));
  if (max_position <= 0) return invalid_argument("max_position = ", max_position, " must be > 0");
  if (cos_sin_cache == nullptr) return invalid_argument("cos_sin_cache is null");
  const int64_t cache_elements = int64_t(max_position) * rotary_dim;
  PTXATTN_RETURN_IF_ERROR(
      detail::check_device_pointer("cos_sin_cache", cos_sin_cache, cache_elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(detail::check_device_pointer("pos_ids", pos_ids, tensors.num_tokens, kIndexAlignment));
  const detail::TensorRange cache{"cos_sin_cache", cos_sin_cache, cache_elements * int64_t(sizeof(float))};
  const int64_t q_bytes = tensors.num_tokens * tensors.num_qo_heads * tensors.head_dim * detail::kRopeElementBytes;
  const int64_t k_bytes = tensors.num_tokens * tensors.num_kv_heads * tensors.head_dim * detail::kRopeElementBytes;
  PTXATTN_RETURN_IF_ERROR(detail::check_aliasing(
      {{{"tensors.q_out", tensors.q_out, q_bytes}, {}}, {{"tensors.k_out", tensors.k_out, k_bytes}, {}}}, {cache}));
  if (tensors.num_tokens == 0) return Status::Ok();
  detail::RopeParams p = rope_params(tensors, rotary_dim, interleave);
  p.pos_ids = pos_ids;
  p.cos_sin_cache = cos_sin_cache;
  p.max_position = max_position;
  PTXATTN_CUDA_RETURN_IF_ERROR(detail::launch_rope_rows(p, tensors.dtype, stream));
  return Status::Ok();
}

}  // namespace ptxattn
