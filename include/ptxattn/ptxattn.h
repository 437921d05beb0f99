/* ptxattn C API: plain C, for C programs and FFIs (ctypes, cffi, ...).
 *
 * A mirror of the C++ API in ptxattn.hpp: same semantics, same validation,
 * same tensor conventions (read that header's comments), every entry point.
 * - Structs are the C++ structs with a ptxattn_ prefix and snake_case names;
 *   enums are int32_t fields holding the PTXATTN_* constants below; booleans
 *   are int32_t fields that must be 0 or 1; strings are NUL-terminated char
 *   arrays (truncated when longer).
 * - Every struct begins with struct_size, which must hold the sizeof of that
 *   struct as the caller compiled it. Fill each struct with its _init
 *   function, which sets struct_size and the C++ defaults (nothing else is
 *   set by hand, so a field added later gets its default). Every function
 *   refuses a struct whose struct_size differs from its own layout's
 *   (PTXATTN_STATUS_INVALID_ARGUMENT) before reading anything else of it, so
 *   a caller compiled against another ptxattn.h gets an error, never garbage.
 *   _init refuses a struct_size argument other than its layout's and then
 *   writes nothing.
 * - Every function returning int returns a status code (PTXATTN_STATUS_*,
 *   0 = ok). After a failure, ptxattn_last_error_message() gives the message
 *   of that call; it belongs to the calling thread and stays until the next
 *   failing call on that thread.
 * - cuda_stream is a cudaStream_t (NULL = the legacy default stream).
 * - No C++ exception crosses this API; one caught inside is reported as
 *   PTXATTN_STATUS_INTERNAL_ERROR.
 */
#ifndef PTXATTN_PTXATTN_H_
#define PTXATTN_PTXATTN_H_

#include <stddef.h>
#include <stdint.h>

/* The version of this header; ptxattn_version() gives the library's. meson.build
 * refuses to configure when PTXATTN_VERSION_STRING differs from the project's
 * version. */
#define PTXATTN_VERSION_MAJOR 0
#define PTXATTN_VERSION_MINOR 1
#define PTXATTN_VERSION_PATCH 0
#define PTXATTN_VERSION_STRING "0.1.0"
/* major * 10000 + minor * 100 + patch, as ptxattn_version() returns it. */
#define PTXATTN_VERSION (PTXATTN_VERSION_MAJOR * 10000 + PTXATTN_VERSION_MINOR * 100 + PTXATTN_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes (values of ptxattn::StatusCode, plus one for C only). */
enum {
  PTXATTN_STATUS_OK = 0,
  PTXATTN_STATUS_INVALID_ARGUMENT = 1,
  PTXATTN_STATUS_UNSUPPORTED = 2,
  PTXATTN_STATUS_PLAN_MISMATCH = 3,
  PTXATTN_STATUS_CUDA_ERROR = 4,
  PTXATTN_STATUS_NO_DEVICE = 5,
  PTXATTN_STATUS_INTERNAL_ERROR = 100 /* an exception (e.g. out of host memory) caught at the C boundary */
};

enum { PTXATTN_DTYPE_BF16 = 0, PTXATTN_DTYPE_FP16 = 1 };
enum { PTXATTN_KV_LAYOUT_NHD = 0, PTXATTN_KV_LAYOUT_HND = 1 };
enum { PTXATTN_KV_FORMAT_PAGED = 0, PTXATTN_KV_FORMAT_RAGGED = 1 };
enum { PTXATTN_KV_LOAD_PATH_AUTO = 0, PTXATTN_KV_LOAD_PATH_TMA = 1, PTXATTN_KV_LOAD_PATH_GATHER = 2 };
enum {
  PTXATTN_WORK_SCHEDULE_AUTO = 0,
  PTXATTN_WORK_SCHEDULE_ONE_ITEM_PER_CTA = 1,
  PTXATTN_WORK_SCHEDULE_PERSISTENT = 2,
  PTXATTN_WORK_SCHEDULE_DYNAMIC = 3
};
enum { PTXATTN_KV_BLOCK_AUTO = 0, PTXATTN_KV_BLOCK_STANDARD = 1, PTXATTN_KV_BLOCK_WIDE = 2 };
enum { PTXATTN_GQA_PACKING_AUTO = 0, PTXATTN_GQA_PACKING_OFF = 1, PTXATTN_GQA_PACKING_ON = 2 };
enum { PTXATTN_STATE_DTYPE_BF16 = 0, PTXATTN_STATE_DTYPE_FP16 = 1, PTXATTN_STATE_DTYPE_FP32 = 2 };

