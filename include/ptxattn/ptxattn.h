/* ptxattn C API: plain C, for C programs and FFIs (ctypes, cffi, ...).
 *
 * A thin mirror of the C++ API in ptxattn.hpp: same semantics, same
 * validation, same tensor conventions (read that header's comments).
 * - Structs are the C++ structs with a ptxattn_ prefix and snake_case names;
 *   enums are int32_t fields holding the PTXATTN_* constants below; booleans
 *   are int32_t fields that must be 0 or 1.
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
  PTXATTN_WORK_SCHEDULE_PERSISTENT = 2
};

typedef struct ptxattn_prefill_options {
  int32_t causal;        /* 0 or 1 */
  int32_t window_left;   /* -1: off */
  float logits_soft_cap; /* 0: off */
  float sm_scale;        /* 0: 1/sqrt(head_dim) */
  int32_t return_lse;    /* 0 or 1; lse is the natural log */
} ptxattn_prefill_options;

typedef struct ptxattn_prefill_config {
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
  int32_t max_ctas;  /* persistent schedule: at most this many CTAs; 0: one per SM */
} ptxattn_prefill_config;

/* Host arrays, read only during ptxattn_plan_prefill. */
typedef struct ptxattn_batch_indices {
  int32_t num_requests;
  const int32_t* qo_indptr;        /* [num_requests + 1] */
  const int32_t* kv_indptr;        /* [num_requests + 1] */
  const int32_t* kv_indices;       /* paged: [kv_indptr[num_requests]] */
  const int32_t* kv_last_page_len; /* paged: [num_requests] */
} ptxattn_batch_indices;

/* Device tensors for one run. */
typedef struct ptxattn_prefill_tensors {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  float* lse; /* required when options.return_lse */
  int64_t num_q_tokens;
  int64_t num_kv_rows; /* paged: num_pages; ragged: total K/V rows */
} ptxattn_prefill_tensors;

typedef struct ptxattn_rope_config {
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
  const int32_t* pos_ids; /* [num_tokens], or NULL to use indptr + offsets */
  int32_t num_requests;
  const int32_t* indptr;  /* [num_requests + 1] */
  const int32_t* offsets; /* [num_requests] */
} ptxattn_rope_positions;

typedef struct ptxattn_prefill_plan ptxattn_prefill_plan;

/* Fill with the C++ defaults (bf16, paged NHD, everything off, load path and
 * schedule auto, max_ctas 0); heads, head_dim, page_size and num_pages are
 * left 0 and must be set. */
void ptxattn_prefill_config_init(ptxattn_prefill_config* config);
void ptxattn_rope_config_init(ptxattn_rope_config* rope);

int ptxattn_prefill_plan_create(ptxattn_prefill_plan** out);
void ptxattn_prefill_plan_destroy(ptxattn_prefill_plan* plan); /* NULL is a no-op */

/* Validates and builds the schedule on the current CUDA device (synchronous). */
int ptxattn_plan_prefill(ptxattn_prefill_plan* plan, const ptxattn_prefill_config* config,
                         const ptxattn_batch_indices* indices);
int ptxattn_run_prefill(const ptxattn_prefill_plan* plan, const ptxattn_prefill_tensors* tensors, void* cuda_stream);

int ptxattn_build_rope_cos_sin_cache(float* cos_sin_cache, int32_t max_position, int32_t rotary_dim,
                                     const ptxattn_rope_config* rope, void* cuda_stream);
int ptxattn_apply_rope(const ptxattn_rope_tensors* tensors, const ptxattn_rope_positions* positions,
                       const ptxattn_rope_config* rope, void* cuda_stream);
int ptxattn_apply_rope_with_cos_sin_cache(const ptxattn_rope_tensors* tensors, const int32_t* pos_ids,
                                          const float* cos_sin_cache, int32_t max_position, int32_t rotary_dim,
                                          int32_t interleave, void* cuda_stream);

/* Message of the last failing call on this thread ("" if none); valid until the next failing call. */
const char* ptxattn_last_error_message(void);
/* "ok", "invalid_argument", ... ; "unknown_status" for other values. Never NULL. */
const char* ptxattn_status_name(int status);

#ifdef __cplusplus
}
#endif

#endif /* PTXATTN_PTXATTN_H_ */
