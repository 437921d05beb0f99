// C API (include/ptxattn/ptxattn.h): converts the C mirror structs to the C++
// ones, calls the C++ API and turns its Status, or any exception, into a
// status code plus this thread's last error message. Range checks of enum
// values are left to the C++ validators; only what C adds (NULL struct
// pointers, struct_size, int32 booleans) is checked here.
#include <algorithm>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "ptxattn/ptxattn.h"
#include "ptxattn/ptxattn.hpp"
#include "status.hpp"

struct ptxattn_prefill_plan {
  ptxattn::PrefillPlan plan;
};

struct ptxattn_append_plan {
  ptxattn::AppendPlan plan;
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
              PTXATTN_WORK_SCHEDULE_PERSISTENT == int(ptxattn::WorkSchedule::kPersistent) &&
              PTXATTN_WORK_SCHEDULE_DYNAMIC == int(ptxattn::WorkSchedule::kDynamic));
static_assert(PTXATTN_STATE_DTYPE_BF16 == int(ptxattn::StateDType::kBF16) &&
              PTXATTN_STATE_DTYPE_FP16 == int(ptxattn::StateDType::kFP16) &&
              PTXATTN_STATE_DTYPE_FP32 == int(ptxattn::StateDType::kFP32));
static_assert(PTXATTN_KV_BLOCK_AUTO == int(ptxattn::KvBlock::kAuto) &&
              PTXATTN_KV_BLOCK_STANDARD == int(ptxattn::KvBlock::kStandard) &&
              PTXATTN_KV_BLOCK_WIDE == int(ptxattn::KvBlock::kWide));

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

// The C name of each struct that carries a struct_size, for messages.
template <typename T>
struct CName;
#define PTXATTN_C_STRUCT(type) \
  template <>                  \
  struct CName<type> {         \
    static constexpr const char* value = #type; \
  };
PTXATTN_C_STRUCT(ptxattn_prefill_config)
PTXATTN_C_STRUCT(ptxattn_batch_indices)
PTXATTN_C_STRUCT(ptxattn_prefill_tensors)
PTXATTN_C_STRUCT(ptxattn_prefill_plan_info)
PTXATTN_C_STRUCT(ptxattn_rope_config)
PTXATTN_C_STRUCT(ptxattn_rope_tensors)
PTXATTN_C_STRUCT(ptxattn_rope_positions)
PTXATTN_C_STRUCT(ptxattn_append_config)
PTXATTN_C_STRUCT(ptxattn_append_indices)
PTXATTN_C_STRUCT(ptxattn_append_tensors)
PTXATTN_C_STRUCT(ptxattn_append_plan_info)
PTXATTN_C_STRUCT(ptxattn_merge_states_tensors)
PTXATTN_C_STRUCT(ptxattn_merge_state_tensors)
PTXATTN_C_STRUCT(ptxattn_wait_timeout)
PTXATTN_C_STRUCT(ptxattn_plan_capacity)
PTXATTN_C_STRUCT(ptxattn_workspace_sizes)
PTXATTN_C_STRUCT(ptxattn_plan_workspace)
#undef PTXATTN_C_STRUCT

template <typename T>
Status layout_mismatch(const char* what, size_t caller_size) {
  return invalid_argument(what, " = ", caller_size, ", but this library's ", CName<T>::value, " has ", sizeof(T),
                          " bytes: the caller was compiled against another ptxattn.h (fill the struct with ",
                          CName<T>::value, "_init)");
}

// A struct argument: not NULL, and laid out as this library's (struct_size
// is read before any other field).
template <typename T>
Status require_struct(const T* pointer, const char* name) {
  PTXATTN_RETURN_IF_ERROR(require(pointer, name));
  if (pointer->struct_size != sizeof(T))
    return layout_mismatch<T>((std::string(name) + ".struct_size").c_str(), pointer->struct_size);
  return Status::Ok();
}