/* Part of ptxattn_prefill_config (its struct_size covers this). */
typedef struct ptxattn_prefill_options {
  int32_t causal;        /* 0 or 1 */
  int32_t window_left;   /* -1: off */
  float logits_soft_cap; /* 0: off */
  float sm_scale;        /* 0: 1/sqrt(head_dim) */
  int32_t return_lse;    /* 0 or 1; lse is the natural log */
} ptxattn_prefill_options;

typedef struct ptxattn_prefill_config {
  uint32_t struct_size;
  int32_t dtype; /* PTXATTN_DTYPE_* */
  int32_t num_qo_heads;
  int32_t num_kv_heads;
  int32_t head_dim;  /* 64, 128 or 256 */
  int32_t kv_format; /* PTXATTN_KV_FORMAT_* */
  int32_t kv_layout; /* PTXATTN_KV_LAYOUT_*, paged only */
  int32_t page_size; /* paged only */
  int32_t num_pages; /* paged only: pages in the k and v pools */
  ptxattn_prefill_options options;
  int32_t load_path; /* PTXATTN_KV_LOAD_PATH_* */
  int32_t schedule;  /* PTXATTN_WORK_SCHEDULE_* */
  int32_t max_ctas;  /* persistent and dynamic schedules: at most this many CTAs; 0: one per SM */
  int32_t kv_block;  /* PTXATTN_KV_BLOCK_* */
  int32_t kv_splits; /* split-KV chunks per query tile: 0 auto (the longest tile's count), 1 none, 2..64 forced */
  int32_t gqa_packing; /* PTXATTN_GQA_PACKING_* */
  int32_t kv_stages;   /* K/V stages of the kernel's ring: 0 the head dim's, else forced (PrefillConfig::kv_stages) */
} ptxattn_prefill_config;

/* Host arrays, read only during ptxattn_plan_prefill. */
typedef struct ptxattn_batch_indices {
  uint32_t struct_size;
  int32_t num_requests;
  const int32_t* qo_indptr;        /* [num_requests + 1] */
  const int32_t* kv_indptr;        /* [num_requests + 1] */
  const int32_t* kv_indices;       /* paged: [kv_indptr[num_requests]], or NULL: device table at run */
  const int32_t* kv_last_page_len; /* paged: [num_requests] */
  const int32_t* kv_lens;          /* block-table form (ptxattn.hpp BatchIndices): [num_requests] */
  int32_t block_table_stride;      /* block-table form: entries per request row; 0: CSR form */
} ptxattn_batch_indices;

/* Device tensors for one run. */
typedef struct ptxattn_prefill_tensors {
  uint32_t struct_size;
  const void* q;
  const void* k;
  const void* v;
  void* o;
  float* lse; /* required when options.return_lse */
  int64_t num_q_tokens;
  int64_t num_kv_rows; /* paged: num_pages; ragged: total K/V rows */
  /* Paged, planned with indices.kv_indices NULL: the device page table
   * (PrefillTensors::kv_indices in ptxattn.hpp); NULL otherwise. */
  const int32_t* kv_indices;
  int64_t q_row_stride; /* elements between token rows of q; 0: contiguous (ptxattn.hpp) */
  int64_t o_row_stride; /* the same for o */
  int64_t kv_stride;    /* elements between pages (paged) or rows (ragged) of k and v; 0: contiguous */
} ptxattn_prefill_tensors;

