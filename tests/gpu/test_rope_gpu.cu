// GPU tests of the RoPE kernels (build_rope_cos_sin_cache, apply_rope,
// apply_rope_with_cos_sin_cache) and of append_paged_kv_cache against the
// CPU reference (reference/rope.hpp), over every option. The state rules of
// issue 5 are checked on every launch: shared memory is filled with NaN just
// before it, outputs start as all-ones (NaN) so an element the kernel skips
// cannot match, and every buffer sits between guard zones that must come back
// untouched (inputs must come back unchanged too).
//
// Tolerances (docs/validation.md "RoPE accuracy"): pass-through dims and
// copies are bit-exact; the cache variant is bit-exact against the reference
// evaluated with the GPU's own cache; computed rotations are within
// ref::rope_rotated_tolerance() of both references.
#include <catch2/catch.hpp>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/numeric.hpp"
#include "reference/rope.hpp"
#include "tests/common/gpu_test.hpp"
#include "tests/common/rope_data.hpp"
#include "validate.hpp"

namespace ptxattn {
namespace {

using ref::Rounding;
using testing::decode;
using testing::DeviceBuffer;
using testing::random_values;
namespace pattern = testing::pattern;

using ref::kRopeCosSinBound;
// GPU cos/sin against the kGpu reference (cos(pi·x) of the same float x,
// rounded to float): 1 ulp of sincospif + half an ulp of rounding.
constexpr double kCosSinVsGpuReference = 1.5 * 0x1p-24;

// Every output starts as all-ones bytes: NaN in bf16, fp16 and float alike.
constexpr uint8_t kUnwrittenByte = 0xFF;
constexpr uint16_t kUnwrittenBits = 0xFFFF;
// Guard zones hold a NaN payload no kernel produces.
constexpr uint32_t kGuardWord = 0x7FA17FA1u;
constexpr size_t kGuardBytes = 4096;

// Runs f(chunk, begin, end) on one thread per chunk; the chunks split [0, n).
size_t num_chunks() { return std::max(1u, std::thread::hardware_concurrency()); }

template <typename F>
void parallel_for(size_t n, F f) {
  const size_t chunk = (n + num_chunks() - 1) / num_chunks();
  std::vector<std::thread> pool;
  for (size_t c = 0; c * chunk < n; ++c) pool.emplace_back(f, c, c * chunk, std::min(n, (c + 1) * chunk));
  for (std::thread& t : pool) t.join();
}

// A device allocation with a guard zone of kGuardWord on each side; the
// payload is 16-byte aligned and starts as kUnwrittenByte.
class GuardedBuffer {
 public:
  explicit GuardedBuffer(size_t payload_bytes)
      : payload_bytes_(payload_bytes), buffer_((payload_bytes + 3) / 4 * 4 + 2 * kGuardBytes) {
    buffer_.fill_u32(kGuardWord);
    PTXATTN_CUDA_CHECK(cudaMemset(data(), kUnwrittenByte, payload_bytes_));
  }
  void* data() const { return static_cast<char*>(buffer_.get()) + kGuardBytes; }
  template <typename T>
  void upload(const std::vector<T>& host) {
    REQUIRE(host.size() * sizeof(T) == payload_bytes_);
    PTXATTN_CUDA_CHECK(cudaMemcpy(data(), host.data(), payload_bytes_, cudaMemcpyHostToDevice));
  }
  template <typename T>
  std::vector<T> download() const {
    std::vector<T> host(payload_bytes_ / sizeof(T));
    PTXATTN_CUDA_CHECK(cudaMemcpy(host.data(), data(), payload_bytes_, cudaMemcpyDeviceToHost));
    return host;
  }
  // Every byte outside the payload still holds the guard pattern.
  bool guards_intact() const {
    std::vector<uint8_t> all(buffer_.bytes());
    buffer_.download(all.data(), all.size());
    for (size_t i = 0; i < all.size(); ++i) {
      if (i >= kGuardBytes && i < kGuardBytes + payload_bytes_) continue;
      if (all[i] != reinterpret_cast<const uint8_t*>(&kGuardWord)[i % 4]) return false;
    }
    return true;
  }

