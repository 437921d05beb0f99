// RoPE and cache-append benchmarks (issue 5): apply_rope,
// apply_rope_with_cos_sin_cache, build_rope_cos_sin_cache and
// append_paged_kv_cache (plain and fused RoPE) at 16k tokens x 32 heads x 128
// dims, bf16. Each reports "GB/s" (bytes read + written / median time), next to
// "copy_same_GB/s", a device-to-device copy moving the same byte count measured
// in this run, and "%copy_same" (target >= 90), plus bench_util's 512 MiB copy
// counters.
//
// Nothing is timed before it is checked in this run: each benchmark runs its
// kernel once on fresh inputs and compares sampled rows (the first and last
// kSampleTokens tokens; for the cache, sampled positions) with the CPU
// reference: copies bit for bit, rotations within half an ulp of the dtype
// plus 2^-20 (|a| + |b|), which covers the kernel's cos/sin and float error
// (docs/validation.md "RoPE accuracy"; the tests check the exact bound).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.hpp"
#include "ptxattn/ptxattn.hpp"
#include "reference/numeric.hpp"
#include "reference/rope.hpp"
#include "tests/common/gpu_test.hpp"
#include "tests/common/rope_data.hpp"

namespace ptxattn::bench {
namespace {

using testing::DeviceBuffer;

constexpr int32_t kTokens = 16384;
constexpr int32_t kHeadDim = 128;
constexpr DType kDType = DType::kBF16;
constexpr int64_t kElementBytes = 2;
constexpr int32_t kSampleTokens = 16;
constexpr int32_t kMaxPosition = 1 << 20;

RopeConfig llama_rope(bool interleave) {
  RopeConfig rope;
  rope.rotary_dim = kHeadDim;
  rope.interleave = interleave;
  rope.theta = 5e5f;
  return rope;
}

std::vector<uint16_t> random_values(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  return testing::random_values(count, kDType, rng);
}

std::vector<int32_t> random_positions(size_t count, int32_t bound, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> position(0, bound - 1);
  std::vector<int32_t> positions(count);
  for (int32_t& p : positions) p = position(rng);
  return positions;
}

// The tokens validation looks at: the first and last kSampleTokens.
std::vector<int64_t> sample_tokens(int64_t num_tokens) {
  std::vector<int64_t> tokens;
  for (int64_t t = 0; t < num_tokens; ++t)
    if (t < kSampleTokens || t >= num_tokens - kSampleTokens) tokens.push_back(t);
  return tokens;
}

// Rows of `heads` x kHeadDim of the sampled tokens, gathered from host data.
std::vector<uint16_t> gather_rows(const std::vector<uint16_t>& data, const std::vector<int64_t>& tokens,
                                  int32_t heads) {
  std::vector<uint16_t> rows;
  const size_t row = size_t(heads) * kHeadDim;
  for (int64_t t : tokens) rows.insert(rows.end(), data.begin() + t * row, data.begin() + (t + 1) * row);
  return rows;
}

// The same rows read back from the device.
std::vector<uint16_t> download_rows(const void* device, const std::vector<int64_t>& tokens, int32_t heads) {
  const size_t row = size_t(heads) * kHeadDim;
  std::vector<uint16_t> rows(tokens.size() * row);
  for (size_t i = 0; i < tokens.size(); ++i)
    PTXATTN_CUDA_CHECK(cudaMemcpy(&rows[i * row], static_cast<const uint16_t*>(device) + tokens[i] * row,
                                  row * kElementBytes, cudaMemcpyDeviceToHost));
  return rows;
}

// got vs the kGpu reference of `in` (rows of kHeadDim, positions per row's token).
bool rotated_rows_match(const std::vector<uint16_t>& got, const std::vector<uint16_t>& in,
                        const std::vector<double>& reference, const RopeConfig& rope) {
  for (size_t i = 0; i < got.size(); ++i) {
    const int32_t dim = int32_t(i % kHeadDim);
    if (dim >= rope.rotary_dim) {
      if (got[i] != in[i]) return false;
      continue;
    }
    const int32_t partner = ref::rope_pair_partner(dim, rope.rotary_dim, rope.interleave);
    const double pair = std::abs(ref::to_double(in[i], kDType)) +
                        std::abs(ref::to_double(in[i - dim + partner], kDType));
    const double tol = ref::unit_roundoff(kDType) * std::abs(reference[i]) + 0x1p-20 * pair +
                       ref::subnormal_spacing(kDType);
    if (!(std::abs(ref::to_double(got[i], kDType) - reference[i]) <= tol)) return false;
  }
  return true;
}

std::vector<int32_t> positions_of(const std::vector<int32_t>& positions, const std::vector<int64_t>& tokens) {
  std::vector<int32_t> sampled;
  for (int64_t t : tokens) sampled.push_back(positions[t]);
  return sampled;
}

void set_counters(benchmark::State& state, const std::vector<double>& seconds, double bytes) {
  set_bandwidth_counters(state, seconds, bytes);
  const double t = median(seconds);
  if (t <= 0.0) return;
  const double copy = copy_bandwidth_for_bytes(size_t(bytes));
  state.counters["copy_same_GB/s"] = copy * 1e-9;
  state.counters["%copy_same"] = 100.0 * (bytes / t) / copy;
}

void time_and_report(benchmark::State& state, const Launch& launch, double bytes) {
  const std::vector<double> seconds = time_iterations(state, launch, !fits_in_l2(size_t(bytes)));
  if (!state.error_occurred()) set_counters(state, seconds, bytes);
}

// ---------------------------------------------------------------------------
// apply_rope / apply_rope_with_cos_sin_cache. Args: qo heads, kv heads,
// in place, interleave, cos/sin cache.

void BM_apply_rope(benchmark::State& state) {
  const int32_t hq = int32_t(state.range(0)), hk = int32_t(state.range(1));
  const bool in_place = state.range(2) != 0, interleave = state.range(3) != 0, with_cache = state.range(4) != 0;
  const RopeConfig rope = llama_rope(interleave);
  const size_t q_count = size_t(kTokens) * hq * kHeadDim, k_count = size_t(kTokens) * hk * kHeadDim;
  const std::vector<uint16_t> q = random_values(q_count, 1), k = random_values(k_count, 2);
  const std::vector<int32_t> positions = random_positions(kTokens, kMaxPosition, 3);
  DeviceBuffer q_in = testing::upload_vector(q), k_in = testing::upload_vector(k);
  DeviceBuffer q_out(in_place ? 16 : q_count * kElementBytes), k_out(in_place ? 16 : k_count * kElementBytes);
  DeviceBuffer pos_ids = testing::upload_vector(positions);
  DeviceBuffer cache(with_cache ? size_t(kMaxPosition) * rope.rotary_dim * sizeof(float) : 16);
  if (with_cache) {
    const Status built = build_rope_cos_sin_cache(cache.as<float>(), kMaxPosition, rope.rotary_dim, rope, nullptr);
    if (!built.ok()) return state.SkipWithError(built.message.c_str());
  }

  RopeTensors t;
  t.dtype = kDType;
  t.head_dim = kHeadDim;
  t.num_qo_heads = hq;
  t.num_kv_heads = hk;
  t.num_tokens = kTokens;
  t.q_in = q_in.get();
  t.k_in = k_in.get();
  t.q_out = in_place ? q_in.get() : q_out.get();
  t.k_out = in_place ? k_in.get() : k_out.get();
  RopePositions by_pos_ids;
  by_pos_ids.pos_ids = pos_ids.as<int32_t>();
  const Launch launch = [&](cudaStream_t stream) {
    if (with_cache)
      return apply_rope_with_cos_sin_cache(t, pos_ids.as<int32_t>(), cache.as<float>(), kMaxPosition,
                                           rope.rotary_dim, rope.interleave, stream);
    return apply_rope(t, by_pos_ids, rope, stream);
  };

  // Validation on the fresh inputs.
  testing::pollute_shared_memory(testing::pattern::kQuietNaN);
  if (const Status status = launch(nullptr); !status.ok()) return state.SkipWithError(status.message.c_str());
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<int64_t> tokens = sample_tokens(kTokens);
  const std::vector<int32_t> sampled_positions = positions_of(positions, tokens);
  for (int which = 0; which < 2; ++which) {
    const int32_t heads = which == 0 ? hq : hk;
    const std::vector<uint16_t> in = gather_rows(which == 0 ? q : k, tokens, heads);
    const std::vector<double> reference =
        ref::apply_rope(testing::decode(in, kDType), heads, kHeadDim, sampled_positions, rope, ref::Rounding::kGpu);
    if (!rotated_rows_match(download_rows(which == 0 ? t.q_out : t.k_out, tokens, heads), in, reference, rope))
      return state.SkipWithError(which == 0 ? "validation failed: q" : "validation failed: k");
  }

  // Read q, k (and pos_ids, cache rows), write q, k.
  double bytes = 2.0 * double(q_count + k_count) * kElementBytes + double(kTokens) * sizeof(int32_t);
  if (with_cache) bytes += double(kTokens) * rope.rotary_dim * sizeof(float);
  time_and_report(state, launch, bytes);
}

// ---------------------------------------------------------------------------
// build_rope_cos_sin_cache over 1M positions (512 MiB written).

void BM_build_rope_cos_sin_cache(benchmark::State& state) {
  RopeConfig rope = llama_rope(false);
  rope.llama31 = state.range(0) != 0;
  rope.rope_scale = rope.llama31 ? 8.0f : 1.0f;
  DeviceBuffer cache(size_t(kMaxPosition) * rope.rotary_dim * sizeof(float));
  const Launch launch = [&](cudaStream_t stream) {
    return build_rope_cos_sin_cache(cache.as<float>(), kMaxPosition, rope.rotary_dim, rope, stream);
  };
  testing::pollute_shared_memory(testing::pattern::kQuietNaN);
  if (const Status status = launch(nullptr); !status.ok()) return state.SkipWithError(status.message.c_str());
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
  // Sampled rows against the exact cos/sin: within kGpu's bound pi·2^-25 + 2^-24 (+ slack).
  const std::vector<double> freq = ref::rope_frequencies(rope);
  const int32_t half = rope.rotary_dim / 2;
  for (int32_t position : {0, 1, 4095, 65537, kMaxPosition - 1}) {
    std::vector<float> row(rope.rotary_dim);
    PTXATTN_CUDA_CHECK(cudaMemcpy(row.data(), cache.as<float>() + int64_t(position) * rope.rotary_dim,
                                  row.size() * sizeof(float), cudaMemcpyDeviceToHost));
    for (int32_t i = 0; i < half; ++i) {
      const ref::CosSin exact = ref::rope_cos_sin(position, freq[i], ref::Rounding::kExact);
      if (!(std::abs(row[i] - exact.cos) <= 2e-7 && std::abs(row[half + i] - exact.sin) <= 2e-7))
        return state.SkipWithError("validation failed: cos/sin cache");
    }
  }
  time_and_report(state, launch, double(cache.bytes()));
}

// ---------------------------------------------------------------------------
// append_paged_kv_cache: 16384 new tokens in 16 requests of 1024, each
// appended after 1024 cached tokens, pages shuffled in the pool.
// Args: page size, layout (0 NHD, 1 HND), fused RoPE on K, qo heads rotated (0: none).

void BM_append_paged_kv_cache(benchmark::State& state) {
  const int32_t page_size = int32_t(state.range(0));
  const KvLayout layout = state.range(1) != 0 ? KvLayout::kHND : KvLayout::kNHD;
  const bool fused = state.range(2) != 0;
  const int32_t hq = int32_t(state.range(3)), hk = 32;
  constexpr int32_t kRequests = 16, kAppendLen = kTokens / kRequests, kCachedLen = 1024;
  const int32_t kv_len = kCachedLen + kAppendLen, pages_per_request = (kv_len + page_size - 1) / page_size;

  std::vector<int32_t> append_indptr = {0}, kv_indptr = {0}, last_page_len;
  for (int32_t b = 0; b < kRequests; ++b) {
    append_indptr.push_back(append_indptr.back() + kAppendLen);
    kv_indptr.push_back(kv_indptr.back() + pages_per_request);
    last_page_len.push_back(kv_len - page_size * (pages_per_request - 1));
  }
  const int32_t num_pages = kv_indptr.back();
  std::vector<int32_t> kv_indices(num_pages);
  for (int32_t i = 0; i < num_pages; ++i) kv_indices[i] = i;
  std::shuffle(kv_indices.begin(), kv_indices.end(), std::mt19937(4));

  AppendConfig config;
  config.dtype = kDType;
  config.num_kv_heads = hk;
  config.head_dim = kHeadDim;
  config.kv_layout = layout;
  config.page_size = page_size;
  config.num_pages = num_pages;
  AppendIndices indices;
  indices.num_requests = kRequests;
  indices.append_indptr = append_indptr.data();
  indices.kv_indptr = kv_indptr.data();
  indices.kv_indices = kv_indices.data();
  indices.kv_last_page_len = last_page_len.data();
  AppendPlan plan;
  if (const Status status = plan_append_paged_kv(config, indices, plan); !status.ok())
    return state.SkipWithError(status.message.c_str());

  const size_t kv_count = size_t(kTokens) * hk * kHeadDim, q_count = size_t(kTokens) * hq * kHeadDim;
  const size_t pool_bytes = size_t(num_pages) * page_size * hk * kHeadDim * kElementBytes;
  const std::vector<uint16_t> k_new = random_values(kv_count, 5), v_new = random_values(kv_count, 6);
  const std::vector<uint16_t> q = random_values(q_count, 7);
  DeviceBuffer k_in = testing::upload_vector(k_new), v_in = testing::upload_vector(v_new);
  DeviceBuffer q_in = testing::upload_vector(q), q_out(std::max<size_t>(q_count * kElementBytes, 16));
  DeviceBuffer k_cache(pool_bytes), v_cache(pool_bytes);
  const RopeConfig rope = llama_rope(false);

  AppendTensors t;
  t.k_new = k_in.get();
  t.v_new = v_in.get();
  t.k_cache = k_cache.get();
  t.v_cache = v_cache.get();
  t.num_append_tokens = kTokens;
  t.num_pages = num_pages;
  if (hq > 0) {
    t.q_in = q_in.get();
    t.q_out = q_out.get();
    t.num_qo_heads = hq;
  }
  const Launch launch = [&](cudaStream_t stream) {
    return append_paged_kv_cache(plan, t, fused ? &rope : nullptr, stream);
  };

  testing::pollute_shared_memory(testing::pattern::kQuietNaN);
  if (const Status status = launch(nullptr); !status.ok()) return state.SkipWithError(status.message.c_str());
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
  // Sampled tokens: their K/V rows in the pool (and Q rows) against the reference.
  const std::vector<ref::AppendTarget> targets = ref::append_targets(indices, page_size);
  for (int64_t token : sample_tokens(kTokens)) {
    const std::vector<int64_t> one = {token};
    const std::vector<int32_t> position = {targets[token].position};
    for (int32_t h = 0; h < hk; ++h) {
      const int64_t at = ref::paged_row_offset(layout, page_size, hk, kHeadDim, targets[token].page,
                                               targets[token].slot, h);
      std::vector<uint16_t> k_row(kHeadDim), v_row(kHeadDim);
      PTXATTN_CUDA_CHECK(cudaMemcpy(k_row.data(), k_cache.as<uint16_t>() + at, kHeadDim * kElementBytes,
                                    cudaMemcpyDeviceToHost));
      PTXATTN_CUDA_CHECK(cudaMemcpy(v_row.data(), v_cache.as<uint16_t>() + at, kHeadDim * kElementBytes,
                                    cudaMemcpyDeviceToHost));
      const size_t src = (size_t(token) * hk + h) * kHeadDim;
      const std::vector<uint16_t> k_src(k_new.begin() + src, k_new.begin() + src + kHeadDim);
      const std::vector<uint16_t> v_src(v_new.begin() + src, v_new.begin() + src + kHeadDim);
      if (v_row != v_src) return state.SkipWithError("validation failed: v_cache");
      if (!fused && k_row != k_src) return state.SkipWithError("validation failed: k_cache");
      if (fused) {
        std::vector<float> x(kHeadDim);
        for (int32_t i = 0; i < kHeadDim; ++i) x[i] = ref::to_float(k_src[i], kDType);
        const std::vector<double> reference = ref::apply_rope(x, 1, kHeadDim, position, rope, ref::Rounding::kGpu);
        if (!rotated_rows_match(k_row, k_src, reference, rope))
          return state.SkipWithError("validation failed: k_cache (fused RoPE)");
      }
    }
    if (hq > 0) {
      const std::vector<uint16_t> in = gather_rows(q, one, hq);
      std::vector<float> x(in.size());
      for (size_t i = 0; i < in.size(); ++i) x[i] = ref::to_float(in[i], kDType);
      const std::vector<double> reference = ref::apply_rope(x, hq, kHeadDim, position, rope, ref::Rounding::kGpu);
      if (!rotated_rows_match(download_rows(t.q_out, one, hq), in, reference, rope))
        return state.SkipWithError("validation failed: q");
    }
  }

  // Read k_new, v_new (and q), write their rows (and q_out); plus the plan's 8 bytes per token.
  const double bytes = 2.0 * double(2 * kv_count + q_count) * kElementBytes + double(kTokens) * 2 * sizeof(int32_t);
  time_and_report(state, launch, bytes);
}

// 16k tokens x 32 heads x 128 dims is the target shape (Q and K of 32
// heads each); 32/8 is the GQA shape of Llama-3-8B.
BENCHMARK(BM_apply_rope)
    ->ArgNames({"qo_heads", "kv_heads", "in_place", "gptj", "cache"})
    ->Args({32, 32, 1, 0, 0})
    ->Args({32, 32, 0, 0, 0})
    ->Args({32, 32, 1, 1, 0})
    ->Args({32, 8, 1, 0, 0})
    ->Args({32, 32, 1, 0, 1})
    ->Args({32, 32, 0, 1, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_build_rope_cos_sin_cache)
    ->ArgNames({"llama31"})
    ->Arg(0)
    ->Arg(1)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_append_paged_kv_cache)
    ->ArgNames({"page", "hnd", "fused", "qo_heads"})
    ->Args({16, 0, 0, 0})
    ->Args({16, 1, 0, 0})
    ->Args({1, 0, 0, 0})
    ->Args({16, 0, 1, 0})
    ->Args({16, 0, 1, 32})
    ->Args({16, 1, 1, 32})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ptxattn::bench
