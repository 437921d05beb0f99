// Host API of the merge kernel (merge_states, merge_state): every argument
// validated (README "Validation"), then one launch. Messages name the
// argument and the bad value.
#include <cstdint>
#include <initializer_list>

#include "merge_states_params.hpp"
#include "status.hpp"
#include "validate.hpp"

namespace ptxattn {
namespace {

using detail::invalid_argument;

constexpr int64_t kLseBytes = sizeof(float);

int64_t element_bytes(StateDType dtype) { return dtype == StateDType::kFP32 ? 4 : 2; }

Status check_state_dtype(const char* name, StateDType dtype) {
  if (dtype != StateDType::kBF16 && dtype != StateDType::kFP16 && dtype != StateDType::kFP32)
    return invalid_argument(name, " = ", int(dtype), " is not a StateDType (0 = bf16, 1 = fp16, 2 = fp32)");
  return Status::Ok();
}

// The shape both entry points share: dtypes, head_dim, num_heads, num_tokens.
Status check_merge_shape(StateDType v_dtype, StateDType out_dtype, int32_t num_heads, int32_t head_dim,
                         int64_t num_tokens) {
  PTXATTN_RETURN_IF_ERROR(check_state_dtype("tensors.v_dtype", v_dtype));
  PTXATTN_RETURN_IF_ERROR(check_state_dtype("tensors.out_dtype", out_dtype));
  if (head_dim < detail::kMergeUnitElements || head_dim > detail::kMergeMaxHeadDim ||
      head_dim % detail::kMergeUnitElements != 0)
    return invalid_argument("tensors.head_dim = ", head_dim, " must be a multiple of ", detail::kMergeUnitElements,
                            " in [", detail::kMergeUnitElements, ", ", detail::kMergeMaxHeadDim, "]");
  if (num_heads <= 0) return invalid_argument("tensors.num_heads = ", num_heads, " must be positive");
  if (num_tokens < 0) return invalid_argument("tensors.num_tokens = ", num_tokens, " must be >= 0");
  // With num_states <= 4096 and head_dim <= 1024, rows <= INT32_MAX keeps
  // every element and byte count below 2^55, and the grid below 2^31 CTAs.
  if (num_tokens > kMaxRows / num_heads)
    return invalid_argument("tensors.num_tokens * num_heads = ", num_tokens, " * ", num_heads,
                            " (token, head) rows exceed INT32_MAX");
  return Status::Ok();
}

// One device tensor of a merge.
struct Operand {
  const char* name;
  const void* ptr;
  int64_t elements;
  int64_t element_bytes;
  detail::TensorRange range() const { return {name, ptr, elements * element_bytes}; }
};

// Every pointer is 16-byte aligned and null only when its tensor is empty
// (lse_out: null means not written); the outputs overlap no input and not
// each other (no in-place merge: a thread may read a state row while another
// writes the output row over it).
Status check_pointers(std::initializer_list<Operand> inputs, const Operand& v_out, const Operand& lse_out) {
  using detail::check_device_pointer;
  for (const Operand& in : inputs)
    PTXATTN_RETURN_IF_ERROR(check_device_pointer(in.name, in.ptr, in.elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(check_device_pointer(v_out.name, v_out.ptr, v_out.elements, kTensorAlignment));
  if (lse_out.ptr != nullptr)
    PTXATTN_RETURN_IF_ERROR(check_device_pointer(lse_out.name, lse_out.ptr, lse_out.elements, kTensorAlignment));
  for (const Operand& in : inputs)
    PTXATTN_RETURN_IF_ERROR(detail::check_aliasing({{v_out.range(), {}}, {lse_out.range(), {}}}, {in.range()}));
  return Status::Ok();
}

}  // namespace

Status merge_states(const MergeStatesTensors& t, cudaStream_t stream) {
  return detail::merge_states_of_tokens(t, {}, int64_t(t.num_heads) * t.head_dim, stream);
}

Status detail::merge_states_of_tokens(const MergeStatesTensors& t, const MergeOfTokens& tokens,
                                      int64_t out_token_stride, cudaStream_t stream) {
  PTXATTN_RETURN_IF_ERROR(check_merge_shape(t.v_dtype, t.out_dtype, t.num_heads, t.head_dim, t.num_tokens));
  if (t.num_states < 1 || t.num_states > detail::kMergeMaxStates)
    return invalid_argument("tensors.num_states = ", t.num_states, " is outside [1, ", detail::kMergeMaxStates, "]");
  const int64_t rows = t.num_tokens * t.num_heads;  // <= INT32_MAX (checked)
  const int64_t state_rows = tokens.state_indptr != nullptr ? tokens.state_rows * t.num_heads : rows * t.num_states;
  PTXATTN_RETURN_IF_ERROR(check_pointers(
      {{"tensors.v", t.v, state_rows * t.head_dim, element_bytes(t.v_dtype)},
       {"tensors.lse", t.lse, state_rows, kLseBytes}},
      {"tensors.v_out", t.v_out, rows * t.head_dim, element_bytes(t.out_dtype)},
      {"tensors.lse_out", t.lse_out, rows, kLseBytes}));
  if (t.num_tokens == 0) return Status::Ok();

  // State 1 of token 0 (`rest`): with one state it is the next token's
  // state 0 or the end of the tensor, an address the kernel never reads.
  // Formed in integers: a made-up address (the fuzzer's) must not make
  // host pointer arithmetic overflow.
  const int64_t heads = t.num_heads, v_state = heads * t.head_dim;
  const auto advanced = [](const void* base, int64_t bytes) {
    return reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(base) + uint64_t(bytes));
  };
  detail::MergeParams p{};
  p.v = {t.v, advanced(t.v, v_state * element_bytes(t.v_dtype)), t.num_states * v_state, v_state};
  p.lse = {t.lse, static_cast<const float*>(advanced(t.lse, heads * kLseBytes)), t.num_states * heads, heads};
  p.v_out = t.v_out;
  p.lse_out = t.lse_out;
  p.num_tokens = t.num_tokens;
  p.live_tokens = tokens.live_tokens;
  p.state_indptr = tokens.state_indptr;
  p.out_token_stride = out_token_stride;
  p.num_states = t.num_states;
  p.num_heads = t.num_heads;
  p.head_dim = t.head_dim;
  PTXATTN_CUDA_RETURN_IF_ERROR(detail::launch_merge_states(p, t.v_dtype, t.out_dtype, stream));
  return Status::Ok();
}

Status merge_state(const MergeStateTensors& t, cudaStream_t stream) {
  PTXATTN_RETURN_IF_ERROR(check_merge_shape(t.v_dtype, t.out_dtype, t.num_heads, t.head_dim, t.num_tokens));
  const int64_t rows = t.num_tokens * t.num_heads;  // <= INT32_MAX (checked)
  const int64_t v_elements = rows * t.head_dim, v_bytes = element_bytes(t.v_dtype);
  PTXATTN_RETURN_IF_ERROR(check_pointers({{"tensors.v_a", t.v_a, v_elements, v_bytes},
                                          {"tensors.lse_a", t.lse_a, rows, kLseBytes},
                                          {"tensors.v_b", t.v_b, v_elements, v_bytes},
                                          {"tensors.lse_b", t.lse_b, rows, kLseBytes}},
                                         {"tensors.v_out", t.v_out, v_elements, element_bytes(t.out_dtype)},
                                         {"tensors.lse_out", t.lse_out, rows, kLseBytes}));
  if (t.num_tokens == 0) return Status::Ok();

  // Two states: the state stride is never used.
  const int64_t v_token = int64_t(t.num_heads) * t.head_dim;
  detail::MergeParams p{};
  p.v = {t.v_a, t.v_b, v_token, 0};
  p.out_token_stride = v_token;
  p.lse = {t.lse_a, t.lse_b, t.num_heads, 0};
  p.v_out = t.v_out;
  p.lse_out = t.lse_out;
  p.num_tokens = t.num_tokens;
  p.num_states = 2;
  p.num_heads = t.num_heads;
  p.head_dim = t.head_dim;
  PTXATTN_CUDA_RETURN_IF_ERROR(detail::launch_merge_states(p, t.v_dtype, t.out_dtype, stream));
  return Status::Ok();
}

}  // namespace ptxattn