 private:
  size_t payload_bytes_;
  DeviceBuffer buffer_;
};

// Cases of a dtype this library was built without (meson option dtypes) are
// skipped, counted and reported, as the prefill suites do with theirs.
struct BuiltCases {
  const char* suite;
  int run = 0, not_built = 0;
  bool take(DType dtype) {
    const bool built = dtype_is_built(dtype);
    ++(built ? run : not_built);
    return built;
  }
  ~BuiltCases() {
    if (not_built > 0) std::printf("%s: %d cases not built in this configuration\n", suite, not_built);
  }
};

void synchronize_and_check() {
  PTXATTN_CUDA_CHECK(cudaGetLastError());
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
}

struct ErrorStats {
  double max_vs_exact = 0;  // max |gpu - exact|
  double max_vs_gpu_reference = 0;
  int64_t rotated = 0;
};

// Compares one output row with its expectation. ref_exact == null: a bit
// copy of `in`. exact_bits: the bits of the rounded ref_gpu (cache variant).
// Otherwise within ref::rope_rotated_tolerance() of both references. A NaN reference
// expects NaN. Returns "" or a description of the first bad element.
std::string check_row(const uint16_t* out, const uint16_t* in, const double* ref_exact, const double* ref_gpu,
                      int32_t head_dim, int32_t rotary_dim, bool interleave, DType dtype, bool exact_bits,
                      ErrorStats& stats) {
  for (int32_t i = 0; i < head_dim; ++i) {
    std::ostringstream bad;
    const double got = ref::to_double(out[i], dtype);
    if (ref_exact == nullptr || i >= rotary_dim) {
      if (out[i] != in[i]) bad << "copied dim " << i << ": got bits " << out[i] << ", expected " << in[i];
    } else if (std::isnan(ref_gpu[i])) {
      if (!std::isnan(got)) bad << "dim " << i << ": got " << got << ", expected NaN";
    } else if (exact_bits) {
      const uint16_t expected = ref::from_float(float(ref_gpu[i]), dtype);
      if (out[i] != expected) bad << "dim " << i << ": got bits " << out[i] << ", expected " << expected;
    } else {
      const double pair = std::abs(ref::to_double(in[i], dtype)) +
                          std::abs(ref::to_double(in[ref::rope_pair_partner(i, rotary_dim, interleave)], dtype));
      const double err_exact = std::abs(got - ref_exact[i]), err_gpu = std::abs(got - ref_gpu[i]);
      stats.max_vs_exact = std::max(stats.max_vs_exact, err_exact);
      stats.max_vs_gpu_reference = std::max(stats.max_vs_gpu_reference, err_gpu);
      ++stats.rotated;
      const double tol_exact = ref::rope_rotated_tolerance(ref_exact[i], pair, kRopeCosSinBound, dtype);
      const double tol_gpu = ref::rope_rotated_tolerance(ref_gpu[i], pair, kCosSinVsGpuReference, dtype);
      if (!(err_exact <= tol_exact && err_gpu <= tol_gpu))
        bad << "dim " << i << ": got " << got << ", exact " << ref_exact[i] << " (tol " << tol_exact << "), kGpu "
            << ref_gpu[i] << " (tol " << tol_gpu << ")";
    }
    if (!bad.str().empty()) return bad.str();
  }
  return "";
}

// Checks dense rows [num_tokens][heads][head_dim]; fails on the first bad row.
void check_dense_rows(const char* what, const std::vector<uint16_t>& out, const std::vector<uint16_t>& in,
                      const std::vector<double>* ref_exact, const std::vector<double>* ref_gpu, int32_t heads,
                      int32_t head_dim, int32_t rotary_dim, bool interleave, DType dtype, bool exact_bits,
                      ErrorStats& stats) {
  REQUIRE(out.size() == in.size());
  const size_t rows = in.size() / head_dim;
  for (size_t r = 0; r < rows; ++r) {
    const size_t at = r * head_dim;
    const std::string bad =
        check_row(&out[at], &in[at], ref_exact ? &(*ref_exact)[at] : nullptr, ref_gpu ? &(*ref_gpu)[at] : nullptr,
                  head_dim, rotary_dim, interleave, dtype, exact_bits, stats);
    if (!bad.empty()) FAIL(what << " token " << r / heads << " head " << r % heads << ": " << bad);
  }
}

const char* dtype_name(DType dtype) { return dtype == DType::kBF16 ? "bf16" : "fp16"; }

RopeConfig make_rope(int32_t rotary_dim, bool interleave, float theta = 1e4f, float rope_scale = 1.0f) {
  RopeConfig rope;
  rope.rotary_dim = rotary_dim;
  rope.interleave = interleave;
  rope.theta = theta;
  rope.rope_scale = rope_scale;
  return rope;
}

RopeConfig llama31_rope(int32_t rotary_dim, bool interleave) {
  RopeConfig rope = make_rope(rotary_dim, interleave, 5e5f, 8.0f);
  rope.llama31 = true;
  return rope;
}

// A ragged batch with empty requests and positions up to 2^20 + ...: 31 tokens.
struct RaggedPositions {
  std::vector<int32_t> indptr = {0, 5, 5, 12, 12, 30, 31};
  std::vector<int32_t> offsets = {0, 77, 999990, 3, (1 << 20) - 20, 123456};
  std::vector<int32_t> per_token() const { return ref::rope_positions_from_indptr(indptr, offsets); }
};

// ---------------------------------------------------------------------------
// build_rope_cos_sin_cache

TEST_CASE("rope gpu: cos/sin cache against the double reference up to position 1M", "[rope][gpu]") {
  struct CacheCase {
    RopeConfig rope;
    int32_t max_position;
  };
  const CacheCase cases[] = {
      {make_rope(128, false), (1 << 20) + 3},
      {llama31_rope(128, false), (1 << 20) + 3},
      {make_rope(64, false, 5e5f, 2.0f), 50000},
      {make_rope(6, true, 10.0f), 4099},
  };
  for (const CacheCase& c : cases) {
    const int32_t rd = c.rope.rotary_dim, half = rd / 2;
    INFO("rotary_dim " << rd << " llama31 " << c.rope.llama31 << " max_position " << c.max_position);
    GuardedBuffer cache(size_t(c.max_position) * rd * sizeof(float));
    testing::pollute_shared_memory(pattern::kQuietNaN);
    const Status status =
        build_rope_cos_sin_cache(static_cast<float*>(cache.data()), c.max_position, rd, c.rope, nullptr);
    REQUIRE(status.ok());
    synchronize_and_check();
    REQUIRE(cache.guards_intact());
    const std::vector<float> got = cache.download<float>();

    const std::vector<double> freq = ref::rope_frequencies(c.rope);
    // Per chunk: worst errors and the first bad entry.
    std::vector<double> max_exact(num_chunks(), 0.0), max_gpu(num_chunks(), 0.0);
    std::vector<int64_t> bad(num_chunks(), -1);
    parallel_for(size_t(c.max_position), [&](size_t slot, size_t begin, size_t end) {
      for (size_t p = begin; p < end; ++p)
        for (int32_t i = 0; i < half; ++i) {
          const ref::CosSin exact = ref::rope_cos_sin(int64_t(p), freq[i], Rounding::kExact);
          const ref::CosSin gpu_ref = ref::rope_cos_sin(int64_t(p), freq[i], Rounding::kGpu);
          const double c_got = got[p * rd + i], s_got = got[p * rd + half + i];
          const double e_exact = std::max(std::abs(c_got - exact.cos), std::abs(s_got - exact.sin));
          const double e_gpu = std::max(std::abs(c_got - gpu_ref.cos), std::abs(s_got - gpu_ref.sin));
          max_exact[slot] = std::max(max_exact[slot], e_exact);
          max_gpu[slot] = std::max(max_gpu[slot], e_gpu);
          if (!(e_exact <= kRopeCosSinBound && e_gpu <= kCosSinVsGpuReference) && bad[slot] < 0)
            bad[slot] = int64_t(p) * rd + i;
        }
    });
    const double worst_exact = *std::max_element(max_exact.begin(), max_exact.end());
    const double worst_gpu = *std::max_element(max_gpu.begin(), max_gpu.end());
    WARN("RoPE accuracy: cos/sin cache rotary_dim " << rd << (c.rope.llama31 ? " llama31" : "") << ", positions < "
                                                    << c.max_position << ": max |gpu - exact| = " << worst_exact
                                                    << " (bound " << kRopeCosSinBound << "), max |gpu - kGpu ref| = "
                                                    << worst_gpu << " (bound " << kCosSinVsGpuReference << ")");
    for (int64_t b : bad)
      if (b >= 0) FAIL("first bad cache entry: position " << b / rd << ", column " << b % rd);
  }
}

// ---------------------------------------------------------------------------
// apply_rope

struct ApplyCase {
  DType dtype = DType::kBF16;
  int32_t head_dim = 128;
  int32_t num_qo_heads = 3;
  int32_t num_kv_heads = 2;
  RopeConfig rope;
  bool in_place = false;
  bool use_indptr = false;  // positions from RaggedPositions' indptr + offsets, else pos_ids
  std::vector<int32_t> positions;  // per token (pos_ids, or what indptr + offsets give)
  RaggedPositions ragged;