// The _init functions: refuse another layout, else write the defaults.
template <typename T>
int init_struct(T* out, size_t struct_size, const T& defaults) noexcept {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(out, "out"));
    if (struct_size != sizeof(T)) return layout_mismatch<T>("struct_size", struct_size);
    *out = defaults;
    out->struct_size = sizeof(T);
    return Status::Ok();
  });
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
  out->kv_block = static_cast<ptxattn::KvBlock>(c.kv_block);
  out->kv_splits = c.kv_splits;
  out->gqa_packing = static_cast<ptxattn::GqaPacking>(c.gqa_packing);
  out->kv_stages = c.kv_stages;
  PTXATTN_RETURN_IF_ERROR(to_bool(c.options.causal, "config.options.causal", &out->options.causal));
  return to_bool(c.options.return_lse, "config.options.return_lse", &out->options.return_lse);
}

// A checked config argument, converted.
Status config_arg(const ptxattn_prefill_config* c, ptxattn::PrefillConfig* out) {
  PTXATTN_RETURN_IF_ERROR(require_struct(c, "config"));
  return to_cpp(*c, out);
}

ptxattn_prefill_config to_c(const ptxattn::PrefillConfig& config) {
  ptxattn_prefill_config c{};
  c.struct_size = sizeof(c);
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
  c.kv_block = int32_t(config.kv_block);
  c.kv_splits = config.kv_splits;
  c.gqa_packing = int32_t(config.gqa_packing);
  c.kv_stages = config.kv_stages;
  return c;
}

ptxattn::BatchIndices to_cpp(const ptxattn_batch_indices& c) {
  return {c.num_requests, c.qo_indptr, c.kv_indptr, c.kv_indices, c.kv_last_page_len, c.kv_lens, c.block_table_stride};
}

ptxattn::PlanCapacity to_cpp(const ptxattn_plan_capacity& c) {
  return {c.max_requests, c.max_q_tokens, c.max_kv_entries, c.num_sms, c.max_kv_units};
}

ptxattn::PrefillTensors to_cpp(const ptxattn_prefill_tensors& c) {
  return {c.q, c.k, c.v, c.o, c.lse, c.num_q_tokens, c.num_kv_rows, c.kv_indices, c.q_row_stride, c.o_row_stride,
          c.kv_stride};
}

// A checked rope argument, converted.
Status rope_arg(const ptxattn_rope_config* c, ptxattn::RopeConfig* out) {
  PTXATTN_RETURN_IF_ERROR(require_struct(c, "rope"));
  out->rotary_dim = c->rotary_dim;
  out->theta = c->theta;
  out->rope_scale = c->rope_scale;
  out->low_freq_factor = c->low_freq_factor;
  out->high_freq_factor = c->high_freq_factor;
  out->old_context_len = c->old_context_len;
  PTXATTN_RETURN_IF_ERROR(to_bool(c->interleave, "rope.interleave", &out->interleave));
  return to_bool(c->llama31, "rope.llama31", &out->llama31);
}

