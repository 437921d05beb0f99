// C API (include/ptxattn/ptxattn.h): converts the C mirror structs to the C++
// ones, calls the C++ API and turns its Status, or any exception, into a
// status code plus this thread's last error message. Range checks of enum
// values are left to the C++ validators; only what C adds (NULL struct
// pointers, int32 booleans) is checked here.
#include <exception>
#include <new>
#include <string>

#include "ptxattn/ptxattn.h"
#include "ptxattn/ptxattn.hpp"
#include "status.hpp"

struct ptxattn_prefill_plan {
  ptxattn::PrefillPlan plan;
};

namespace {

using ptxattn::Status;
using ptxattn::StatusCode;
using ptxattn::detail::invalid_argument;

static_assert(PTXATTN_STATUS_OK == int(StatusCode::kOk) &&
              PTXATTN_STATUS_INVALID_ARGUMENT == int(StatusCode::kInvalidArgument) &&
              PTXATTN_STATUS_UNSUPPORTED == int(StatusCode::kUnsupported) &&
              PTXATTN_STATUS_PLAN_MISMATCH == int(StatusCode::kPlanMismatch) &&
              PTXATTN_STATUS_CUDA_ERROR == int(StatusCode::kCudaError) &&
              PTXATTN_STATUS_NO_DEVICE == int(StatusCode::kNoDevice));
static_assert(PTXATTN_DTYPE_BF16 == int(ptxattn::DType::kBF16) && PTXATTN_DTYPE_FP16 == int(ptxattn::DType::kFP16));
static_assert(PTXATTN_KV_LAYOUT_NHD == int(ptxattn::KvLayout::kNHD) &&
              PTXATTN_KV_LAYOUT_HND == int(ptxattn::KvLayout::kHND));
static_assert(PTXATTN_KV_FORMAT_PAGED == int(ptxattn::KvFormat::kPaged) &&
              PTXATTN_KV_FORMAT_RAGGED == int(ptxattn::KvFormat::kRagged));
static_assert(PTXATTN_KV_LOAD_PATH_AUTO == int(ptxattn::KvLoadPath::kAuto) &&
              PTXATTN_KV_LOAD_PATH_TMA == int(ptxattn::KvLoadPath::kTma) &&
              PTXATTN_KV_LOAD_PATH_GATHER == int(ptxattn::KvLoadPath::kGather));
static_assert(PTXATTN_WORK_SCHEDULE_AUTO == int(ptxattn::WorkSchedule::kAuto) &&
              PTXATTN_WORK_SCHEDULE_ONE_ITEM_PER_CTA == int(ptxattn::WorkSchedule::kOneItemPerCta) &&
              PTXATTN_WORK_SCHEDULE_PERSISTENT == int(ptxattn::WorkSchedule::kPersistent));

thread_local std::string last_error_message;

void set_last_error(const char* message) noexcept {
  try {
    last_error_message = message;
  } catch (...) {  // no memory for the message: leave it empty rather than stale
    last_error_message.clear();
  }
}

// Runs `call` (returning a Status) and converts the result; nothing escapes.
template <typename Call>
int guarded(Call&& call) noexcept {
  try {
    const Status status = call();
    if (!status.ok()) set_last_error(status.message.c_str());
    return int(status.code);
  } catch (const std::exception& e) {
    set_last_error((std::string("internal error: ") + e.what()).c_str());
  } catch (...) {
    set_last_error("internal error: unknown exception");
  }
  return PTXATTN_STATUS_INTERNAL_ERROR;
}

Status require(const void* pointer, const char* name) {
  if (pointer == nullptr) return invalid_argument(name, " is null");
  return Status::Ok();
}

Status to_bool(int32_t value, const char* name, bool* out) {
  if (value != 0 && value != 1) return invalid_argument(name, " = ", value, " must be 0 or 1");
  *out = value == 1;
  return Status::Ok();
}

Status to_cpp(const ptxattn_prefill_config& c, ptxattn::PrefillConfig* out) {
  out->dtype = static_cast<ptxattn::DType>(c.dtype);
  out->num_qo_heads = c.num_qo_heads;
  out->num_kv_heads = c.num_kv_heads;
  out->head_dim = c.head_dim;
  out->kv_format = static_cast<ptxattn::KvFormat>(c.kv_format);
  out->kv_layout = static_cast<ptxattn::KvLayout>(c.kv_layout);
  out->page_size = c.page_size;
  out->num_pages = c.num_pages;
  out->options.window_left = c.options.window_left;
  out->options.logits_soft_cap = c.options.logits_soft_cap;
  out->options.sm_scale = c.options.sm_scale;
  out->load_path = static_cast<ptxattn::KvLoadPath>(c.load_path);
  out->schedule = static_cast<ptxattn::WorkSchedule>(c.schedule);
  out->max_ctas = c.max_ctas;
  PTXATTN_RETURN_IF_ERROR(to_bool(c.options.causal, "config.options.causal", &out->options.causal));
  return to_bool(c.options.return_lse, "config.options.return_lse", &out->options.return_lse);
}

ptxattn_prefill_config to_c(const ptxattn::PrefillConfig& config) {
  ptxattn_prefill_config c{};
  c.dtype = int32_t(config.dtype);
  c.num_qo_heads = config.num_qo_heads;
  c.num_kv_heads = config.num_kv_heads;
  c.head_dim = config.head_dim;
  c.kv_format = int32_t(config.kv_format);
  c.kv_layout = int32_t(config.kv_layout);
  c.page_size = config.page_size;
  c.num_pages = config.num_pages;
  c.options.causal = config.options.causal;
  c.options.window_left = config.options.window_left;
  c.options.logits_soft_cap = config.options.logits_soft_cap;
  c.options.sm_scale = config.options.sm_scale;
  c.options.return_lse = config.options.return_lse;
  c.load_path = int32_t(config.load_path);
  c.schedule = int32_t(config.schedule);
  c.max_ctas = config.max_ctas;
  return c;
}

ptxattn::BatchIndices to_cpp(const ptxattn_batch_indices& c) {
  return {c.num_requests, c.qo_indptr, c.kv_indptr, c.kv_indices, c.kv_last_page_len};
}

ptxattn::PrefillTensors to_cpp(const ptxattn_prefill_tensors& c) {
  return {c.q, c.k, c.v, c.o, c.lse, c.num_q_tokens, c.num_kv_rows};
}

Status to_cpp(const ptxattn_rope_config& c, ptxattn::RopeConfig* out) {
  out->rotary_dim = c.rotary_dim;
  out->theta = c.theta;
  out->rope_scale = c.rope_scale;
  out->low_freq_factor = c.low_freq_factor;
  out->high_freq_factor = c.high_freq_factor;
  out->old_context_len = c.old_context_len;
  PTXATTN_RETURN_IF_ERROR(to_bool(c.interleave, "rope.interleave", &out->interleave));
  return to_bool(c.llama31, "rope.llama31", &out->llama31);
}

ptxattn_rope_config to_c(const ptxattn::RopeConfig& rope) {
  ptxattn_rope_config c{};
  c.rotary_dim = rope.rotary_dim;
  c.interleave = rope.interleave;
  c.theta = rope.theta;
  c.rope_scale = rope.rope_scale;
  c.llama31 = rope.llama31;
  c.low_freq_factor = rope.low_freq_factor;
  c.high_freq_factor = rope.high_freq_factor;
  c.old_context_len = rope.old_context_len;
  return c;
}

ptxattn::RopeTensors to_cpp(const ptxattn_rope_tensors& c) {
  return {static_cast<ptxattn::DType>(c.dtype),
          c.head_dim,
          c.num_qo_heads,
          c.num_kv_heads,
          c.num_tokens,
          c.q_in,
          c.k_in,
          c.q_out,
          c.k_out};
}

ptxattn::RopePositions to_cpp(const ptxattn_rope_positions& c) {
  return {c.pos_ids, c.num_requests, c.indptr, c.offsets};
}

cudaStream_t to_stream(void* cuda_stream) { return static_cast<cudaStream_t>(cuda_stream); }

}  // namespace