/* Plans in the caller's memory (ptxattn.hpp PlanCapacity, WorkspaceSizes,
 * PlanWorkspace; ptxattn_prefill_workspace_size, ptxattn_plan_prefill_in). */
typedef struct ptxattn_plan_capacity {
  uint32_t struct_size;
  int32_t max_requests;
  int64_t max_q_tokens;
  int64_t max_kv_entries; /* host kv_indices entries the plan copies (0: table at run) */
  int32_t num_sms;        /* 0: the current device's */
  int64_t max_kv_units;   /* graph plans: entries given at run, or ragged rows, the captured tensors hold */
} ptxattn_plan_capacity;

typedef struct ptxattn_workspace_sizes {
  uint32_t struct_size;
  size_t device_bytes;
  size_t host_bytes; /* pinned */
} ptxattn_workspace_sizes;

typedef struct ptxattn_plan_workspace {
  uint32_t struct_size;
  void* device; /* 256-byte aligned */
  size_t device_bytes;
  void* host; /* pinned: the staging of the upload */
  size_t host_bytes;
  void* cuda_stream; /* the upload is ordered on it */
  const ptxattn_plan_capacity* graph_capacity; /* NULL, or a plan for CUDA graphs across batches (ptxattn.hpp) */
} ptxattn_plan_workspace;

/* What a plan holds (ptxattn_prefill_plan_get_info). */
typedef struct ptxattn_prefill_plan_info {
  uint32_t struct_size;
  int32_t valid;                 /* 1 after a successful ptxattn_plan_prefill */
  ptxattn_prefill_config config; /* what it was made for */
  int32_t chosen_load_path;      /* PTXATTN_KV_LOAD_PATH_TMA or _GATHER */
  int32_t chosen_schedule;       /* PTXATTN_WORK_SCHEDULE_ONE_ITEM_PER_CTA, _PERSISTENT or _DYNAMIC */
  int32_t chosen_block_kv;       /* keys per KV block the kernel walks */
  int64_t num_q_tokens;
  int64_t num_kv_rows;
  int64_t num_work_tiles;
  int64_t num_ctas;
  int32_t chosen_kv_splits;      /* chunks of the longest query tile: 1 (no split) to 64 */
  int32_t chosen_tile_heads;     /* qo heads per query tile: 1 token-major, the GQA group packed */
  int32_t chosen_kv_stages;      /* K/V stages of the kernel's ring: 2 to 4 */
} ptxattn_prefill_plan_info;

typedef struct ptxattn_rope_config {
  uint32_t struct_size;
  int32_t rotary_dim;
  int32_t interleave; /* 0: NeoX, 1: GPT-J */
  float theta;
  float rope_scale;
  int32_t llama31; /* 0 or 1 */
  float low_freq_factor;
  float high_freq_factor;
  int32_t old_context_len;
} ptxattn_rope_config;

typedef struct ptxattn_rope_tensors {
  uint32_t struct_size;
  int32_t dtype; /* PTXATTN_DTYPE_* */
  int32_t head_dim;
  int32_t num_qo_heads;
  int32_t num_kv_heads;
  int64_t num_tokens;
  const void* q_in;
  const void* k_in;
  void* q_out;
  void* k_out;
} ptxattn_rope_tensors;

/* Device arrays. */
typedef struct ptxattn_rope_positions {
  uint32_t struct_size;
  const int32_t* pos_ids; /* [num_tokens], or NULL to use indptr + offsets */
  int32_t num_requests;
  const int32_t* indptr;  /* [num_requests + 1] */
  const int32_t* offsets; /* [num_requests] */
} ptxattn_rope_positions;

typedef struct ptxattn_append_config {
  uint32_t struct_size;
  int32_t dtype; /* PTXATTN_DTYPE_* */
  int32_t num_kv_heads;
  int32_t head_dim;  /* 64, 128 or 256 */
  int32_t kv_layout; /* PTXATTN_KV_LAYOUT_* */
  int32_t page_size; /* [1, 1024] */
  int32_t num_pages; /* pages in the k and v pools */
} ptxattn_append_config;