ptxattn_rope_config to_c(const ptxattn::RopeConfig& rope) {
  ptxattn_rope_config c{};
  c.struct_size = sizeof(c);
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

ptxattn::AppendConfig to_cpp(const ptxattn_append_config& c) {
  return {static_cast<ptxattn::DType>(c.dtype), c.num_kv_heads, c.head_dim,
          static_cast<ptxattn::KvLayout>(c.kv_layout), c.page_size, c.num_pages};
}

ptxattn_append_config to_c(const ptxattn::AppendConfig& config) {
  ptxattn_append_config c{};
  c.struct_size = sizeof(c);
  c.dtype = int32_t(config.dtype);
  c.num_kv_heads = config.num_kv_heads;
  c.head_dim = config.head_dim;
  c.kv_layout = int32_t(config.kv_layout);
  c.page_size = config.page_size;
  c.num_pages = config.num_pages;
  return c;
}

ptxattn::AppendIndices to_cpp(const ptxattn_append_indices& c) {
  return {c.num_requests, c.append_indptr, c.kv_indptr, c.kv_indices, c.kv_last_page_len};
}

ptxattn::AppendTensors to_cpp(const ptxattn_append_tensors& c) {
  return {c.k_new, c.v_new, c.k_cache, c.v_cache, c.num_append_tokens, c.num_pages, c.q_in, c.q_out, c.num_qo_heads};
}

ptxattn::MergeStatesTensors to_cpp(const ptxattn_merge_states_tensors& c) {
  return {static_cast<ptxattn::StateDType>(c.v_dtype),
          static_cast<ptxattn::StateDType>(c.out_dtype),
          c.num_states,
          c.num_heads,
          c.head_dim,
          c.num_tokens,
          c.v,
          c.lse,
          c.v_out,
          c.lse_out};
}

ptxattn_merge_states_tensors to_c(const ptxattn::MergeStatesTensors& t) {
  return {sizeof(ptxattn_merge_states_tensors),
          int32_t(t.v_dtype),
          int32_t(t.out_dtype),
          t.num_states,
          t.num_heads,
          t.head_dim,
          t.num_tokens,
          t.v,
          t.lse,
          t.v_out,
          t.lse_out};
}

ptxattn::MergeStateTensors to_cpp(const ptxattn_merge_state_tensors& c) {
  return {static_cast<ptxattn::StateDType>(c.v_dtype),
          static_cast<ptxattn::StateDType>(c.out_dtype),
          c.num_heads,
          c.head_dim,
          c.num_tokens,
          c.v_a,
          c.lse_a,
          c.v_b,
          c.lse_b,
          c.v_out,
          c.lse_out};
}

ptxattn_merge_state_tensors to_c(const ptxattn::MergeStateTensors& t) {
  return {sizeof(ptxattn_merge_state_tensors),
          int32_t(t.v_dtype),
          int32_t(t.out_dtype),
          t.num_heads,
          t.head_dim,
          t.num_tokens,
          t.v_a,
          t.lse_a,
          t.v_b,
          t.lse_b,
          t.v_out,
          t.lse_out};
}

// Copies s into a fixed C array, truncated, always NUL-terminated.
template <size_t N>
void copy_string(char (&out)[N], const std::string& s) {
  const size_t n = std::min(s.size(), N - 1);
  std::memcpy(out, s.data(), n);
  out[n] = '\0';
}

cudaStream_t to_stream(void* cuda_stream) { return static_cast<cudaStream_t>(cuda_stream); }

}  // namespace

extern "C" {

int ptxattn_version(void) { return PTXATTN_VERSION; }
const char* ptxattn_version_string(void) { return PTXATTN_VERSION_STRING; }

int ptxattn_prefill_config_init(ptxattn_prefill_config* out, size_t struct_size) {
  return init_struct(out, struct_size, to_c(ptxattn::PrefillConfig{}));
}
int ptxattn_batch_indices_init(ptxattn_batch_indices* out, size_t struct_size) {
  return init_struct(out, struct_size, {});
}
int ptxattn_prefill_tensors_init(ptxattn_prefill_tensors* out, size_t struct_size) {
  return init_struct(out, struct_size, {});
}
int ptxattn_prefill_plan_info_init(ptxattn_prefill_plan_info* out, size_t struct_size) {
  return init_struct(out, struct_size, {});
}
int ptxattn_plan_capacity_init(ptxattn_plan_capacity* out, size_t struct_size) {
  return init_struct(out, struct_size, {});
}
int ptxattn_workspace_sizes_init(ptxattn_workspace_sizes* out, size_t struct_size) {
  return init_struct(out, struct_size, {});
}
int ptxattn_plan_workspace_init(ptxattn_plan_workspace* out, size_t struct_size) {
  return init_struct(out, struct_size, {});
}
int ptxattn_rope_config_init(ptxattn_rope_config* out, size_t struct_size) {
  return init_struct(out, struct_size, to_c(ptxattn::RopeConfig{}));
}
int ptxattn_rope_tensors_init(ptxattn_rope_tensors* out, size_t struct_size) {
  return init_struct(out, struct_size, {});
}
int ptxattn_rope_positions_init(ptxattn_rope_positions* out, size_t struct_size) {
  return init_struct(out, struct_size, {});
}
int ptxattn_append_config_init(ptxattn_append_config* out, size_t struct_size) {
  return init_struct(out, struct_size, to_c(ptxattn::AppendConfig{}));
}
int ptxattn_append_indices_init(ptxattn_append_indices* out, size_t struct_size) {
  return init_struct(out, struct_size, {});
}
int ptxattn_append_tensors_init(ptxattn_append_tensors* out, size_t struct_size) {
  return init_struct(out, struct_size, {});
}
int ptxattn_append_plan_info_init(ptxattn_append_plan_info* out, size_t struct_size) {
  return init_struct(out, struct_size, {});
}
int ptxattn_merge_states_tensors_init(ptxattn_merge_states_tensors* out, size_t struct_size) {
  return init_struct(out, struct_size, to_c(ptxattn::MergeStatesTensors{}));
}
int ptxattn_merge_state_tensors_init(ptxattn_merge_state_tensors* out, size_t struct_size) {
  return init_struct(out, struct_size, to_c(ptxattn::MergeStateTensors{}));
}
int ptxattn_wait_timeout_init(ptxattn_wait_timeout* out, size_t struct_size) {
  return init_struct(out, struct_size, {});
}

// ---- Prefill ----

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
    ptxattn::PrefillConfig cpp_config;
    PTXATTN_RETURN_IF_ERROR(config_arg(config, &cpp_config));
    PTXATTN_RETURN_IF_ERROR(require_struct(indices, "indices"));
    return ptxattn::plan_prefill(cpp_config, to_cpp(*indices), plan->plan);
  });
}