extern "C" {

void ptxattn_prefill_config_init(ptxattn_prefill_config* config) {
  if (config != nullptr) *config = to_c(ptxattn::PrefillConfig{});
}

void ptxattn_rope_config_init(ptxattn_rope_config* rope) {
  if (rope != nullptr) *rope = to_c(ptxattn::RopeConfig{});
}

int ptxattn_prefill_plan_create(ptxattn_prefill_plan** out) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(out, "out"));
    *out = nullptr;  // stays null if the allocation throws
    *out = new ptxattn_prefill_plan();
    return Status::Ok();
  });
}

void ptxattn_prefill_plan_destroy(ptxattn_prefill_plan* plan) { delete plan; }

int ptxattn_plan_prefill(ptxattn_prefill_plan* plan, const ptxattn_prefill_config* config,
                         const ptxattn_batch_indices* indices) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(plan, "plan"));
    PTXATTN_RETURN_IF_ERROR(require(config, "config"));
    PTXATTN_RETURN_IF_ERROR(require(indices, "indices"));
    ptxattn::PrefillConfig cpp_config;
    PTXATTN_RETURN_IF_ERROR(to_cpp(*config, &cpp_config));
    return ptxattn::plan_prefill(cpp_config, to_cpp(*indices), plan->plan);
  });
}