/* Host arrays, read only during ptxattn_plan_append_paged_kv. */
typedef struct ptxattn_append_indices {
  uint32_t struct_size;
  int32_t num_requests;
  const int32_t* append_indptr;    /* [num_requests + 1] */
  const int32_t* kv_indptr;        /* [num_requests + 1] */
  const int32_t* kv_indices;       /* [kv_indptr[num_requests]] */
  const int32_t* kv_last_page_len; /* [num_requests] */
} ptxattn_append_indices;

/* Device tensors for one append. */
typedef struct ptxattn_append_tensors {
  uint32_t struct_size;
  const void* k_new;
  const void* v_new;
  void* k_cache;
  void* v_cache;
  int64_t num_append_tokens;
  int32_t num_pages;
  const void* q_in; /* fused RoPE only; NULL: Q is left alone */
  void* q_out;
  int32_t num_qo_heads;
} ptxattn_append_tensors;

/* What an append plan holds (ptxattn_append_plan_get_info). */
typedef struct ptxattn_append_plan_info {
  uint32_t struct_size;
  int32_t valid; /* 1 after a successful ptxattn_plan_append_paged_kv */
  ptxattn_append_config config;
  int64_t num_append_tokens;
} ptxattn_append_plan_info;

/* Device tensors of ptxattn_merge_states (ptxattn::MergeStatesTensors). */
typedef struct ptxattn_merge_states_tensors {
  uint32_t struct_size;
  int32_t v_dtype;   /* PTXATTN_STATE_DTYPE_* */
  int32_t out_dtype; /* PTXATTN_STATE_DTYPE_* */
  int32_t num_states;
  int32_t num_heads;
  int32_t head_dim;
  int64_t num_tokens;
  const void* v;    /* [num_tokens][num_states][num_heads][head_dim] */
  const float* lse; /* [num_tokens][num_states][num_heads], natural log */
  void* v_out;      /* [num_tokens][num_heads][head_dim] */
  float* lse_out;   /* [num_tokens][num_heads], or NULL */
} ptxattn_merge_states_tensors;

/* Device tensors of ptxattn_merge_state (ptxattn::MergeStateTensors). */
typedef struct ptxattn_merge_state_tensors {
  uint32_t struct_size;
  int32_t v_dtype;   /* PTXATTN_STATE_DTYPE_* */
  int32_t out_dtype; /* PTXATTN_STATE_DTYPE_* */
  int32_t num_heads;
  int32_t head_dim;
  int64_t num_tokens;
  const void* v_a;    /* [num_tokens][num_heads][head_dim] */
  const float* lse_a; /* [num_tokens][num_heads], natural log */
  const void* v_b;
  const float* lse_b;
  void* v_out;    /* [num_tokens][num_heads][head_dim] */
  float* lse_out; /* [num_tokens][num_heads], or NULL */
} ptxattn_merge_state_tensors;

/* One timed-out wait (ptxattn_last_wait_timeout); the fields of ptxattn::WaitTimeout. */
typedef struct ptxattn_wait_timeout {
  uint32_t struct_size;
  int32_t device;
  uint32_t block;
  uint32_t thread;
  uint32_t parity;
  uint32_t smem_address;
  char kernel[96];
  char barrier[32];
  char message[320];
} ptxattn_wait_timeout;

typedef struct ptxattn_prefill_plan ptxattn_prefill_plan;
typedef struct ptxattn_append_plan ptxattn_append_plan;

/* The library's version: PTXATTN_VERSION and PTXATTN_VERSION_STRING as it was built. */
int ptxattn_version(void);
const char* ptxattn_version_string(void);

