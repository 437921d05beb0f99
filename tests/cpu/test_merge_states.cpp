// merge_states / merge_state on the host: the double reference
// (reference/merge_states.hpp) against an independent naive computation and
// on empty, all-empty and NaN/+inf states; every validation rule (code and a
// message naming the argument and the bad value); the C API twins. No GPU
// needed: every call but the last test's fails validation or merges an empty
// batch, which launches nothing; the last checks what a valid call says when
// there is no GPU.
#include <cuda_runtime_api.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "ptxattn/ptxattn.h"
#include "ptxattn/ptxattn.hpp"
#include "reference/merge_states.hpp"

namespace {

using namespace ptxattn;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ----------------------------------------------------------------------------
// The reference

// Independent of the reference's max-shifted form: lse_total = log Σ exp(lse_k)
// in long double (fine for the moderate lse used here), then
// v = Σ exp(lse_k - lse_total) v_k.
void naive_merge(const ref::MergeShape& s, const std::vector<float>& v, const std::vector<float>& lse,
                 std::vector<long double>* v_out, std::vector<long double>* lse_out) {
  const int64_t rows = s.num_tokens * s.num_heads;
  v_out->assign(rows * s.head_dim, 0.0L);
  lse_out->assign(rows, 0.0L);
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t token = row / s.num_heads, head = row % s.num_heads;
    long double total = 0.0L;
    for (int32_t k = 0; k < s.num_states; ++k) total += std::exp((long double)lse[(token * s.num_states + k) * s.num_heads + head]);
    (*lse_out)[row] = std::log(total);
    for (int32_t k = 0; k < s.num_states; ++k) {
      const int64_t state = (token * s.num_states + k) * s.num_heads + head;
      const long double p = std::exp((long double)lse[state] - (*lse_out)[row]);
      for (int32_t d = 0; d < s.head_dim; ++d) (*v_out)[row * s.head_dim + d] += p * v[state * s.head_dim + d];
    }
  }
}

struct RandomStates {
  ref::MergeShape shape;
  std::vector<float> v, lse;
  RandomStates(uint64_t seed, int64_t tokens, int32_t states, int32_t heads, int32_t head_dim)
      : shape{tokens, states, heads, head_dim} {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> value(-2.0f, 2.0f), log_sum(-8.0f, 8.0f);
    lse.resize(tokens * states * heads);
    for (float& x : lse) x = log_sum(rng);
    v.resize(lse.size() * head_dim);
    for (float& x : v) x = value(rng);
  }
  float& lse_at(int64_t token, int32_t state, int32_t head) {
    return lse[(token * shape.num_states + state) * shape.num_heads + head];
  }
  float* v_at(int64_t token, int32_t state, int32_t head) {
    return &v[((token * shape.num_states + state) * shape.num_heads + head) * shape.head_dim];
  }
};

TEST_CASE("merge reference: matches a naive log-sum-exp computation", "[merge][reference]") {
  for (int32_t states : {1, 2, 3, 17}) {
    RandomStates r(states, 5, states, 3, 24);
    std::vector<double> v_out, lse_out;
    ref::merge_states(r.shape, r.v, r.lse, &v_out, &lse_out);
    std::vector<long double> v_naive, lse_naive;
    naive_merge(r.shape, r.v, r.lse, &v_naive, &lse_naive);
    INFO("num_states " << states);
    for (size_t i = 0; i < lse_out.size(); ++i) REQUIRE(std::abs(lse_out[i] - double(lse_naive[i])) <= 1e-13);
    for (size_t i = 0; i < v_out.size(); ++i) REQUIRE(std::abs(v_out[i] - double(v_naive[i])) <= 1e-13);
  }
}

TEST_CASE("merge reference: one state is itself", "[merge][reference]") {
  RandomStates r(7, 3, 1, 2, 16);
  std::vector<double> v_out, lse_out;
  ref::merge_states(r.shape, r.v, r.lse, &v_out, &lse_out);
  for (size_t i = 0; i < v_out.size(); ++i) REQUIRE(v_out[i] == double(r.v[i]));
  for (size_t i = 0; i < lse_out.size(); ++i) REQUIRE(lse_out[i] == double(r.lse[i]));
}

