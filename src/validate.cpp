// Prefill argument validation. README "Validation" lists these rules for
// users: keep the two in sync. Every message names the argument and the bad
// value; the first violated rule is reported.
#include "validate.hpp"

#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "prefill_params.hpp"  // kMaxKvSplits
#include "status.hpp"

namespace ptxattn {
namespace {

using detail::invalid_argument;
using detail::plan_mismatch;
using detail::unsupported;

constexpr int32_t kSupportedHeadDims[] = {64, 128, 256};
constexpr int64_t kElementBytes = 2;  // bf16 and fp16
constexpr int64_t kLseBytes = sizeof(float);

std::string built_head_dims() {
  std::string list;
  for (int32_t head_dim : kSupportedHeadDims)
    if (head_dim_is_built(head_dim)) list += (list.empty() ? "" : ", ") + std::to_string(head_dim);
  return list.empty() ? "none" : list;
}

Status check_positive(const char* name, int32_t value) {
  if (value <= 0) return invalid_argument(name, " = ", value, " must be positive");
  return Status::Ok();
}

// A scale whose 0 means "off" or "default": finite and >= 0.
Status check_nonnegative_finite(const char* name, float value, const char* zero_means) {
  if (!std::isfinite(value) || value < 0.0f)
    return invalid_argument(name, " = ", value, " must be finite and >= 0 (0: ", zero_means, ")");
  return Status::Ok();
}

// kv_len of paged request b: page_size * (pages - 1) + last, 0 without pages.
Status paged_kv_len(const PrefillConfig& config, const BatchIndices& indices, int32_t b, int64_t* kv_len) {
  const int32_t pages = indices.kv_indptr[b + 1] - indices.kv_indptr[b];
  const int32_t last = indices.kv_last_page_len[b];
  if (pages == 0) {
    if (last != 0)
      return invalid_argument("indices.kv_last_page_len[", b, "] = ", last, " must be 0: request ", b,
                              " owns no page (indices.kv_indptr[", b, "] == indices.kv_indptr[", b + 1,
                              "]), so its kv_len is 0");
    *kv_len = 0;
    return Status::Ok();
  }
  if (last < 1 || last > config.page_size)
    return invalid_argument("indices.kv_last_page_len[", b, "] = ", last,
                            " is outside [1, config.page_size = ", config.page_size, "] (request ", b, " owns ", pages,
                            " pages)");
  // page_size <= kMaxPageSize and pages <= INT32_MAX: the product fits int64.
  *kv_len = int64_t(config.page_size) * (pages - 1) + last;
  if (*kv_len > kMaxTokens)
    return invalid_argument("request ", b, ": kv_len = config.page_size * (pages - 1) + indices.kv_last_page_len[", b,
                            "] = ", config.page_size, " * ", pages - 1, " + ", last, " = ", *kv_len,
                            " exceeds the limit of 2^30 = ", kMaxTokens, " tokens per request");
  return Status::Ok();
}

// The block-table form: paged K/V, the table at run, lengths from kv_lens.
Status check_block_table_form(const PrefillConfig& config, const BatchIndices& indices) {
  const int32_t n = indices.num_requests, stride = indices.block_table_stride;
  if (config.kv_format != KvFormat::kPaged)
    return invalid_argument("indices.block_table_stride = ", stride, " or indices.kv_lens set: the block-table form "
                            "is for paged K/V, and config.kv_format is kRagged");
  if (stride <= 0)
    return invalid_argument("indices.block_table_stride = ", stride,
                            " must be positive with indices.kv_lens (the block-table form)");
  if (indices.kv_indptr != nullptr || indices.kv_indices != nullptr || indices.kv_last_page_len != nullptr)
    return invalid_argument("indices.kv_indptr, kv_indices and kv_last_page_len must be null in the block-table form "
                            "(indices.block_table_stride = ", stride,
                            "): the table comes at run and indices.kv_lens gives the lengths");
  if (n > 0 && indices.kv_lens == nullptr)
    return invalid_argument("indices.kv_lens is null (the block-table form needs num_requests = ", n, " entries)");
  if (int64_t(n) * stride > kMaxRows)
    return invalid_argument("indices.num_requests * indices.block_table_stride = ", n, " * ", stride,
                            " table entries exceed INT32_MAX (entries are indexed with int32)");
  for (int32_t b = 0; b < n; ++b) {
    const int32_t len = indices.kv_lens[b];
    if (len < 0 || len > kMaxTokens)
      return invalid_argument("indices.kv_lens[", b, "] = ", len, " is outside [0, 2^30 = ", kMaxTokens, "]");
    const int64_t pages = (int64_t(len) + config.page_size - 1) / config.page_size;
    if (pages > stride)
      return invalid_argument("indices.kv_lens[", b, "] = ", len, " needs ", pages, " pages of config.page_size = ",
                              config.page_size, ", more than a row of the block table holds (indices.block_table_stride = ",
                              stride, ")");
    if (len > 0 && config.num_pages < 1)
      return invalid_argument("indices.kv_lens[", b, "] = ", len, " but config.num_pages = ", config.num_pages,
                              ": there is no page the table can name");
  }
  return Status::Ok();
}

// Whether a * b > limit, for a, b, limit >= 0, without forming the product.
bool product_exceeds(int64_t a, int64_t b, int64_t limit) { return b != 0 && a > limit / b; }

}  // namespace

bool head_dim_is_built(int32_t head_dim) {
  switch (head_dim) {
#ifdef PTXATTN_ENABLE_HD64
    case 64: return true;
#endif
#ifdef PTXATTN_ENABLE_HD128
    case 128: return true;
#endif
#ifdef PTXATTN_ENABLE_HD256
    case 256: return true;
#endif
    default: return false;
  }
}

bool dtype_is_built(DType dtype) {
  switch (dtype) {
#ifdef PTXATTN_ENABLE_BF16
    case DType::kBF16: return true;
#endif
#ifdef PTXATTN_ENABLE_FP16
    case DType::kFP16: return true;
#endif
    default: return false;
  }
}

Status validate_prefill_config(const PrefillConfig& config) {
  // Enumerations first: a value outside its enum (from a cast or the C API) means nothing.
  if (config.dtype != DType::kBF16 && config.dtype != DType::kFP16)
    return invalid_argument("config.dtype = ", int(config.dtype), " is not a DType (0 = bf16, 1 = fp16)");
  if (config.kv_format != KvFormat::kPaged && config.kv_format != KvFormat::kRagged)
    return invalid_argument("config.kv_format = ", int(config.kv_format), " is not a KvFormat (0 = paged, 1 = ragged)");
  if (config.kv_layout != KvLayout::kNHD && config.kv_layout != KvLayout::kHND)
    return invalid_argument("config.kv_layout = ", int(config.kv_layout), " is not a KvLayout (0 = NHD, 1 = HND)");
  if (config.load_path != KvLoadPath::kAuto && config.load_path != KvLoadPath::kTma &&
      config.load_path != KvLoadPath::kGather)
    return invalid_argument("config.load_path = ", int(config.load_path),
                            " is not a KvLoadPath (0 = auto, 1 = tma, 2 = gather)");
  if (config.schedule != WorkSchedule::kAuto && config.schedule != WorkSchedule::kOneItemPerCta &&
      config.schedule != WorkSchedule::kPersistent && config.schedule != WorkSchedule::kDynamic)
    return invalid_argument("config.schedule = ", int(config.schedule),
                            " is not a WorkSchedule (0 = auto, 1 = one item per CTA, 2 = persistent, 3 = dynamic)");
  if (config.kv_block != KvBlock::kAuto && config.kv_block != KvBlock::kStandard && config.kv_block != KvBlock::kWide)
    return invalid_argument("config.kv_block = ", int(config.kv_block),
                            " is not a KvBlock (0 = auto, 1 = standard, 2 = wide)");
  if (config.gqa_packing != GqaPacking::kAuto && config.gqa_packing != GqaPacking::kOff &&
      config.gqa_packing != GqaPacking::kOn)
    return invalid_argument("config.gqa_packing = ", int(config.gqa_packing),
                            " is not a GqaPacking (0 = auto, 1 = off, 2 = on)");
  if (config.max_ctas < 0) return invalid_argument("config.max_ctas = ", config.max_ctas, " is negative");
  if (config.max_ctas > 0 && config.schedule == WorkSchedule::kOneItemPerCta)
    return invalid_argument("config.max_ctas = ", config.max_ctas,
                            " limits the persistent and dynamic schedules, but config.schedule is kOneItemPerCta");
  if (config.kv_stages < 0)
    return invalid_argument("config.kv_stages = ", config.kv_stages, " is negative (0: the head dim's ring)");
  if (config.kv_splits < 0 || config.kv_splits > detail::kMaxKvSplits)
    return invalid_argument("config.kv_splits = ", config.kv_splits, " is outside [0, ", detail::kMaxKvSplits,
                            "] (0: the plan's rule, 1: no split)");

  PTXATTN_RETURN_IF_ERROR(check_positive("config.num_qo_heads", config.num_qo_heads));
  PTXATTN_RETURN_IF_ERROR(check_positive("config.num_kv_heads", config.num_kv_heads));
  if (config.num_qo_heads % config.num_kv_heads != 0)
    return invalid_argument("config.num_qo_heads = ", config.num_qo_heads,
                            " is not a multiple of config.num_kv_heads = ", config.num_kv_heads);

  PTXATTN_RETURN_IF_ERROR(check_positive("config.head_dim", config.head_dim));
  if (config.head_dim != 64 && config.head_dim != 128 && config.head_dim != 256)
    return unsupported("config.head_dim = ", config.head_dim, " is not supported (64, 128 or 256)");
  if (!head_dim_is_built(config.head_dim))
    return unsupported("config.head_dim = ", config.head_dim,
                       " is not built into this library (built: ", built_head_dims(), "; meson option head_dims)");
  if (!dtype_is_built(config.dtype))
    return unsupported("config.dtype = ", config.dtype == DType::kBF16 ? "bf16" : "fp16",
                       " is not built into this library (meson option dtypes)");

  if (config.kv_format == KvFormat::kPaged) {
    if (config.page_size < 1 || config.page_size > kMaxPageSize)
      return invalid_argument("config.page_size = ", config.page_size, " is outside [1, ", kMaxPageSize, "]");
    if (config.num_pages < 0) return invalid_argument("config.num_pages = ", config.num_pages, " must be >= 0");
    // num_pages * page_size fits int64 (page_size <= kMaxPageSize); the third factor may not.
    const int64_t pool_slots = int64_t(config.num_pages) * config.page_size;
    if (product_exceeds(pool_slots, config.num_kv_heads, kMaxRows))
      return invalid_argument("config.num_pages * page_size * num_kv_heads = ", config.num_pages, " * ",
                              config.page_size, " * ", config.num_kv_heads,
                              " K/V rows exceed INT32_MAX (rows are indexed with int32)");
  } else if (config.kv_layout != KvLayout::kNHD) {
    return unsupported(
        "config.kv_layout = HND with config.kv_format = ragged: ragged K/V is "
        "[num_kv_tokens][num_kv_heads][head_dim] (NHD) only");
  }

  const PrefillOptions& options = config.options;
  if (options.window_left < -1)
    return invalid_argument("config.options.window_left = ", options.window_left, " must be -1 (off) or >= 0");
  PTXATTN_RETURN_IF_ERROR(check_nonnegative_finite("config.options.logits_soft_cap", options.logits_soft_cap, "off"));
  PTXATTN_RETURN_IF_ERROR(check_nonnegative_finite("config.options.sm_scale", options.sm_scale, "1/sqrt(head_dim)"));
  return Status::Ok();
}

Status validate_batch_indices(const PrefillConfig& config, const BatchIndices& indices) {
  PTXATTN_RETURN_IF_ERROR(validate_prefill_config(config));
  const int32_t num_requests = indices.num_requests;
  if (num_requests < 0) return invalid_argument("indices.num_requests = ", num_requests, " must be >= 0");
  PTXATTN_RETURN_IF_ERROR(detail::check_indptr("indices.qo_indptr", indices.qo_indptr, num_requests));
  const bool block_table = detail::block_table_form(indices);
  if (block_table)
    PTXATTN_RETURN_IF_ERROR(check_block_table_form(config, indices));
  else
    PTXATTN_RETURN_IF_ERROR(detail::check_indptr("indices.kv_indptr", indices.kv_indptr, num_requests));

  const int32_t num_q_tokens = indices.qo_indptr[num_requests];
  if (num_q_tokens > kMaxTokens)
    return invalid_argument("indices.qo_indptr[num_requests] = ", num_q_tokens,
                            " query tokens exceed the limit of 2^30 = ", kMaxTokens, " tokens per batch");
  if (int64_t(num_q_tokens) * config.num_qo_heads > kMaxRows)
    return invalid_argument("indices.qo_indptr[num_requests] * config.num_qo_heads = ", num_q_tokens, " * ",
                            config.num_qo_heads, " query rows exceed INT32_MAX (rows are indexed with int32)");

  const bool paged = config.kv_format == KvFormat::kPaged;
  if (block_table) {
    // Checked above.
  } else if (paged) {
    // kv_indices null: the page table comes at run (PrefillTensors::kv_indices).
    PTXATTN_RETURN_IF_ERROR(detail::check_page_table(config.num_pages, num_requests, indices.kv_indptr,
                                                      indices.kv_indices, indices.kv_last_page_len,
                                                      /*table_at_run=*/true));
  } else {
    const int32_t num_kv_rows = indices.kv_indptr[num_requests];
    if (num_kv_rows > kMaxTokens)
      return invalid_argument("indices.kv_indptr[num_requests] = ", num_kv_rows,
                              " K/V tokens exceed the limit of 2^30 = ", kMaxTokens, " tokens per batch");
    if (int64_t(num_kv_rows) * config.num_kv_heads > kMaxRows)
      return invalid_argument("indices.kv_indptr[num_requests] * config.num_kv_heads = ", num_kv_rows, " * ",
                              config.num_kv_heads, " K/V rows exceed INT32_MAX (rows are indexed with int32)");
  }

  for (int32_t b = 0; b < num_requests; ++b) {
    int64_t kv_len = block_table ? indices.kv_lens[b] : indices.kv_indptr[b + 1] - indices.kv_indptr[b];
    if (paged && !block_table) PTXATTN_RETURN_IF_ERROR(paged_kv_len(config, indices, b, &kv_len));
    const int32_t qo_len = indices.qo_indptr[b + 1] - indices.qo_indptr[b];
    // Ragged kv_len and every qo_len are bounded by the batch totals checked above.
    if (config.options.causal && qo_len > kv_len)
      return invalid_argument("request ", b, ": qo_len = ", qo_len, " (indices.qo_indptr) > kv_len = ", kv_len,
                              " with config.options.causal: bottom-right aligned causal masking needs "
                              "qo_len <= kv_len");
  }
  return Status::Ok();
}

Status validate_prefill_tensors(const PrefillConfig& config, int64_t plan_num_q_tokens, int64_t plan_num_kv_rows,
                                const PrefillTensors& tensors, bool device_page_table) {
  if (tensors.num_q_tokens != plan_num_q_tokens)
    return plan_mismatch("tensors.num_q_tokens = ", tensors.num_q_tokens, " differs from the plan's ",
                         plan_num_q_tokens, " query tokens (indices.qo_indptr[num_requests], or a graph plan's "
                         "capacity.max_q_tokens)");
  const bool paged = config.kv_format == KvFormat::kPaged;
  if (paged && tensors.num_kv_rows != config.num_pages)
    return plan_mismatch("tensors.num_kv_rows = ", tensors.num_kv_rows, " differs from the plan's page pool of ",
                         config.num_pages, " pages (config.num_pages)");
  // Ragged K/V buffers may hold padding rows after the last request's rows.
  if (!paged && tensors.num_kv_rows < plan_num_kv_rows)
    return plan_mismatch("tensors.num_kv_rows = ", tensors.num_kv_rows, " is fewer than the plan's ", plan_num_kv_rows,
                         " K/V rows (indices.kv_indptr[num_requests], or a graph plan's capacity.max_kv_units)");
  if (!paged && product_exceeds(tensors.num_kv_rows, config.num_kv_heads, kMaxRows))
    return invalid_argument("tensors.num_kv_rows * config.num_kv_heads = ", tensors.num_kv_rows, " * ",
                            config.num_kv_heads, " K/V rows exceed INT32_MAX (rows are indexed with int32)");

  // Row strides of q and o: 0 (contiguous), or a whole row at least, in 16-byte units.
  const int64_t row = int64_t(config.num_qo_heads) * config.head_dim;
  for (const auto& [name, stride] : {std::pair<const char*, int64_t>{"tensors.q_row_stride", tensors.q_row_stride},
                                     std::pair<const char*, int64_t>{"tensors.o_row_stride", tensors.o_row_stride}})
    if (stride != 0 && (stride < row || stride > kMaxRows || stride % 8 != 0))
      return invalid_argument(name, " = ", stride, " must be 0 (contiguous) or a multiple of 8 in [num_qo_heads * "
                              "head_dim = ", row, ", INT32_MAX]");

  // The stride of k and v: 0 (contiguous), or a whole page (row) at least, in 16-byte units.
  const int64_t kv_unit = (paged ? int64_t(config.page_size) : 1) * config.num_kv_heads * config.head_dim;
  if (tensors.kv_stride != 0 && (tensors.kv_stride < kv_unit || tensors.kv_stride > kMaxRows ||
                                 tensors.kv_stride % 8 != 0))
    return invalid_argument("tensors.kv_stride = ", tensors.kv_stride, " must be 0 (contiguous) or a multiple of 8 in [",
                            paged ? "page_size * num_kv_heads * head_dim = " : "num_kv_heads * head_dim = ", kv_unit,
                            ", INT32_MAX]");

  // The plan's checks bound every factor: tokens * heads and pool rows are at
  // most INT32_MAX, and strides too, so element and byte counts fit int64.
  // A strided tensor spans (tokens - 1) strides and one row (k and v: (pages
  // or rows - 1) strides and one page or row).
  auto span = [&](int64_t stride) {
    return tensors.num_q_tokens == 0 ? 0 : (tensors.num_q_tokens - 1) * (stride != 0 ? stride : row) + row;
  };
  const int64_t q_elements = span(tensors.q_row_stride), o_elements = span(tensors.o_row_stride);
  const int64_t kv_elements =
      tensors.num_kv_rows <= 0 ? 0 : (tensors.num_kv_rows - 1) * (tensors.kv_stride != 0 ? tensors.kv_stride : kv_unit) + kv_unit;
  const int64_t lse_elements = config.options.return_lse ? tensors.num_q_tokens * config.num_qo_heads : 0;
  PTXATTN_RETURN_IF_ERROR(detail::check_device_pointer("tensors.q", tensors.q, q_elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(detail::check_device_pointer("tensors.k", tensors.k, kv_elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(detail::check_device_pointer("tensors.v", tensors.v, kv_elements, kTensorAlignment));
  PTXATTN_RETURN_IF_ERROR(detail::check_device_pointer("tensors.o", tensors.o, o_elements, kTensorAlignment));
  if (config.options.return_lse && tensors.lse == nullptr && lse_elements > 0)
    return invalid_argument("tensors.lse is null but config.options.return_lse is set (", lse_elements,
                            " values to write)");
  PTXATTN_RETURN_IF_ERROR(detail::check_device_pointer("tensors.lse", tensors.lse, lse_elements, kTensorAlignment));
  if (device_page_table) {
    if (tensors.kv_indices == nullptr && plan_num_kv_rows > 0)
      return invalid_argument("tensors.kv_indices is null, but the plan was made without host indices.kv_indices "
                              "and lists ", plan_num_kv_rows, " pages: it reads the page table from the device at run");
    PTXATTN_RETURN_IF_ERROR(detail::check_device_pointer("tensors.kv_indices", tensors.kv_indices, plan_num_kv_rows,
                                                         sizeof(int32_t)));
  } else if (tensors.kv_indices != nullptr) {
    return invalid_argument("tensors.kv_indices = ", static_cast<const void*>(tensors.kv_indices),
                            " must be null: ",
                            paged ? "the plan was made with host indices.kv_indices and holds its own copy"
                                  : "ragged K/V has no page table");
  }

  // Outputs must not alias inputs or each other: CTAs read q/k/v while others write o/lse.
  using detail::TensorRange;
  const TensorRange q{"tensors.q", tensors.q, q_elements * kElementBytes};
  const TensorRange k{"tensors.k", tensors.k, kv_elements * kElementBytes};
  const TensorRange v{"tensors.v", tensors.v, kv_elements * kElementBytes};
  const TensorRange o{"tensors.o", tensors.o, o_elements * kElementBytes};
  const TensorRange lse{"tensors.lse", tensors.lse, lse_elements * kLseBytes};
  const TensorRange kv_indices{"tensors.kv_indices", tensors.kv_indices,
                               device_page_table ? plan_num_kv_rows * int64_t(sizeof(int32_t)) : 0};
  for (const TensorRange& output : {o, lse})
    for (const TensorRange& other : {q, k, v, kv_indices, o})
      if (output.name != other.name && output.overlaps(other))
        return invalid_argument(output.name, " [", output.ptr, ", +", output.bytes, " bytes) overlaps ", other.name,
                                " [", other.ptr, ", +", other.bytes,
                                " bytes): outputs must not alias inputs or each other");
  return Status::Ok();
}

namespace detail {

RequestKv request_kv(const PrefillConfig& config, const BatchIndices& indices, int32_t b) {
  if (block_table_form(indices)) return {b * indices.block_table_stride, indices.kv_lens[b]};
  const int32_t start = indices.kv_indptr[b], units = indices.kv_indptr[b + 1] - start;
  if (config.kv_format == KvFormat::kRagged) return {start, units};
  // Validated: the product fits int32 (kv_len <= 2^30).
  return {start, units == 0 ? 0 : config.page_size * (units - 1) + indices.kv_last_page_len[b]};
}

int64_t kv_units(const BatchIndices& indices) {
  if (block_table_form(indices)) return int64_t(indices.num_requests) * indices.block_table_stride;
  return indices.kv_indptr[indices.num_requests];
}

Status check_indptr(const char* name, const int32_t* indptr, int32_t num_requests) {
  if (indptr == nullptr)
    return invalid_argument(name, " is null (it needs num_requests + 1 = ", int64_t(num_requests) + 1, " entries)");
  if (indptr[0] != 0) return invalid_argument(name, "[0] = ", indptr[0], " must be 0");
  for (int32_t b = 0; b < num_requests; ++b)
    if (indptr[b + 1] < indptr[b])
      return invalid_argument(name, "[", b + 1, "] = ", indptr[b + 1], " < ", name, "[", b, "] = ", indptr[b],
                              ": it must be non-decreasing");
  return Status::Ok();
}

Status check_page_table(int32_t num_pages, int32_t num_requests, const int32_t* kv_indptr, const int32_t* kv_indices,
                        const int32_t* kv_last_page_len, bool table_at_run) {
  const int32_t num_pages_used = kv_indptr[num_requests];
  if (num_pages_used > 0 && kv_indices == nullptr && !table_at_run)
    return invalid_argument("indices.kv_indices is null but indices.kv_indptr[num_requests] = ", num_pages_used,
                            " pages are listed");
  // A bad entry of a table given at run reads page 0 instead, which needs a pool.
  if (num_pages_used > 0 && kv_indices == nullptr && num_pages < 1)
    return invalid_argument("indices.kv_indices is null (the page table comes at run) and indices.kv_indptr["
                            "num_requests] = ", num_pages_used, " pages are listed, but config.num_pages = ",
                            num_pages, ": there is no page they can name");
  for (int32_t i = 0; kv_indices != nullptr && i < num_pages_used; ++i) {
    const int32_t page = kv_indices[i];
    if (page < 0 || page >= num_pages)
      return invalid_argument("indices.kv_indices[", i, "] = ", page, " is outside the page pool [0, ", num_pages,
                              ") (config.num_pages)");
  }
  if (num_requests > 0 && kv_last_page_len == nullptr)
    return invalid_argument("indices.kv_last_page_len is null (it needs num_requests = ", num_requests, " entries)");
  return Status::Ok();
}

Status check_device_pointer(const char* name, const void* ptr, int64_t elements, uintptr_t alignment) {
  if (ptr == nullptr) {
    if (elements == 0) return Status::Ok();
    return invalid_argument(name, " is null but holds ", elements, " elements");
  }
  if (reinterpret_cast<uintptr_t>(ptr) % alignment != 0)
    return invalid_argument(name, " = ", ptr, " is not ", alignment, "-byte aligned");
  return Status::Ok();
}

bool TensorRange::overlaps(const TensorRange& other) const {
  if (ptr == nullptr || other.ptr == nullptr || bytes <= 0 || other.bytes <= 0) return false;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(ptr), other_begin = reinterpret_cast<uintptr_t>(other.ptr);
  // Distances from the lower start, so no end address is formed (it could wrap).
  return begin <= other_begin ? other_begin - begin < uint64_t(bytes) : begin - other_begin < uint64_t(other.bytes);
}

Status check_aliasing(std::initializer_list<OutputRange> outputs, std::initializer_list<TensorRange> inputs) {
  for (const OutputRange& output : outputs) {
    const TensorRange& out = output.range;
    for (const TensorRange& in : inputs) {
      // Names identify inputs: two inputs may share memory, only the own one may be overwritten.
      const bool own_input = output.own_input.name != nullptr && std::strcmp(in.name, output.own_input.name) == 0;
      const bool in_place = own_input && out.ptr == in.ptr && out.bytes == in.bytes;
      if (!in_place && out.overlaps(in))
        return invalid_argument(out.name, " [", out.ptr, ", +", out.bytes, " bytes) overlaps ", in.name, " [", in.ptr,
                                ", +", in.bytes, " bytes): an output may only be exactly its own input",
                                output.own_input.name ? std::string(" (") + output.own_input.name + ")"
                                                      : std::string());
    }
    for (const OutputRange& other : outputs)
      if (&other != &output && out.overlaps(other.range))
        return invalid_argument(out.name, " [", out.ptr, ", +", out.bytes, " bytes) overlaps ", other.range.name, " [",
                                other.range.ptr, ", +", other.range.bytes, " bytes): outputs must not alias");
  }
  return Status::Ok();
}

}  // namespace detail
}  // namespace ptxattn