int ptxattn_prefill_workspace_size(const ptxattn_prefill_config* config, const ptxattn_plan_capacity* capacity,
                                   ptxattn_workspace_sizes* sizes) {
  return guarded([&] {
    ptxattn::PrefillConfig cpp_config;
    PTXATTN_RETURN_IF_ERROR(config_arg(config, &cpp_config));
    PTXATTN_RETURN_IF_ERROR(require_struct(capacity, "capacity"));
    PTXATTN_RETURN_IF_ERROR(require_struct(sizes, "sizes"));
    ptxattn::WorkspaceSizes cpp_sizes;
    PTXATTN_RETURN_IF_ERROR(ptxattn::prefill_workspace_size(cpp_config, to_cpp(*capacity), &cpp_sizes));
    sizes->device_bytes = cpp_sizes.device_bytes;
    sizes->host_bytes = cpp_sizes.host_bytes;
    return Status::Ok();
  });
}

int ptxattn_plan_prefill_in(ptxattn_prefill_plan* plan, const ptxattn_prefill_config* config,
                            const ptxattn_batch_indices* indices, const ptxattn_plan_workspace* workspace) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(plan, "plan"));
    ptxattn::PrefillConfig cpp_config;
    PTXATTN_RETURN_IF_ERROR(config_arg(config, &cpp_config));
    PTXATTN_RETURN_IF_ERROR(require_struct(indices, "indices"));
    PTXATTN_RETURN_IF_ERROR(require_struct(workspace, "workspace"));
    ptxattn::PlanCapacity graph;
    if (workspace->graph_capacity != nullptr) {
      PTXATTN_RETURN_IF_ERROR(require_struct(workspace->graph_capacity, "workspace.graph_capacity"));
      graph = to_cpp(*workspace->graph_capacity);
    }
    const ptxattn::PlanWorkspace cpp_workspace{workspace->device,
                                               workspace->device_bytes,
                                               workspace->host,
                                               workspace->host_bytes,
                                               to_stream(workspace->cuda_stream),
                                               workspace->graph_capacity != nullptr ? &graph : nullptr};
    return ptxattn::plan_prefill(cpp_config, to_cpp(*indices), cpp_workspace, plan->plan);
  });
}

int ptxattn_run_prefill(const ptxattn_prefill_plan* plan, const ptxattn_prefill_tensors* tensors, void* cuda_stream) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(plan, "plan"));
    PTXATTN_RETURN_IF_ERROR(require_struct(tensors, "tensors"));
    return ptxattn::run_prefill(plan->plan, to_cpp(*tensors), to_stream(cuda_stream));
  });
}

int ptxattn_check_page_table_errors(const ptxattn_prefill_plan* plan, void* cuda_stream) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(plan, "plan"));
    return ptxattn::check_page_table_errors(plan->plan, to_stream(cuda_stream));
  });
}

int ptxattn_plan_attention(ptxattn_prefill_plan* plan, const ptxattn_prefill_config* config,
                           const ptxattn_batch_indices* indices) {
  return ptxattn_plan_prefill(plan, config, indices);
}

int ptxattn_run_attention(const ptxattn_prefill_plan* plan, const ptxattn_prefill_tensors* tensors, void* cuda_stream) {
  return ptxattn_run_prefill(plan, tensors, cuda_stream);
}