TEST_CASE("merge reference: empty states are left out, NaN in their v included", "[merge][reference]") {
  RandomStates r(11, 2, 4, 2, 8);
  // Token 0: states 1 and 3 empty, with NaN v. The same merge with the two
  // states dropped is the expectation.
  RandomStates kept(11, 2, 4, 2, 8);
  for (int32_t head = 0; head < 2; ++head)
    for (int32_t state : {1, 3}) {
      r.lse_at(0, state, head) = -kInf;
      for (int32_t d = 0; d < 8; ++d) r.v_at(0, state, head)[d] = kNaN;
    }
  std::vector<double> v_out, lse_out;
  ref::merge_states(r.shape, r.v, r.lse, &v_out, &lse_out);
  // Two states (0 and 2) of token 0, as their own batch of one token.
  ref::MergeShape two{1, 2, 2, 8};
  std::vector<float> v2, lse2;
  for (int32_t state : {0, 2})
    for (int32_t head = 0; head < 2; ++head) {
      lse2.push_back(kept.lse_at(0, state, head));
      v2.insert(v2.end(), kept.v_at(0, state, head), kept.v_at(0, state, head) + 8);
    }
  std::vector<double> v_two, lse_two;
  ref::merge_states(two, v2, lse2, &v_two, &lse_two);
  for (int32_t i = 0; i < 2 * 8; ++i) REQUIRE(v_out[i] == v_two[i]);
  for (int32_t head = 0; head < 2; ++head) REQUIRE(lse_out[head] == lse_two[head]);
}

TEST_CASE("merge reference: all states empty gives 0 and -inf", "[merge][reference]") {
  RandomStates r(13, 1, 3, 1, 8);
  for (int32_t state = 0; state < 3; ++state) {
    r.lse_at(0, state, 0) = -kInf;
    r.v_at(0, state, 0)[0] = kNaN;
  }
  std::vector<double> v_out, lse_out;
  ref::merge_states(r.shape, r.v, r.lse, &v_out, &lse_out);
  for (double x : v_out) REQUIRE(x == 0.0);
  REQUIRE(lse_out[0] == -double(kInf));
}

TEST_CASE("merge reference: lse NaN or +inf in any state makes the row NaN", "[merge][reference]") {
  for (float bad : {kNaN, kInf}) {
    RandomStates r(17, 1, 3, 2, 8);
    r.lse_at(0, 2, 1) = bad;  // head 1 only; head 0 stays finite
    r.lse_at(0, 0, 1) = -kInf;
    std::vector<double> v_out, lse_out;
    ref::merge_states(r.shape, r.v, r.lse, &v_out, &lse_out);
    INFO("bad lse " << bad);
    for (int32_t d = 0; d < 8; ++d) {
      REQUIRE(std::isfinite(v_out[d]));
      REQUIRE(std::isnan(v_out[8 + d]));
    }
    REQUIRE(std::isfinite(lse_out[0]));
    REQUIRE(std::isnan(lse_out[1]));
  }
}

TEST_CASE("merge reference: the tolerance grows with the states and the lse magnitude", "[merge][reference]") {
  CHECK(ref::merge_float_error_factor(1, 0.0) == 16 * 0x1p-24);
  CHECK(ref::merge_float_error_factor(4096, 10.0) < 2e-3);
  // fp32 output adds one float rounding; bf16 its own.
  CHECK(ref::merge_v_tolerance(1.0, 1.0, 0.0, 1, StateDType::kBF16) > 0x1p-8);
  CHECK(ref::merge_v_tolerance(1.0, 1.0, 0.0, 1, StateDType::kFP32) < 0x1p-18);
}

TEST_CASE("merge reference: state dtypes encode and decode", "[merge][reference]") {
  const std::vector<float> values{1.0f, -2.5f, 0.1f, 65504.0f};
  for (StateDType dtype : {StateDType::kBF16, StateDType::kFP16, StateDType::kFP32}) {
    const std::vector<uint8_t> bytes = ref::encode_states(values, dtype);
    REQUIRE(int64_t(bytes.size()) == int64_t(values.size()) * ref::state_element_bytes(dtype));
    const std::vector<float> back = ref::decode_states(bytes, dtype);
    for (size_t i = 0; i < values.size(); ++i)
      CHECK(std::abs(back[i] - values[i]) <= ref::state_unit_roundoff(dtype) * std::abs(values[i]));
  }
  CHECK(ref::decode_states(ref::encode_states({0.1f}, StateDType::kFP32), StateDType::kFP32)[0] == 0.1f);
}

// ----------------------------------------------------------------------------
// Validation

void require_status(const Status& status, StatusCode code, std::initializer_list<const char*> fragments = {}) {
  INFO("message: " << status.message);
  REQUIRE(std::string(status_code_name(status.code)) == status_code_name(code));
  for (const char* fragment : fragments) CHECK_THAT(status.message, Catch::Contains(fragment));
}