/* Fill *out with its C++ defaults and struct_size = sizeof(*out); pass
 * sizeof(*out) as struct_size. prefill_config: bf16, paged NHD, options off,
 * load path, schedule and KV block auto, max_ctas 0 (heads, head_dim,
 * page_size and num_pages are 0 and must be set); rope_config: theta 1e4,
 * rope_scale 1, NeoX, Llama-3.1 factors 1 / 4 / 8192 (rotary_dim 0, must be
 * set); append_config: bf16, NHD; merge_states_tensors and
 * merge_state_tensors: v_dtype and out_dtype bf16; every other field 0 or NULL. */
int ptxattn_prefill_config_init(ptxattn_prefill_config* out, size_t struct_size);
int ptxattn_batch_indices_init(ptxattn_batch_indices* out, size_t struct_size);
int ptxattn_prefill_tensors_init(ptxattn_prefill_tensors* out, size_t struct_size);
int ptxattn_prefill_plan_info_init(ptxattn_prefill_plan_info* out, size_t struct_size);
int ptxattn_rope_config_init(ptxattn_rope_config* out, size_t struct_size);
int ptxattn_rope_tensors_init(ptxattn_rope_tensors* out, size_t struct_size);
int ptxattn_rope_positions_init(ptxattn_rope_positions* out, size_t struct_size);
int ptxattn_append_config_init(ptxattn_append_config* out, size_t struct_size);
int ptxattn_append_indices_init(ptxattn_append_indices* out, size_t struct_size);
int ptxattn_append_tensors_init(ptxattn_append_tensors* out, size_t struct_size);
int ptxattn_append_plan_info_init(ptxattn_append_plan_info* out, size_t struct_size);
int ptxattn_merge_states_tensors_init(ptxattn_merge_states_tensors* out, size_t struct_size);
int ptxattn_merge_state_tensors_init(ptxattn_merge_state_tensors* out, size_t struct_size);
int ptxattn_wait_timeout_init(ptxattn_wait_timeout* out, size_t struct_size);
int ptxattn_plan_capacity_init(ptxattn_plan_capacity* out, size_t struct_size);
int ptxattn_workspace_sizes_init(ptxattn_workspace_sizes* out, size_t struct_size);
int ptxattn_plan_workspace_init(ptxattn_plan_workspace* out, size_t struct_size);

/* ---- Prefill ---- */
int ptxattn_prefill_plan_create(ptxattn_prefill_plan** out);
void ptxattn_prefill_plan_destroy(ptxattn_prefill_plan* plan); /* NULL is a no-op */

/* Validates and builds the schedule on the current CUDA device (synchronous). */
int ptxattn_plan_prefill(ptxattn_prefill_plan* plan, const ptxattn_prefill_config* config,
                         const ptxattn_batch_indices* indices);
int ptxattn_run_prefill(const ptxattn_prefill_plan* plan, const ptxattn_prefill_tensors* tensors, void* cuda_stream);
/* prefill_workspace_size and plan_prefill with a PlanWorkspace (ptxattn.hpp):
 * sizes->struct_size must be set (ptxattn_workspace_sizes_init). */
int ptxattn_prefill_workspace_size(const ptxattn_prefill_config* config, const ptxattn_plan_capacity* capacity,
                                   ptxattn_workspace_sizes* sizes);
int ptxattn_plan_prefill_in(ptxattn_prefill_plan* plan, const ptxattn_prefill_config* config,
                            const ptxattn_batch_indices* indices, const ptxattn_plan_workspace* workspace);
/* check_page_table_errors (ptxattn.hpp): waits for the stream, reports and
 * clears the lowest device page-table entry outside the pool that the
 * plan's runs met (PTXATTN_STATUS_INVALID_ARGUMENT), else PTXATTN_STATUS_OK. */
int ptxattn_check_page_table_errors(const ptxattn_prefill_plan* plan, void* cuda_stream);
/* The same two calls under names for every query length (decode, speculative
 * verification, prefill): ptxattn_plan_attention is ptxattn_plan_prefill,
 * ptxattn_run_attention is ptxattn_run_prefill. */