int ptxattn_run_prefill(const ptxattn_prefill_plan* plan, const ptxattn_prefill_tensors* tensors, void* cuda_stream) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(plan, "plan"));
    PTXATTN_RETURN_IF_ERROR(require(tensors, "tensors"));
    return ptxattn::run_prefill(plan->plan, to_cpp(*tensors), to_stream(cuda_stream));
  });
}

int ptxattn_build_rope_cos_sin_cache(float* cos_sin_cache, int32_t max_position, int32_t rotary_dim,
                                     const ptxattn_rope_config* rope, void* cuda_stream) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(rope, "rope"));
    ptxattn::RopeConfig cpp_rope;
    PTXATTN_RETURN_IF_ERROR(to_cpp(*rope, &cpp_rope));
    return ptxattn::build_rope_cos_sin_cache(cos_sin_cache, max_position, rotary_dim, cpp_rope, to_stream(cuda_stream));
  });
}

int ptxattn_apply_rope(const ptxattn_rope_tensors* tensors, const ptxattn_rope_positions* positions,
                       const ptxattn_rope_config* rope, void* cuda_stream) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(tensors, "tensors"));
    PTXATTN_RETURN_IF_ERROR(require(positions, "positions"));
    PTXATTN_RETURN_IF_ERROR(require(rope, "rope"));
    ptxattn::RopeConfig cpp_rope;
    PTXATTN_RETURN_IF_ERROR(to_cpp(*rope, &cpp_rope));
    return ptxattn::apply_rope(to_cpp(*tensors), to_cpp(*positions), cpp_rope, to_stream(cuda_stream));
  });
}

int ptxattn_apply_rope_with_cos_sin_cache(const ptxattn_rope_tensors* tensors, const int32_t* pos_ids,
                                          const float* cos_sin_cache, int32_t max_position, int32_t rotary_dim,
                                          int32_t interleave, void* cuda_stream) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(tensors, "tensors"));
    bool cpp_interleave = false;
    PTXATTN_RETURN_IF_ERROR(to_bool(interleave, "interleave", &cpp_interleave));
    return ptxattn::apply_rope_with_cos_sin_cache(to_cpp(*tensors), pos_ids, cos_sin_cache, max_position, rotary_dim,
                                                  cpp_interleave, to_stream(cuda_stream));
  });
}

const char* ptxattn_last_error_message(void) { return last_error_message.c_str(); }

const char* ptxattn_status_name(int status) {
  if (status == PTXATTN_STATUS_INTERNAL_ERROR) return "internal_error";
  return ptxattn::status_code_name(static_cast<StatusCode>(status));
}

}  // extern "C"