// Fake, 16-byte aligned device addresses 1 MiB apart: validation never
// dereferences them, and every case here fails before a launch.
template <typename T = void>
T* fake(int slot) {
  return reinterpret_cast<T*>(uintptr_t(slot) << 20);
}

// 4 tokens, 3 states, 2 heads, head_dim 64, fp32 in, bf16 out: valid.
MergeStatesTensors valid_states() {
  MergeStatesTensors t;
  t.v_dtype = StateDType::kFP32;
  t.out_dtype = StateDType::kBF16;
  t.num_states = 3;
  t.num_heads = 2;
  t.head_dim = 64;
  t.num_tokens = 4;
  t.v = fake(1);
  t.lse = fake<const float>(2);
  t.v_out = fake(3);
  t.lse_out = fake<float>(4);
  return t;
}

MergeStateTensors valid_state() {
  MergeStateTensors t;
  t.v_dtype = StateDType::kBF16;
  t.out_dtype = StateDType::kFP16;
  t.num_heads = 2;
  t.head_dim = 40;
  t.num_tokens = 4;
  t.v_a = fake(1);
  t.lse_a = fake<const float>(2);
  t.v_b = fake(3);
  t.lse_b = fake<const float>(4);
  t.v_out = fake(5);
  t.lse_out = fake<float>(6);
  return t;
}

Status run(const MergeStatesTensors& t) { return merge_states(t, nullptr); }
Status run(const MergeStateTensors& t) { return merge_state(t, nullptr); }

// The rules both entry points share, on either tensor struct.
template <typename Tensors>
void check_shared_rules(Tensors (*valid)()) {
  const StatusCode invalid = StatusCode::kInvalidArgument;
  Tensors t = valid();
  t.v_dtype = static_cast<StateDType>(3);
  require_status(run(t), invalid, {"tensors.v_dtype = 3", "not a StateDType"});
  t = valid();
  t.out_dtype = static_cast<StateDType>(-1);
  require_status(run(t), invalid, {"tensors.out_dtype = -1", "not a StateDType"});
  for (int32_t head_dim : {0, 4, 12, 1032, -8}) {
    t = valid();
    t.head_dim = head_dim;
    require_status(run(t), invalid, {("tensors.head_dim = " + std::to_string(head_dim)).c_str(), "[8, 1024]"});
  }
  t = valid();
  t.num_heads = 0;
  require_status(run(t), invalid, {"tensors.num_heads = 0"});
  t = valid();
  t.num_tokens = -1;
  require_status(run(t), invalid, {"tensors.num_tokens = -1"});
  t = valid();
  t.num_heads = 65536;
  t.num_tokens = 32768;  // 2^31 rows
  require_status(run(t), invalid, {"tensors.num_tokens * num_heads = 32768 * 65536", "INT32_MAX"});
  t = valid();
  t.v_out = nullptr;
  require_status(run(t), invalid, {"tensors.v_out is null"});
  t = valid();
  t.v_out = fake<char>(3) + 8;
  require_status(run(t), invalid, {"tensors.v_out", "16-byte aligned"});
  t = valid();
  t.lse_out = fake<float>(6) + 1;
  require_status(run(t), invalid, {"tensors.lse_out", "16-byte aligned"});
  // An empty batch launches nothing: null pointers are fine then.
  t = Tensors{};
  t.num_heads = 2;
  t.head_dim = 64;
  if constexpr (std::is_same_v<Tensors, MergeStatesTensors>) t.num_states = 1;
  require_status(run(t), StatusCode::kOk);
}

TEST_CASE("merge validation: dtypes, head_dim, heads, tokens, row limit, output pointers", "[merge][validation]") {
  check_shared_rules(valid_states);
  check_shared_rules(valid_state);
}

TEST_CASE("merge validation: every head_dim that is a multiple of 8 in [8, 1024] is accepted", "[merge][validation]") {
  // Validation passes, so the empty batch returns Ok.
  for (int32_t head_dim = 8; head_dim <= 1024; head_dim += 8) {
    MergeStatesTensors t = valid_states();
    t.head_dim = head_dim;
    t.num_tokens = 0;
    INFO("head_dim " << head_dim);
    require_status(run(t), StatusCode::kOk);
  }
}