int ptxattn_plan_attention(ptxattn_prefill_plan* plan, const ptxattn_prefill_config* config,
                           const ptxattn_batch_indices* indices);
int ptxattn_run_attention(const ptxattn_prefill_plan* plan, const ptxattn_prefill_tensors* tensors, void* cuda_stream);
/* info->struct_size must be set (ptxattn_prefill_plan_info_init). */
int ptxattn_prefill_plan_get_info(const ptxattn_prefill_plan* plan, ptxattn_prefill_plan_info* info);
/* *supported = 1 when the TMA load path can serve config (ptxattn::tma_load_path_supported). */
int ptxattn_tma_load_path_supported(const ptxattn_prefill_config* config, int32_t* supported);

/* Validation only, on the host, no CUDA call (as the entry points run it). */
int ptxattn_validate_prefill_config(const ptxattn_prefill_config* config);
int ptxattn_validate_batch_indices(const ptxattn_prefill_config* config, const ptxattn_batch_indices* indices);
int ptxattn_validate_rope_config(const ptxattn_rope_config* rope);
int ptxattn_validate_append_indices(const ptxattn_append_config* config, const ptxattn_append_indices* indices);

/* ---- RoPE ---- */
int ptxattn_build_rope_cos_sin_cache(float* cos_sin_cache, int32_t max_position, int32_t rotary_dim,
                                     const ptxattn_rope_config* rope, void* cuda_stream);
int ptxattn_apply_rope(const ptxattn_rope_tensors* tensors, const ptxattn_rope_positions* positions,
                       const ptxattn_rope_config* rope, void* cuda_stream);
int ptxattn_apply_rope_with_cos_sin_cache(const ptxattn_rope_tensors* tensors, const int32_t* pos_ids,
                                          const float* cos_sin_cache, int32_t max_position, int32_t rotary_dim,
                                          int32_t interleave, void* cuda_stream);

/* ---- Appending K/V to the paged cache ---- */
int ptxattn_append_plan_create(ptxattn_append_plan** out);
void ptxattn_append_plan_destroy(ptxattn_append_plan* plan); /* NULL is a no-op */
/* Validates and uploads the destinations on the current CUDA device (synchronous). */
int ptxattn_plan_append_paged_kv(ptxattn_append_plan* plan, const ptxattn_append_config* config,
                                 const ptxattn_append_indices* indices);
/* rope NULL: K and V copied bit-exactly; otherwise K (and Q when tensors->q_in) rotated on the way in. */
int ptxattn_append_paged_kv_cache(const ptxattn_append_plan* plan, const ptxattn_append_tensors* tensors,
                                  const ptxattn_rope_config* rope, void* cuda_stream);
int ptxattn_append_plan_get_info(const ptxattn_append_plan* plan, ptxattn_append_plan_info* info);

/* ---- Merging attention states (ptxattn::merge_states, ptxattn::merge_state) ---- */
int ptxattn_merge_states(const ptxattn_merge_states_tensors* tensors, void* cuda_stream);
int ptxattn_merge_state(const ptxattn_merge_state_tensors* tensors, void* cuda_stream);

/* ---- Bounded waits (ptxattn::bounded_waits_built, ptxattn::last_wait_timeout) ---- */
int32_t ptxattn_bounded_waits_built(void); /* 1 or 0 */
/* *found = 1 and *out filled when a timed-out wait was recorded, else *found = 0
 * (out->struct_size must be set: ptxattn_wait_timeout_init). Calls no CUDA function. */
int ptxattn_last_wait_timeout(ptxattn_wait_timeout* out, int32_t* found);

/* ---- Errors ---- */
/* Message of the last failing call on this thread ("" if none); valid until the next failing call. */
const char* ptxattn_last_error_message(void);
/* "ok", "invalid_argument", ... ; "unknown_status" for other values. Never NULL. */
const char* ptxattn_status_name(int status);

#ifdef __cplusplus
}
#endif

#endif /* PTXATTN_PTXATTN_H_ */
