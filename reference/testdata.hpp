// The one test-data generator shared by the CPU tests, the GPU tests, the
// validator and the benchmarks.
//
// Values depend only on (seed, tensor, logical position): K/V element
// (request b, token t, head h, dim d) is the same number whether the case is
// paged or ragged, NHD or HND, with any page size or pool order. So cases that
// differ only in storage must give the same attention output.
//
// Everything the kernel must never read is poisoned by default: unused pool
// pages, the unused tail slots of each request's last page, and the padding
// rows after the last ragged row hold NaN/+Inf/-Inf.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/attention.hpp"

namespace ptxattn::testing {

struct CaseSpec {
  uint64_t seed = 1;
  DType dtype = DType::kBF16;
  int32_t num_qo_heads = 1;
  int32_t num_kv_heads = 1;
  int32_t head_dim = 128;
  KvFormat format = KvFormat::kPaged;
  KvLayout layout = KvLayout::kNHD;  // paged only
  int32_t page_size = 16;            // paged only
  std::vector<int32_t> qo_lens;      // per request
  std::vector<int32_t> kv_lens;      // per request
  PrefillOptions options;
  int32_t extra_pages = 3;     // paged: pool pages no request owns
  int32_t extra_rows = 5;      // ragged: padding rows after the last request's rows
  bool shuffle_pages = true;   // paged: requests' pages randomly permuted across the pool
  bool poison_unused = true;   // NaN/Inf in every slot no request owns (else random values)
  float q_amplitude = 1.0f;    // q uniform in [-a, a]; k and v uniform in [-1, 1]
};

struct HostCase {
  uint64_t seed = 0;
  PrefillConfig config;
  std::vector<int32_t> qo_indptr;         // [B + 1]
  std::vector<int32_t> kv_indptr;         // [B + 1]: pages (paged) or rows (ragged)
  std::vector<int32_t> kv_indices;        // paged: [kv_indptr[B]]
  std::vector<int32_t> kv_last_page_len;  // paged: [B]; 0 for a request that owns no page
  std::vector<uint16_t> q, k, v;          // raw dtype bits, shapes as in ptxattn.hpp
  int64_t num_q_tokens = 0;
  int64_t num_kv_rows = 0;  // paged: pool pages; ragged: rows including padding

  int32_t num_requests() const { return int32_t(qo_indptr.size()) - 1; }
  int64_t kv_len(int32_t request) const;
  BatchIndices indices() const;
  ref::HostTensors tensors() const;
  std::string describe() const;  // one line: seed, dtype, shapes, format, mask options
};

// Throws std::invalid_argument for an inconsistent spec (length lists of
// different sizes, non-positive heads or page size, negative lengths).
HostCase make_case(const CaseSpec& spec);

// Ranges random_spec draws from. Lengths of a request are drawn by kind:
// empty, single query token, no cached prefix (qo == kv), cached prefix
// (kv > qo), kv ending one token into a page, or unconstrained.
struct RandomLimits {
  int32_t max_requests = 6;
  int32_t max_qo_len = 48;
  int32_t max_kv_len = 192;
  bool allow_empty_requests = true;      // qo_len 0 (and kv_len 0) requests
  bool allow_queries_without_kv = true;  // non-causal requests with kv_len 0: fully masked rows
  std::vector<DType> dtypes = {DType::kBF16, DType::kFP16};
  std::vector<int32_t> head_dims = {64, 128, 256};
  std::vector<int32_t> page_sizes = {1, 4, 16, 32, 64, 128};
  std::vector<int32_t> kv_head_counts = {1, 2};
  std::vector<int32_t> gqa_group_sizes = {1, 2, 4};  // num_qo_heads / num_kv_heads
  double ragged_fraction = 0.25;
  double hnd_fraction = 0.5;
  double causal_fraction = 0.5;
  double window_fraction = 0.25;
  double soft_cap_fraction = 0.2;
  double custom_scale_fraction = 0.2;
  double peaked_fraction = 0.25;  // q_amplitude 8: sharper softmax rows
};

// A random spec; causal specs have qo_len <= kv_len for every request, and
// every spec has at least one query token.
CaseSpec random_spec(uint64_t seed, const RandomLimits& limits = {});

// W1 of docs/benchmarks.md: 16384 query tokens, H_qo = H_kv = 16,
// D = 128, bf16, B = 16384 / seq_len requests with qo_len = kv_len = seq_len.
// page_size > 0: paged NHD with shuffled pages; page_size 0: ragged.
CaseSpec w1_spec(int32_t seq_len, bool causal, int32_t page_size, uint64_t seed = 1);

// W2 of docs/benchmarks.md: 16 requests with cached prefixes, H_qo 32, H_kv 8,
// D 128, bf16, page 16, causal.
CaseSpec w2_spec(uint64_t seed = 1);

std::string to_string(DType dtype);
std::string to_string(KvLayout layout);
std::string to_string(KvFormat format);
std::string to_string(ref::Rounding rounding);

}  // namespace ptxattn::testing