TEST_CASE("merge validation: num_states is in [1, 4096]", "[merge][validation]") {
  for (int32_t states : {0, -1, 4097}) {
    MergeStatesTensors t = valid_states();
    t.num_states = states;
    require_status(run(t), StatusCode::kInvalidArgument,
                   {("tensors.num_states = " + std::to_string(states)).c_str(), "[1, 4096]"});
  }
  MergeStatesTensors t = valid_states();
  t.num_states = 4096;
  t.num_tokens = 0;
  require_status(run(t), StatusCode::kOk);
}

TEST_CASE("merge validation: input pointers", "[merge][validation]") {
  const StatusCode invalid = StatusCode::kInvalidArgument;
  MergeStatesTensors s = valid_states();
  s.v = nullptr;
  require_status(run(s), invalid, {"tensors.v is null but holds 1536 elements"});  // 4 · 3 · 2 · 64
  s = valid_states();
  s.lse = nullptr;
  require_status(run(s), invalid, {"tensors.lse is null but holds 24 elements"});
  s = valid_states();
  s.v = fake<char>(1) + 4;
  require_status(run(s), invalid, {"tensors.v", "16-byte aligned"});
  s = valid_states();
  s.lse = fake<const float>(2) + 2;
  require_status(run(s), invalid, {"tensors.lse", "16-byte aligned"});

  const char* names[] = {"tensors.v_a", "tensors.lse_a", "tensors.v_b", "tensors.lse_b"};
  for (int which = 0; which < 4; ++which) {
    MergeStateTensors t = valid_state();
    const void** pointers[] = {&t.v_a, reinterpret_cast<const void**>(&t.lse_a), &t.v_b,
                               reinterpret_cast<const void**>(&t.lse_b)};
    *pointers[which] = nullptr;
    require_status(run(t), invalid, {(std::string(names[which]) + " is null").c_str()});
    t = valid_state();
    *pointers[which] = fake<char>(which + 1) + 8;
    require_status(run(t), invalid, {names[which], "16-byte aligned"});
  }
}

TEST_CASE("merge validation: outputs overlap no input and not each other", "[merge][validation]") {
  const StatusCode invalid = StatusCode::kInvalidArgument;
  MergeStatesTensors s = valid_states();
  s.v_out = const_cast<void*>(s.v);  // in place
  require_status(run(s), invalid, {"tensors.v_out", "overlaps tensors.v "});
  s = valid_states();
  s.lse_out = const_cast<float*>(s.lse) + 4;  // inside lse
  require_status(run(s), invalid, {"tensors.lse_out", "overlaps tensors.lse "});
  s = valid_states();
  s.lse_out = reinterpret_cast<float*>(static_cast<char*>(s.v_out) + 64);  // inside v_out
  require_status(run(s), invalid, {"tensors.v_out", "overlaps tensors.lse_out"});

  MergeStateTensors t = valid_state();
  t.v_out = const_cast<void*>(t.v_b);
  require_status(run(t), invalid, {"tensors.v_out", "overlaps tensors.v_b"});
  t = valid_state();
  t.lse_out = const_cast<float*>(t.lse_a);
  require_status(run(t), invalid, {"tensors.lse_out", "overlaps tensors.lse_a"});
  // Two inputs may share memory (merging a state with itself).
  t = valid_state();
  t.v_b = t.v_a;
  t.lse_b = t.lse_a;
  t.num_tokens = 0;
  require_status(run(t), StatusCode::kOk);
}

// ----------------------------------------------------------------------------
// C API

template <typename T>
T initialised(int (*init)(T*, size_t)) {
  T value;
  REQUIRE(init(&value, sizeof value) == PTXATTN_STATUS_OK);
  return value;
}

// (Another layout and NULL structs: tests/cpu/test_c_api.cpp, with every struct.)
TEST_CASE("merge c api: _init gives the C++ defaults", "[merge][c_api]") {
  const ptxattn_merge_states_tensors s = initialised(ptxattn_merge_states_tensors_init);
  CHECK(s.struct_size == sizeof s);
  CHECK(s.v_dtype == PTXATTN_STATE_DTYPE_BF16);
  CHECK(s.out_dtype == PTXATTN_STATE_DTYPE_BF16);
  CHECK((s.num_states == 0 && s.num_heads == 0 && s.head_dim == 0 && s.num_tokens == 0));
  CHECK((s.v == nullptr && s.lse == nullptr && s.v_out == nullptr && s.lse_out == nullptr));
  const ptxattn_merge_state_tensors t = initialised(ptxattn_merge_state_tensors_init);
  CHECK(t.struct_size == sizeof t);
  CHECK((t.v_dtype == PTXATTN_STATE_DTYPE_BF16 && t.out_dtype == PTXATTN_STATE_DTYPE_BF16));
  CHECK((t.v_a == nullptr && t.lse_b == nullptr && t.v_out == nullptr && t.lse_out == nullptr));
}

