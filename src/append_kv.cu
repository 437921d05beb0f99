// append_paged_kv_cache: the plan (host-validated destinations of every
// appended token, uploaded once) and the launch. The copy itself, fused RoPE
// on K (and Q) included, is the RoPE row kernel of rope.cu with paged output
// groups: one kernel moves every row of the batch (rope_params.hpp).
//
// NOTES: nothing the device reads can send a write outside the cache rows the
// plan names. The plan resolves each token to (page, position) on the host,
// where kv_indices, kv_last_page_len and the indptrs are checked, and refuses
// two tokens landing in one slot (their rows would race).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "prefill_plan.hpp"  // DeviceArena
#include "rope_params.hpp"
#include "status.hpp"
#include "validate.hpp"

namespace ptxattn {

class AppendPlanImpl {
 public:
  AppendConfig config;
  int64_t num_append_tokens = 0;
  DeviceArena token_page;      // int32[num_append_tokens]: page of each appended token
  DeviceArena token_position;  // int32[num_append_tokens]: its kv position (slot = position % page_size)
  bool valid = false;
};

namespace {

using detail::invalid_argument;
using detail::plan_mismatch;

Status check_append_config(const AppendConfig& config) {
  PTXATTN_RETURN_IF_ERROR(detail::check_dtype("config.dtype", config.dtype));
  if (config.kv_layout != KvLayout::kNHD && config.kv_layout != KvLayout::kHND)
    return invalid_argument("config.kv_layout = ", int(config.kv_layout), " is not a KvLayout (0 = NHD, 1 = HND)");
  PTXATTN_RETURN_IF_ERROR(detail::check_heads("config.num_kv_heads", config.num_kv_heads));
  PTXATTN_RETURN_IF_ERROR(detail::check_head_dim("config.head_dim", config.head_dim));
  if (config.page_size < 1 || config.page_size > kMaxPageSize)
    return invalid_argument("config.page_size = ", config.page_size, " is outside [1, ", kMaxPageSize, "]");
  if (config.num_pages < 0) return invalid_argument("config.num_pages = ", config.num_pages, " must be >= 0");
  // The pool is the K/V cache prefill reads, held to prefill's limit; it also
  // keeps the pool's element and byte counts (append_paged_kv_cache) in int64.
  const int64_t pool_slots = int64_t(config.num_pages) * config.page_size;  // < 2^41
  if (pool_slots > kMaxRows / config.num_kv_heads)
    return invalid_argument("config.num_pages * page_size * num_kv_heads = ", config.num_pages, " * ",
                            config.page_size, " * ", config.num_kv_heads,
                            " K/V rows exceed INT32_MAX (rows are indexed with int32)");
  return Status::Ok();
}

// Every rule of plan_append_paged_kv; on success, the page and kv position of
// every appended token in row order.
Status resolve_targets(const AppendConfig& config, const AppendIndices& indices, std::vector<int32_t>* pages,
                       std::vector<int32_t>* positions) {
  PTXATTN_RETURN_IF_ERROR(check_append_config(config));
  const int32_t n = indices.num_requests;
  if (n < 0) return invalid_argument("indices.num_requests = ", n, " must be >= 0");
  PTXATTN_RETURN_IF_ERROR(detail::check_indptr("indices.append_indptr", indices.append_indptr, n));
  PTXATTN_RETURN_IF_ERROR(detail::check_indptr("indices.kv_indptr", indices.kv_indptr, n));
  PTXATTN_RETURN_IF_ERROR(detail::check_page_table(config.num_pages, n, indices.kv_indptr, indices.kv_indices,
                                                   indices.kv_last_page_len));
  const int64_t num_tokens = indices.append_indptr[n];
  if (num_tokens * config.num_kv_heads > kMaxRows)
    return invalid_argument("indices.append_indptr[num_requests] * config.num_kv_heads = ", num_tokens, " * ",
                            config.num_kv_heads, " rows exceed INT32_MAX");

  // No reserve(num_tokens): append_indptr is not trusted until the loop below
  // has held every append_len against its kv_len, and a bad total (up to
  // INT32_MAX tokens) must not cost gigabytes before it is refused.
  pages->clear();
  positions->clear();
  for (int32_t b = 0; b < n; ++b) {
    const int32_t num_pages = indices.kv_indptr[b + 1] - indices.kv_indptr[b];
    const int32_t last = indices.kv_last_page_len[b];
    if (num_pages == 0 && last != 0)
      return invalid_argument("indices.kv_last_page_len[", b, "] = ", last, " must be 0: request ", b,
                              " owns no page, so its kv_len is 0");
    if (num_pages > 0 && (last < 1 || last > config.page_size))
      return invalid_argument("indices.kv_last_page_len[", b, "] = ", last, " is outside [1, config.page_size = ",
                              config.page_size, "] (request ", b, " owns ", num_pages, " pages)");
    const int64_t kv_len = num_pages == 0 ? 0 : int64_t(config.page_size) * (num_pages - 1) + last;
    if (kv_len > std::numeric_limits<int32_t>::max())
      return invalid_argument("request ", b, ": kv_len = ", kv_len, " exceeds INT32_MAX (positions are int32)");
    const int32_t append_len = indices.append_indptr[b + 1] - indices.append_indptr[b];
    if (append_len > kv_len)
      return invalid_argument("request ", b, ": append_len = ", append_len, " (indices.append_indptr) > kv_len = ",
                              kv_len, ": the page table must already count the appended tokens");
    for (int32_t j = 0; j < append_len; ++j) {
      const int32_t position = int32_t(kv_len - append_len + j);
      pages->push_back(indices.kv_indices[indices.kv_indptr[b] + position / config.page_size]);
      positions->push_back(position);
    }
  }

  // Two tokens in one slot would be written by racing threads: refuse.
  std::vector<int64_t> order(num_tokens);
  for (int64_t t = 0; t < num_tokens; ++t) order[t] = t;
  auto slot_key = [&](int64_t t) {
    return int64_t((*pages)[t]) * config.page_size + (*positions)[t] % config.page_size;
  };
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return slot_key(a) < slot_key(b); });
  for (int64_t i = 1; i < num_tokens; ++i)
    if (slot_key(order[i]) == slot_key(order[i - 1])) {
      const int64_t first = std::min(order[i - 1], order[i]), second = std::max(order[i - 1], order[i]);
      return invalid_argument("appended tokens ", first, " and ", second, " (rows of k_new) both land in page ",
                              (*pages)[first], " slot ", (*positions)[first] % config.page_size,
                              ": requests must not share the pages they append to");
    }
  return Status::Ok();
}

}  // namespace