int ptxattn_prefill_plan_get_info(const ptxattn_prefill_plan* plan, ptxattn_prefill_plan_info* info) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(plan, "plan"));
    PTXATTN_RETURN_IF_ERROR(require_struct(info, "info"));
    const ptxattn::PrefillPlan& p = plan->plan;
    info->valid = p.valid();
    info->config = to_c(p.config());
    info->chosen_load_path = int32_t(p.chosen_load_path());
    info->chosen_schedule = int32_t(p.chosen_schedule());
    info->chosen_block_kv = p.chosen_block_kv();
    info->num_q_tokens = p.num_q_tokens();
    info->num_kv_rows = p.num_kv_rows();
    info->num_work_tiles = p.num_work_tiles();
    info->num_ctas = p.num_ctas();
    info->chosen_kv_splits = p.chosen_kv_splits();
    info->chosen_tile_heads = p.chosen_tile_heads();
    info->chosen_kv_stages = p.chosen_kv_stages();
    return Status::Ok();
  });
}

int ptxattn_tma_load_path_supported(const ptxattn_prefill_config* config, int32_t* supported) {
  return guarded([&] {
    ptxattn::PrefillConfig cpp_config;
    PTXATTN_RETURN_IF_ERROR(config_arg(config, &cpp_config));
    PTXATTN_RETURN_IF_ERROR(require(supported, "supported"));
    *supported = ptxattn::tma_load_path_supported(cpp_config);
    return Status::Ok();
  });
}

int ptxattn_validate_prefill_config(const ptxattn_prefill_config* config) {
  return guarded([&] {
    ptxattn::PrefillConfig cpp_config;
    PTXATTN_RETURN_IF_ERROR(config_arg(config, &cpp_config));
    return ptxattn::validate_prefill_config(cpp_config);
  });
}

int ptxattn_validate_batch_indices(const ptxattn_prefill_config* config, const ptxattn_batch_indices* indices) {
  return guarded([&] {
    ptxattn::PrefillConfig cpp_config;
    PTXATTN_RETURN_IF_ERROR(config_arg(config, &cpp_config));
    PTXATTN_RETURN_IF_ERROR(require_struct(indices, "indices"));
    return ptxattn::validate_batch_indices(cpp_config, to_cpp(*indices));
  });
}

// ---- RoPE ----

int ptxattn_validate_rope_config(const ptxattn_rope_config* rope) {
  return guarded([&] {
    ptxattn::RopeConfig cpp_rope;
    PTXATTN_RETURN_IF_ERROR(rope_arg(rope, &cpp_rope));
    return ptxattn::validate_rope_config(cpp_rope);
  });
}

int ptxattn_build_rope_cos_sin_cache(float* cos_sin_cache, int32_t max_position, int32_t rotary_dim,
                                     const ptxattn_rope_config* rope, void* cuda_stream) {
  return guarded([&] {
    ptxattn::RopeConfig cpp_rope;
    PTXATTN_RETURN_IF_ERROR(rope_arg(rope, &cpp_rope));
    return ptxattn::build_rope_cos_sin_cache(cos_sin_cache, max_position, rotary_dim, cpp_rope, to_stream(cuda_stream));
  });
}

int ptxattn_apply_rope(const ptxattn_rope_tensors* tensors, const ptxattn_rope_positions* positions,
                       const ptxattn_rope_config* rope, void* cuda_stream) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require_struct(tensors, "tensors"));
    PTXATTN_RETURN_IF_ERROR(require_struct(positions, "positions"));
    ptxattn::RopeConfig cpp_rope;
    PTXATTN_RETURN_IF_ERROR(rope_arg(rope, &cpp_rope));
    return ptxattn::apply_rope(to_cpp(*tensors), to_cpp(*positions), cpp_rope, to_stream(cuda_stream));
  });
}

int ptxattn_apply_rope_with_cos_sin_cache(const ptxattn_rope_tensors* tensors, const int32_t* pos_ids,
                                          const float* cos_sin_cache, int32_t max_position, int32_t rotary_dim,
                                          int32_t interleave, void* cuda_stream) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require_struct(tensors, "tensors"));
    bool cpp_interleave = false;
    PTXATTN_RETURN_IF_ERROR(to_bool(interleave, "interleave", &cpp_interleave));
    return ptxattn::apply_rope_with_cos_sin_cache(to_cpp(*tensors), pos_ids, cos_sin_cache, max_position, rotary_dim,
                                                  cpp_interleave, to_stream(cuda_stream));
  });
}