  std::string describe() const {
    std::ostringstream s;
    s << dtype_name(dtype) << " head_dim " << head_dim << " rotary_dim " << rope.rotary_dim
      << (rope.interleave ? " GPT-J" : " NeoX") << (rope.llama31 ? " llama31" : "")
      << (in_place ? " in place" : " out of place") << (use_indptr ? " indptr+offsets" : " pos_ids") << " tokens "
      << positions.size() << " heads " << num_qo_heads << "/" << num_kv_heads;
    return s.str();
  }
};

// One launch of apply_rope (or of the cache variant with `cache`), checked.
void run_apply_case(const ApplyCase& c, std::mt19937& rng, ErrorStats& stats,
                    const std::vector<float>* host_cache = nullptr, const float* device_cache = nullptr,
                    int32_t max_position = 0) {
  INFO(c.describe() << (device_cache ? " (cos/sin cache)" : ""));
  const int64_t n = int64_t(c.positions.size());
  const size_t q_count = size_t(n) * c.num_qo_heads * c.head_dim, k_count = size_t(n) * c.num_kv_heads * c.head_dim;
  const std::vector<uint16_t> q = random_values(q_count, c.dtype, rng), k = random_values(k_count, c.dtype, rng);

  GuardedBuffer q_in(q_count * 2), k_in(k_count * 2);
  q_in.upload(q);
  k_in.upload(k);
  std::unique_ptr<GuardedBuffer> q_out, k_out;
  if (!c.in_place) {
    q_out = std::make_unique<GuardedBuffer>(q_count * 2);
    k_out = std::make_unique<GuardedBuffer>(k_count * 2);
  }
  RopeTensors t;
  t.dtype = c.dtype;
  t.head_dim = c.head_dim;
  t.num_qo_heads = c.num_qo_heads;
  t.num_kv_heads = c.num_kv_heads;
  t.num_tokens = n;
  t.q_in = q_in.data();
  t.k_in = k_in.data();
  t.q_out = c.in_place ? q_in.data() : q_out->data();
  t.k_out = c.in_place ? k_in.data() : k_out->data();

  const DeviceBuffer pos_ids = testing::upload_vector(c.positions);
  const DeviceBuffer indptr = testing::upload_vector(c.ragged.indptr);
  const DeviceBuffer offsets = testing::upload_vector(c.ragged.offsets);
  testing::pollute_shared_memory(pattern::kQuietNaN);
  Status status;
  if (device_cache != nullptr) {
    status = apply_rope_with_cos_sin_cache(t, pos_ids.as<int32_t>(), device_cache, max_position, c.rope.rotary_dim,
                                           c.rope.interleave, nullptr);
  } else {
    RopePositions positions;
    if (c.use_indptr) {
      positions.num_requests = int32_t(c.ragged.offsets.size());
      positions.indptr = indptr.as<int32_t>();
      positions.offsets = offsets.as<int32_t>();
    } else {
      positions.pos_ids = pos_ids.as<int32_t>();
    }
    status = apply_rope(t, positions, c.rope, nullptr);
  }
  INFO("status: " << status.message);
  REQUIRE(status.ok());
  synchronize_and_check();

  const GuardedBuffer& q_result = c.in_place ? q_in : *q_out;
  const GuardedBuffer& k_result = c.in_place ? k_in : *k_out;
  REQUIRE(q_result.guards_intact());
  REQUIRE(k_result.guards_intact());
  if (!c.in_place) {
    REQUIRE(q_in.guards_intact());
    REQUIRE(k_in.guards_intact());
    REQUIRE(q_in.download<uint16_t>() == q);  // inputs untouched
    REQUIRE(k_in.download<uint16_t>() == k);
  }

  const int32_t rd = c.rope.rotary_dim;
  for (int which = 0; which < 2; ++which) {
    const std::vector<uint16_t>& in = which == 0 ? q : k;
    const int32_t heads = which == 0 ? c.num_qo_heads : c.num_kv_heads;
    const std::vector<float> x = decode(in, c.dtype);
    std::vector<double> exact, gpu;
    if (host_cache != nullptr) {
      gpu = ref::apply_rope_with_cos_sin_cache(x, heads, c.head_dim, c.positions, *host_cache, max_position, rd,
                                               c.rope.interleave, Rounding::kGpu);
      exact = gpu;  // not used: the cache variant is checked bit for bit
    } else {
      exact = ref::apply_rope(x, heads, c.head_dim, c.positions, c.rope, Rounding::kExact);
      gpu = ref::apply_rope(x, heads, c.head_dim, c.positions, c.rope, Rounding::kGpu);
    }
    check_dense_rows(which == 0 ? "q" : "k", (which == 0 ? q_result : k_result).download<uint16_t>(), in, &exact,
                     &gpu, heads, c.head_dim, rd, c.rope.interleave, c.dtype, host_cache != nullptr, stats);
  }
}

TEST_CASE("rope gpu: apply_rope matches the reference for every option", "[rope][gpu]") {
  std::mt19937 rng(5);
  ErrorStats stats;
  BuiltCases cases{"apply_rope, every option"};
  for (DType dtype : {DType::kBF16, DType::kFP16})
    for (int32_t head_dim : {64, 128, 256})
      // Full, half, NeoX pairs across 16-byte chunks (20: half = 10), a
      // partial chunk at the end (6), the smallest (2).
      for (int32_t rotary_dim : {head_dim, head_dim / 2, 20, 6, 2})
        for (bool interleave : {false, true})
          for (bool in_place : {false, true})
            for (bool use_indptr : {false, true}) {
              if (!cases.take(dtype)) continue;
              ApplyCase c;
              c.dtype = dtype;
              c.head_dim = head_dim;
              c.rope = make_rope(rotary_dim, interleave);
              c.in_place = in_place;
              c.use_indptr = use_indptr;
              c.positions = c.ragged.per_token();
              run_apply_case(c, rng, stats);
            }
  CHECK(cases.run > 0);
  WARN("RoPE accuracy: apply_rope outputs, " << stats.rotated << " rotated elements: max |gpu - exact| = "
                                             << stats.max_vs_exact << ", max |gpu - kGpu ref| = "
                                             << stats.max_vs_gpu_reference);
}

TEST_CASE("rope gpu: apply_rope with Llama-3.1 frequencies and scaled theta", "[rope][gpu]") {
  std::mt19937 rng(6);
  ErrorStats stats;
  BuiltCases cases{"apply_rope, Llama-3.1 frequencies"};
  for (DType dtype : {DType::kBF16, DType::kFP16})
    for (bool interleave : {false, true})
      for (const RopeConfig& rope : {llama31_rope(128, interleave), make_rope(64, interleave, 5e5f, 4.0f)}) {
        if (!cases.take(dtype)) continue;
        ApplyCase c;
        c.dtype = dtype;
        c.rope = rope;
        c.num_qo_heads = 5;
        c.use_indptr = true;
        c.positions = c.ragged.per_token();
        run_apply_case(c, rng, stats);
      }
  CHECK(cases.run > 0);
}

TEST_CASE("rope gpu: apply_rope on a large batch (full head blocks, positions to 1M)", "[rope][gpu]") {
  // 16384 tokens x (12 + 3) heads: enough items that heads go in blocks of 8
  // (12 = 8 + 4), exercising every head-block boundary.
  std::mt19937 rng(7);
  ErrorStats stats;
  for (bool interleave : {false, true}) {
    ApplyCase c;
    c.rope = make_rope(128, interleave);
    c.num_qo_heads = 12;
    c.num_kv_heads = 3;
    c.in_place = interleave;
    std::uniform_int_distribution<int32_t> position(0, 1 << 20);
    c.positions.resize(16384);
    for (int32_t& p : c.positions) p = position(rng);
    run_apply_case(c, rng, stats);
  }
  WARN("RoPE accuracy: large batch, positions <= 2^20: max |gpu - exact| = " << stats.max_vs_exact);
}

TEST_CASE("rope gpu: an empty batch launches nothing", "[rope][gpu]") {
  RopeTensors t;
  t.head_dim = 128;
  t.num_qo_heads = 4;
  t.num_kv_heads = 4;
  t.num_tokens = 0;
  RopePositions positions;
  REQUIRE(apply_rope(t, positions, make_rope(128, false), nullptr).ok());
  REQUIRE(apply_rope_with_cos_sin_cache(t, nullptr, reinterpret_cast<const float*>(uintptr_t(256)), 16, 128, false,
                                        nullptr)
              .ok());
  synchronize_and_check();
}

// ---------------------------------------------------------------------------
// apply_rope_with_cos_sin_cache

TEST_CASE("rope gpu: apply_rope_with_cos_sin_cache is bit-exact with the reference on the GPU's cache",
          "[rope][gpu]") {
  std::mt19937 rng(8);
  ErrorStats stats;
  BuiltCases cases{"apply_rope_with_cos_sin_cache"};
  for (int32_t rotary_dim : {128, 64, 20}) {
    const int32_t max_position = (1 << 20) + 1;
    const RopeConfig cache_rope = make_rope(rotary_dim, false);
    DeviceBuffer cache(size_t(max_position) * rotary_dim * sizeof(float));
    REQUIRE(build_rope_cos_sin_cache(cache.as<float>(), max_position, rotary_dim, cache_rope, nullptr).ok());
    synchronize_and_check();
    const std::vector<float> host_cache = testing::download_vector<float>(cache, size_t(max_position) * rotary_dim);
    for (DType dtype : {DType::kBF16, DType::kFP16})
      for (int32_t head_dim : {64, 128, 256}) {
        if (rotary_dim > head_dim) continue;
        for (bool interleave : {false, true})
          for (bool in_place : {false, true}) {
            if (!cases.take(dtype)) continue;
            ApplyCase c;
            c.dtype = dtype;
            c.head_dim = head_dim;
            c.rope = make_rope(rotary_dim, interleave);
            c.in_place = in_place;
            c.positions = c.ragged.per_token();
            // Out of range: the rotary dims of these tokens come out NaN (API contract).
            c.positions[1] = -1;
            c.positions[2] = max_position;
            c.positions[3] = INT32_MAX;
            c.positions[4] = INT32_MIN;
            c.positions[5] = max_position - 1;
            run_apply_case(c, rng, stats, &host_cache, cache.as<float>(), max_position);
          }
      }
  }
  CHECK(cases.run > 0);
}

// ---------------------------------------------------------------------------
// append_paged_kv_cache

struct AppendSpec {
  DType dtype = DType::kBF16;
  int32_t head_dim = 128;
  int32_t num_kv_heads = 2;
  KvLayout layout = KvLayout::kNHD;
  int32_t page_size = 16;
  const RopeConfig* rope = nullptr;  // null: plain append
  int32_t num_qo_heads = 0;          // > 0 (with rope): Q rotated too
  bool q_in_place = false;