Status validate_append_indices(const AppendConfig& config, const AppendIndices& indices) {
  std::vector<int32_t> pages, positions;
  return resolve_targets(config, indices, &pages, &positions);
}

Status plan_append_paged_kv(const AppendConfig& config, const AppendIndices& indices, AppendPlan& plan) {
  if (plan.impl() == nullptr) plan = AppendPlan();  // a moved-from plan becomes a fresh one
  AppendPlanImpl& impl = *plan.impl();
  impl.valid = false;
  std::vector<int32_t> pages, positions;
  PTXATTN_RETURN_IF_ERROR(resolve_targets(config, indices, &pages, &positions));
  PTXATTN_RETURN_IF_ERROR(impl.token_page.upload(pages.data(), pages.size() * sizeof(int32_t)));
  PTXATTN_RETURN_IF_ERROR(impl.token_position.upload(positions.data(), positions.size() * sizeof(int32_t)));
  impl.config = config;
  impl.num_append_tokens = int64_t(pages.size());
  impl.valid = true;
  return Status::Ok();
}

Status append_paged_kv_cache(const AppendPlan& plan, const AppendTensors& tensors, const RopeConfig* rope,
                             cudaStream_t stream) {
  if (!plan.valid())
    return invalid_argument("plan: not made (plan_append_paged_kv has not succeeded on this plan)");
  const AppendPlanImpl& impl = *plan.impl();
  const AppendConfig& c = impl.config;
  if (tensors.num_append_tokens != impl.num_append_tokens)
    return plan_mismatch("tensors.num_append_tokens = ", tensors.num_append_tokens, " differs from the plan's ",
                         impl.num_append_tokens, " appended tokens (indices.append_indptr[num_requests])");
  if (tensors.num_pages != c.num_pages)
    return plan_mismatch("tensors.num_pages = ", tensors.num_pages, " differs from the plan's page pool of ",
                         c.num_pages, " pages (config.num_pages)");
  if (rope != nullptr) {
    PTXATTN_RETURN_IF_ERROR(validate_rope_config(*rope));
    PTXATTN_RETURN_IF_ERROR(detail::check_rotary_dim("rope->rotary_dim", rope->rotary_dim, c.head_dim));
  }
  const bool with_q = tensors.q_in != nullptr || tensors.q_out != nullptr || tensors.num_qo_heads != 0;
  if (with_q && rope == nullptr)
    return invalid_argument("tensors.q_in / q_out / num_qo_heads are set but rope is null: Q is only rotated by the "
                            "fused variant (pass a RopeConfig, or leave the Q fields empty)");
  if (with_q) PTXATTN_RETURN_IF_ERROR(detail::check_heads("tensors.num_qo_heads", tensors.num_qo_heads));

  const int64_t n = tensors.num_append_tokens;
  const int64_t kv_elements = n * c.num_kv_heads * c.head_dim;
  const int64_t q_elements = with_q ? n * tensors.num_qo_heads * c.head_dim : 0;
  const int64_t pool_elements = int64_t(c.num_pages) * c.page_size * c.num_kv_heads * c.head_dim;
  using detail::check_device_pointer;
  PTXATTN_RETURN_IF_ERROR(check_device_pointer("tensors.k_new", tensors.k_new, kv_elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(check_device_pointer("tensors.v_new", tensors.v_new, kv_elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(check_device_pointer("tensors.k_cache", tensors.k_cache, pool_elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(check_device_pointer("tensors.v_cache", tensors.v_cache, pool_elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(check_device_pointer("tensors.q_in", tensors.q_in, q_elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(check_device_pointer("tensors.q_out", tensors.q_out, q_elements, kTensorAlignment));
  using detail::kRopeElementBytes;
  const detail::TensorRange k_new{"tensors.k_new", tensors.k_new, kv_elements * kRopeElementBytes};
  const detail::TensorRange v_new{"tensors.v_new", tensors.v_new, kv_elements * kRopeElementBytes};
  const detail::TensorRange q_in{"tensors.q_in", tensors.q_in, q_elements * kRopeElementBytes};
  PTXATTN_RETURN_IF_ERROR(
      detail::check_aliasing({{{"tensors.k_cache", tensors.k_cache, pool_elements * kRopeElementBytes}, {}},
                              {{"tensors.v_cache", tensors.v_cache, pool_elements * kRopeElementBytes}, {}},
                              {{"tensors.q_out", tensors.q_out, q_in.bytes}, q_in}},
                             {k_new, v_new, q_in}));
  if (n == 0) return Status::Ok();

  detail::RopeParams p{};
  const bool rotate = rope != nullptr;
  p.groups[0] = {tensors.k_new, tensors.k_cache, c.num_kv_heads, rotate, /*paged=*/true, 0, 0};
  p.groups[1] = {tensors.v_new, tensors.v_cache, c.num_kv_heads, /*rotate=*/false, /*paged=*/true, 0, 0};
  p.groups[2] = {tensors.q_in, tensors.q_out, tensors.num_qo_heads, /*rotate=*/true, /*paged=*/false, 0, 0};
  p.num_groups = with_q ? 3 : 2;
  p.num_tokens = n;
  p.head_dim = c.head_dim;
  p.rotary_dim = rotate ? rope->rotary_dim : 0;
  p.interleave = rotate && rope->interleave;
  if (rotate) detail::fill_rope_half_turns(*rope, p);
  p.pos_ids = static_cast<const int32_t*>(impl.token_position.get());
  p.token_page = static_cast<const int32_t*>(impl.token_page.get());
  p.page_size = c.page_size;
  const int64_t row = c.head_dim;
  if (c.kv_layout == KvLayout::kNHD) {  // [page][slot][head][d]
    p.head_stride = row;
    p.slot_stride = c.num_kv_heads * row;
    p.page_stride = c.page_size * p.slot_stride;
  } else {  // [page][head][slot][d]
    p.slot_stride = row;
    p.head_stride = c.page_size * row;
    p.page_stride = c.num_kv_heads * p.head_stride;
  }
  PTXATTN_CUDA_RETURN_IF_ERROR(detail::launch_rope_rows(p, c.dtype, stream));
  return Status::Ok();
}

AppendPlan::AppendPlan() : impl_(std::make_unique<AppendPlanImpl>()) {}
AppendPlan::~AppendPlan() = default;
AppendPlan::AppendPlan(AppendPlan&&) noexcept = default;
AppendPlan& AppendPlan::operator=(AppendPlan&&) noexcept = default;
bool AppendPlan::valid() const { return impl_ && impl_->valid; }
const AppendConfig& AppendPlan::config() const { return impl_->config; }
int64_t AppendPlan::num_append_tokens() const { return impl_->num_append_tokens; }

}  // namespace ptxattn