TEST_CASE("merge c api: each C call answers as its C++ twin, message included", "[merge][c_api]") {
  const MergeStatesTensors cpp_s = valid_states();
  ptxattn_merge_states_tensors s = initialised(ptxattn_merge_states_tensors_init);
  s.v_dtype = PTXATTN_STATE_DTYPE_FP32;
  s.out_dtype = 7;
  s.num_states = cpp_s.num_states, s.num_heads = cpp_s.num_heads, s.head_dim = cpp_s.head_dim;
  s.num_tokens = cpp_s.num_tokens;
  s.v = cpp_s.v, s.lse = cpp_s.lse, s.v_out = cpp_s.v_out, s.lse_out = cpp_s.lse_out;
  MergeStatesTensors bad_s = cpp_s;
  bad_s.out_dtype = static_cast<StateDType>(7);
  CHECK(ptxattn_merge_states(&s, nullptr) == PTXATTN_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(ptxattn_last_error_message()) == run(bad_s).message);
  s.out_dtype = PTXATTN_STATE_DTYPE_BF16;
  s.num_states = 5000;
  bad_s = cpp_s;
  bad_s.num_states = 5000;
  CHECK(ptxattn_merge_states(&s, nullptr) == PTXATTN_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(ptxattn_last_error_message()) == run(bad_s).message);

  const MergeStateTensors cpp_t = valid_state();
  ptxattn_merge_state_tensors t = initialised(ptxattn_merge_state_tensors_init);
  t.v_dtype = PTXATTN_STATE_DTYPE_BF16, t.out_dtype = PTXATTN_STATE_DTYPE_FP16;
  t.num_heads = cpp_t.num_heads, t.head_dim = cpp_t.head_dim, t.num_tokens = cpp_t.num_tokens;
  t.v_a = cpp_t.v_a, t.lse_a = cpp_t.lse_a, t.v_b = cpp_t.v_b, t.lse_b = cpp_t.lse_b;
  t.v_out = const_cast<void*>(cpp_t.v_a), t.lse_out = cpp_t.lse_out;
  MergeStateTensors bad_t = cpp_t;
  bad_t.v_out = const_cast<void*>(cpp_t.v_a);
  CHECK(ptxattn_merge_state(&t, nullptr) == PTXATTN_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(ptxattn_last_error_message()) == run(bad_t).message);
  t.v_out = cpp_t.v_out;
  t.num_tokens = 0;
  CHECK(ptxattn_merge_state(&t, nullptr) == PTXATTN_STATUS_OK);
}

TEST_CASE("merge: without a GPU, a valid merge returns no_device", "[merge][no_device]") {
  int count = 0;
  const bool gpu = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  if (gpu) WARN("a CUDA GPU is present: the merge must succeed; the no_device status is checked without one");
  // Real buffers with a GPU; without one the launch fails before anything is read.
  constexpr int64_t kTokens = 2, kHeads = 2, kHeadDim = 8;
  const size_t v_bytes = kTokens * kHeads * kHeadDim * sizeof(float);  // the largest tensor; lse ones use less
  void* buffers[6] = {};
  alignas(16) static float host[6][kTokens * kHeads * kHeadDim];
  for (int i = 0; i < 6; ++i) {
    if (gpu) {
      REQUIRE(cudaMalloc(&buffers[i], v_bytes) == cudaSuccess);
      REQUIRE(cudaMemset(buffers[i], 0, v_bytes) == cudaSuccess);
    } else {
      buffers[i] = host[i];
    }
  }
  MergeStateTensors t;
  t.v_dtype = t.out_dtype = StateDType::kFP32;
  t.num_heads = kHeads, t.head_dim = kHeadDim, t.num_tokens = kTokens;
  t.v_a = buffers[0], t.lse_a = static_cast<const float*>(buffers[1]);
  t.v_b = buffers[2], t.lse_b = static_cast<const float*>(buffers[3]);
  t.v_out = buffers[4], t.lse_out = static_cast<float*>(buffers[5]);
  const Status status = merge_state(t, nullptr);
  INFO("message: " << status.message);
  if (gpu) {
    CHECK(status.ok());
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    for (void* b : buffers) CHECK(cudaFree(b) == cudaSuccess);
  } else {
    CHECK(status.code == StatusCode::kNoDevice);
  }
}

}  // namespace