  std::string describe() const {
    std::ostringstream s;
    s << dtype_name(dtype) << " head_dim " << head_dim << (layout == KvLayout::kNHD ? " NHD" : " HND") << " page "
      << page_size << " kv heads " << num_kv_heads;
    if (rope)
      s << " rope rotary_dim " << rope->rotary_dim << (rope->interleave ? " GPT-J" : " NeoX") << " q heads "
        << num_qo_heads << (q_in_place ? " (q in place)" : "");
    return s.str();
  }
};

void run_append_case(const AppendSpec& spec, std::mt19937& rng, ErrorStats& stats) {
  INFO(spec.describe());
  // (kv_len, append_len) per request: partial pages, an empty request, a
  // request whose only token is new, appends spanning pages, none appended.
  const std::vector<std::pair<int32_t, int32_t>> requests = {{7, 3}, {0, 0}, {1, 1}, {50, 17}, {33, 0}, {16, 16}};
  const int32_t ps = spec.page_size;
  std::vector<int32_t> append_indptr = {0}, kv_indptr = {0}, last_page_len;
  for (const auto& [kv_len, append_len] : requests) {
    const int32_t pages = (kv_len + ps - 1) / ps;
    kv_indptr.push_back(kv_indptr.back() + pages);
    append_indptr.push_back(append_indptr.back() + append_len);
    last_page_len.push_back(pages == 0 ? 0 : kv_len - ps * (pages - 1));
  }
  const int32_t used_pages = kv_indptr.back(), num_pages = used_pages + 5;  // spare pages stay untouched
  std::vector<int32_t> pool(num_pages);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  const std::vector<int32_t> kv_indices(pool.begin(), pool.begin() + used_pages);

  AppendConfig config;
  config.dtype = spec.dtype;
  config.num_kv_heads = spec.num_kv_heads;
  config.head_dim = spec.head_dim;
  config.kv_layout = spec.layout;
  config.page_size = ps;
  config.num_pages = num_pages;
  AppendIndices indices;
  indices.num_requests = int32_t(requests.size());
  indices.append_indptr = append_indptr.data();
  indices.kv_indptr = kv_indptr.data();
  indices.kv_indices = kv_indices.data();
  indices.kv_last_page_len = last_page_len.data();
  AppendPlan plan;
  const Status planned = plan_append_paged_kv(config, indices, plan);
  INFO("plan: " << planned.message);
  REQUIRE(planned.ok());
  const int64_t n = append_indptr.back();
  REQUIRE(plan.num_append_tokens() == n);

  const int32_t d = spec.head_dim, hk = spec.num_kv_heads, hq = spec.num_qo_heads;
  const size_t kv_count = size_t(n) * hk * d, q_count = size_t(n) * hq * d;
  const size_t pool_count = size_t(num_pages) * ps * hk * d;
  const std::vector<uint16_t> k_new = random_values(kv_count, spec.dtype, rng);
  const std::vector<uint16_t> v_new = random_values(kv_count, spec.dtype, rng);
  const std::vector<uint16_t> q = random_values(q_count, spec.dtype, rng);
  GuardedBuffer k_in(kv_count * 2), v_in(kv_count * 2), k_cache(pool_count * 2), v_cache(pool_count * 2);
  k_in.upload(k_new);
  v_in.upload(v_new);
  std::unique_ptr<GuardedBuffer> q_in, q_out;
  AppendTensors t;
  t.k_new = k_in.data();
  t.v_new = v_in.data();
  t.k_cache = k_cache.data();
  t.v_cache = v_cache.data();
  t.num_append_tokens = n;
  t.num_pages = num_pages;
  if (hq > 0) {
    q_in = std::make_unique<GuardedBuffer>(q_count * 2);
    q_in->upload(q);
    if (!spec.q_in_place) q_out = std::make_unique<GuardedBuffer>(q_count * 2);
    t.q_in = q_in->data();
    t.q_out = spec.q_in_place ? q_in->data() : q_out->data();
    t.num_qo_heads = hq;
  }
  testing::pollute_shared_memory(pattern::kQuietNaN);
  const Status status = append_paged_kv_cache(plan, t, spec.rope, nullptr);
  INFO("append: " << status.message);
  REQUIRE(status.ok());
  synchronize_and_check();

  for (const GuardedBuffer* b : {&k_in, &v_in, &k_cache, &v_cache}) REQUIRE(b->guards_intact());
  REQUIRE(k_in.download<uint16_t>() == k_new);
  REQUIRE(v_in.download<uint16_t>() == v_new);

  // Expected caches: every slot unwritten except the appended rows.
  const std::vector<ref::AppendTarget> targets = ref::append_targets(indices, ps);
  REQUIRE(int64_t(targets.size()) == n);
  std::vector<int32_t> positions;
  for (const ref::AppendTarget& target : targets) positions.push_back(target.position);
  std::vector<double> k_exact, k_gpu;
  if (spec.rope) {
    const std::vector<float> x = decode(k_new, spec.dtype);
    k_exact = ref::apply_rope(x, hk, d, positions, *spec.rope, Rounding::kExact);
    k_gpu = ref::apply_rope(x, hk, d, positions, *spec.rope, Rounding::kGpu);
  }
  const int32_t rd = spec.rope ? spec.rope->rotary_dim : 0;
  const bool interleave = spec.rope && spec.rope->interleave;
  for (int cache_index = 0; cache_index < 2; ++cache_index) {
    const bool is_k = cache_index == 0;
    const std::vector<uint16_t> got = (is_k ? k_cache : v_cache).download<uint16_t>();
    const std::vector<uint16_t>& in = is_k ? k_new : v_new;
    std::vector<bool> appended(got.size() / d, false);
    for (int64_t token = 0; token < n; ++token)
      for (int32_t h = 0; h < hk; ++h) {
        const int64_t at = ref::paged_row_offset(spec.layout, ps, hk, d, targets[token].page, targets[token].slot, h);
        appended[at / d] = true;
        const size_t src = (size_t(token) * hk + h) * d;
        const bool rotated = is_k && spec.rope != nullptr;
        const std::string bad = check_row(&got[at], &in[src], rotated ? &k_exact[src] : nullptr,
                                          rotated ? &k_gpu[src] : nullptr, d, rd, interleave, spec.dtype, false, stats);
        if (!bad.empty())
          FAIL((is_k ? "k" : "v") << "_cache row of appended token " << token << " head " << h << " (page "
                                  << targets[token].page << " slot " << targets[token].slot << "): " << bad);
      }
    for (size_t row = 0; row < appended.size(); ++row) {
      if (appended[row]) continue;
      for (int32_t i = 0; i < d; ++i)
        if (got[row * d + i] != kUnwrittenBits)
          FAIL((is_k ? "k" : "v") << "_cache row " << row << " (no appended token goes there) was written at dim "
                                  << i);
    }
  }

  if (hq > 0) {
    const GuardedBuffer& q_result = spec.q_in_place ? *q_in : *q_out;
    REQUIRE(q_result.guards_intact());
    if (!spec.q_in_place) REQUIRE(q_in->download<uint16_t>() == q);
    const std::vector<float> x = decode(q, spec.dtype);
    const std::vector<double> q_exact = ref::apply_rope(x, hq, d, positions, *spec.rope, Rounding::kExact);
    const std::vector<double> q_gpu = ref::apply_rope(x, hq, d, positions, *spec.rope, Rounding::kGpu);
    check_dense_rows("q", q_result.download<uint16_t>(), q, &q_exact, &q_gpu, hq, d, rd, interleave, spec.dtype,
                     false, stats);
  }
}

TEST_CASE("rope gpu: append_paged_kv_cache writes exactly the appended rows", "[rope][gpu][append]") {
  std::mt19937 rng(9);
  ErrorStats stats;
  BuiltCases cases{"append_paged_kv_cache"};
  for (DType dtype : {DType::kBF16, DType::kFP16})
    for (KvLayout layout : {KvLayout::kNHD, KvLayout::kHND})
      for (int32_t page_size : {1, 3, 16, 17, 64})
        for (int32_t head_dim : {64, 128, 256}) {
          if (!cases.take(dtype)) continue;
          AppendSpec spec;
          spec.dtype = dtype;
          spec.layout = layout;
          spec.page_size = page_size;
          spec.head_dim = head_dim;
          spec.num_kv_heads = head_dim == 128 ? 3 : 2;
          run_append_case(spec, rng, stats);
        }
  CHECK(cases.run > 0);
}

TEST_CASE("rope gpu: fused append rotates K (and Q) at the kv positions", "[rope][gpu][append]") {
  std::mt19937 rng(10);
  ErrorStats stats;
  BuiltCases cases{"fused append"};
  for (DType dtype : {DType::kBF16, DType::kFP16})
    for (KvLayout layout : {KvLayout::kNHD, KvLayout::kHND})
      for (int32_t page_size : {1, 5, 16})
        for (bool interleave : {false, true})
          for (int32_t rotary_dim : {128, 64, 20})
            for (int32_t q_heads : {0, 4}) {
              if (!cases.take(dtype)) continue;
              const RopeConfig rope = rotary_dim == 64 ? llama31_rope(rotary_dim, interleave)
                                                       : make_rope(rotary_dim, interleave);
              AppendSpec spec;
              spec.dtype = dtype;
              spec.layout = layout;
              spec.page_size = page_size;
              spec.rope = &rope;
              spec.num_qo_heads = q_heads;
              spec.q_in_place = page_size == 5;
              run_append_case(spec, rng, stats);
            }
  CHECK(cases.run > 0);
  WARN("RoPE accuracy: fused append, max |gpu - exact| = " << stats.max_vs_exact);
}

TEST_CASE("rope gpu: an append plan refuses tensors of another shape", "[rope][gpu][append]") {
  const std::vector<int32_t> append_indptr = {0, 2}, kv_indptr = {0, 1}, kv_indices = {0}, last = {2};
  AppendConfig config;
  config.num_kv_heads = 1;
  config.head_dim = 64;
  config.page_size = 4;
  config.num_pages = 1;
  AppendIndices indices;
  indices.num_requests = 1;
  indices.append_indptr = append_indptr.data();
  indices.kv_indptr = kv_indptr.data();
  indices.kv_indices = kv_indices.data();
  indices.kv_last_page_len = last.data();
  AppendPlan plan;
  REQUIRE(plan_append_paged_kv(config, indices, plan).ok());
  AppendTensors t;
  t.num_append_tokens = 3;
  t.num_pages = 1;
  REQUIRE(append_paged_kv_cache(plan, t, nullptr, nullptr).code == StatusCode::kPlanMismatch);
  t.num_append_tokens = 2;
  t.num_pages = 2;
  REQUIRE(append_paged_kv_cache(plan, t, nullptr, nullptr).code == StatusCode::kPlanMismatch);
}

}  // namespace
}  // namespace ptxattn