// ---- Appending K/V to the paged cache ----

int ptxattn_append_plan_create(ptxattn_append_plan** out) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(out, "out"));
    *out = nullptr;  // stays null if the allocation throws
    *out = new ptxattn_append_plan();
    return Status::Ok();
  });
}

void ptxattn_append_plan_destroy(ptxattn_append_plan* plan) { delete plan; }

int ptxattn_plan_append_paged_kv(ptxattn_append_plan* plan, const ptxattn_append_config* config,
                                 const ptxattn_append_indices* indices) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(plan, "plan"));
    PTXATTN_RETURN_IF_ERROR(require_struct(config, "config"));
    PTXATTN_RETURN_IF_ERROR(require_struct(indices, "indices"));
    return ptxattn::plan_append_paged_kv(to_cpp(*config), to_cpp(*indices), plan->plan);
  });
}

int ptxattn_append_paged_kv_cache(const ptxattn_append_plan* plan, const ptxattn_append_tensors* tensors,
                                  const ptxattn_rope_config* rope, void* cuda_stream) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(plan, "plan"));
    PTXATTN_RETURN_IF_ERROR(require_struct(tensors, "tensors"));
    ptxattn::RopeConfig cpp_rope;
    if (rope != nullptr) PTXATTN_RETURN_IF_ERROR(rope_arg(rope, &cpp_rope));
    return ptxattn::append_paged_kv_cache(plan->plan, to_cpp(*tensors), rope != nullptr ? &cpp_rope : nullptr,
                                          to_stream(cuda_stream));
  });
}

int ptxattn_append_plan_get_info(const ptxattn_append_plan* plan, ptxattn_append_plan_info* info) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require(plan, "plan"));
    PTXATTN_RETURN_IF_ERROR(require_struct(info, "info"));
    info->valid = plan->plan.valid();
    info->config = to_c(plan->plan.config());
    info->num_append_tokens = plan->plan.num_append_tokens();
    return Status::Ok();
  });
}

int ptxattn_validate_append_indices(const ptxattn_append_config* config, const ptxattn_append_indices* indices) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require_struct(config, "config"));
    PTXATTN_RETURN_IF_ERROR(require_struct(indices, "indices"));
    return ptxattn::validate_append_indices(to_cpp(*config), to_cpp(*indices));
  });
}

// ---- Merging attention states ----

int ptxattn_merge_states(const ptxattn_merge_states_tensors* tensors, void* cuda_stream) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require_struct(tensors, "tensors"));
    return ptxattn::merge_states(to_cpp(*tensors), to_stream(cuda_stream));
  });
}

int ptxattn_merge_state(const ptxattn_merge_state_tensors* tensors, void* cuda_stream) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require_struct(tensors, "tensors"));
    return ptxattn::merge_state(to_cpp(*tensors), to_stream(cuda_stream));
  });
}

// ---- Bounded waits ----

int32_t ptxattn_bounded_waits_built(void) { return ptxattn::bounded_waits_built(); }

int ptxattn_last_wait_timeout(ptxattn_wait_timeout* out, int32_t* found) {
  return guarded([&] {
    PTXATTN_RETURN_IF_ERROR(require_struct(out, "out"));
    PTXATTN_RETURN_IF_ERROR(require(found, "found"));
    ptxattn::WaitTimeout w;
    *found = ptxattn::last_wait_timeout(&w);
    if (*found) {
      out->device = w.device;
      out->block = w.block;
      out->thread = w.thread;
      out->parity = w.parity;
      out->smem_address = w.smem_address;
      copy_string(out->kernel, w.kernel);
      copy_string(out->barrier, w.barrier);
      copy_string(out->message, w.message);
    }
    return Status::Ok();
  });
}

// ---- Errors ----

const char* ptxattn_last_error_message(void) { return last_error_message.c_str(); }

const char* ptxattn_status_name(int status) {
  if (status == PTXATTN_STATUS_INTERNAL_ERROR) return "internal_error";
  return ptxattn::status_code_name(static_cast<StatusCode>(status));
}

}  // extern "C"
