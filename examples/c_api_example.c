/* The C API end to end: one causal, paged bf16 prefill of two requests (GQA:
 * 8 query heads over 2 K/V heads, head_dim 128, pages of 16), checked on the
 * host first, then planned and run on the GPU; the output's first row is
 * compared with the same attention computed here.
 *
 * Build against an installed ptxattn (C compiler, libstdc++ comes from the .pc):
 *   cc c_api_example.c $(pkg-config --cflags --libs ptxattn) -lm
 * Exit code: 0 ok, 3 no usable SM90 GPU, 1 any other error.
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <ptxattn/ptxattn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { kHeads = 8, kKvHeads = 2, kHeadDim = 128, kPageSize = 16, kPages = 4, kTokens = 5 };

/* Round to nearest even; inputs here are finite. */
static uint16_t to_bf16(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

static float from_bf16(uint16_t h) {
  const uint32_t bits = (uint32_t)h << 16;
  float x;
  memcpy(&x, &bits, sizeof x);
  return x;
}

static int failed(const char* what, int status) {
  printf("%s: %s: %s\n", what, ptxattn_status_name(status), ptxattn_last_error_message());
  return status == PTXATTN_STATUS_NO_DEVICE ? 3 : 1;
}

/* A small deterministic value in [-1, 1). */
static float value(size_t i) { return (float)((i * 2654435761u) % 2048) / 1024.0f - 1.0f; }

int main(void) {
  printf("ptxattn %s (header %s)\n", ptxattn_version_string(), PTXATTN_VERSION_STRING);
  if (ptxattn_version() != PTXATTN_VERSION) {
    printf("the library is not the version of this header\n");
    return 1;
  }

  /* Request 0: 3 queries over 20 keys (pages 2, 0; 4 in the last); request 1: 2 queries over 16 keys (page 3). */
  static const int32_t qo_indptr[] = {0, 3, 5}, kv_indptr[] = {0, 2, 3}, kv_indices[] = {2, 0, 3};
  static const int32_t last_page_len[] = {4, 16};

  ptxattn_prefill_config config;
  ptxattn_batch_indices indices;
  ptxattn_prefill_tensors tensors;
  int status = ptxattn_prefill_config_init(&config, sizeof config);
  if (!status) status = ptxattn_batch_indices_init(&indices, sizeof indices);
  if (!status) status = ptxattn_prefill_tensors_init(&tensors, sizeof tensors);
  if (status) return failed("init", status);
  config.num_qo_heads = kHeads;
  config.num_kv_heads = kKvHeads;
  config.head_dim = kHeadDim;
  config.page_size = kPageSize;
  config.num_pages = kPages;
  config.options.causal = 1;
  indices.num_requests = 2;
  indices.qo_indptr = qo_indptr;
  indices.kv_indptr = kv_indptr;
  indices.kv_indices = kv_indices;
  indices.kv_last_page_len = last_page_len;
  status = ptxattn_validate_batch_indices(&config, &indices); /* host only: works without a GPU */
  if (status) return failed("validate_batch_indices", status);

  ptxattn_prefill_plan* plan = NULL;
  status = ptxattn_prefill_plan_create(&plan);
  if (!status) status = ptxattn_plan_prefill(plan, &config, &indices);
  if (status) {
    ptxattn_prefill_plan_destroy(plan);
    return failed("plan_prefill", status);
  }

  const size_t q_elems = (size_t)kTokens * kHeads * kHeadDim;
  const size_t pool_elems = (size_t)kPages * kPageSize * kKvHeads * kHeadDim;
  uint16_t* host_q = malloc(q_elems * sizeof *host_q);
  uint16_t* host_k = malloc(pool_elems * sizeof *host_k);
  uint16_t* host_v = malloc(pool_elems * sizeof *host_v);
  uint16_t* host_o = malloc(q_elems * sizeof *host_o);
  void *q = NULL, *k = NULL, *v = NULL, *o = NULL;
  int exit_code = 1;
  if (!host_q || !host_k || !host_v || !host_o) goto done;
  for (size_t i = 0; i < q_elems; ++i) host_q[i] = to_bf16(value(i));
  for (size_t i = 0; i < pool_elems; ++i) host_k[i] = to_bf16(value(i + 7));
  for (size_t i = 0; i < pool_elems; ++i) host_v[i] = to_bf16(value(i + 13));
  if (cudaMalloc(&q, q_elems * 2) || cudaMalloc(&o, q_elems * 2) || cudaMalloc(&k, pool_elems * 2) ||
      cudaMalloc(&v, pool_elems * 2) || cudaMemcpy(q, host_q, q_elems * 2, cudaMemcpyHostToDevice) ||
      cudaMemcpy(k, host_k, pool_elems * 2, cudaMemcpyHostToDevice) ||
      cudaMemcpy(v, host_v, pool_elems * 2, cudaMemcpyHostToDevice)) {
    printf("CUDA allocation or copy failed\n");
    goto done;
  }
  tensors.q = q;
  tensors.k = k;
  tensors.v = v;
  tensors.o = o;
  tensors.num_q_tokens = kTokens;
  tensors.num_kv_rows = kPages;
  status = ptxattn_run_prefill(plan, &tensors, NULL);
  if (status) {
    exit_code = failed("run_prefill", status);
    goto done;
  }
  if (cudaMemcpy(host_o, o, q_elems * 2, cudaMemcpyDeviceToHost)) {
    printf("copying the output back failed\n");
    goto done;
  }

  /* Token 0 (request 0, the first of 3 queries over 20 keys) sees keys 0..17; head 0 uses KV head 0. */
  double out[kHeadDim] = {0}, max_score = -INFINITY, sum = 0;
  double scores[18];
  for (int key = 0; key < 18; ++key) {
    const int page = kv_indices[key / kPageSize], slot = key % kPageSize;
    const size_t row = (((size_t)page * kPageSize + slot) * kKvHeads) * kHeadDim;
    double s = 0;
    for (int d = 0; d < kHeadDim; ++d) s += from_bf16(host_q[d]) * from_bf16(host_k[row + d]);
    scores[key] = s / sqrt((double)kHeadDim);
    if (scores[key] > max_score) max_score = scores[key];
  }
  for (int key = 0; key < 18; ++key) {
    const int page = kv_indices[key / kPageSize], slot = key % kPageSize;
    const size_t row = (((size_t)page * kPageSize + slot) * kKvHeads) * kHeadDim;
    const double p = exp(scores[key] - max_score);
    sum += p;
    for (int d = 0; d < kHeadDim; ++d) out[d] += p * from_bf16(host_v[row + d]);
  }
  double worst = 0;
  for (int d = 0; d < kHeadDim; ++d) worst = fmax(worst, fabs(out[d] / sum - from_bf16(host_o[d])));
  printf("token 0, head 0: max |ptxattn - reference| = %.3g\n", worst);
  exit_code = worst < 2e-2 ? 0 : 1;

done:
  cudaFree(q);
  cudaFree(k);
  cudaFree(v);
  cudaFree(o);
  free(host_q);
  free(host_k);
  free(host_v);
  free(host_o);
  ptxattn_prefill_plan_destroy(plan);
  return exit_code;
}
