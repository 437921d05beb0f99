// Smallest end-to-end use of ptxattn: one causal, paged bf16 prefill of two
// requests (GQA: 8 query heads over 2 K/V heads, head_dim 128, page size 16).
//
// Build against an installed ptxattn (see examples/meson.build):
//   c++ -std=c++17 prefill_example.cpp $(pkg-config --cflags --libs ptxattn)
// Exit code: 0 ok, 3 no usable SM90 GPU, 1 any other error.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ptxattn/ptxattn.hpp>
#include <vector>

namespace {

uint16_t float_to_bf16(float x) {  // round to nearest even; inputs here are finite
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

float bf16_to_float(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

int fail(const char* what, const ptxattn::Status& status) {
  std::printf("%s: %s: %s\n", what, ptxattn::status_code_name(status.code), status.message.c_str());
  return status.code == ptxattn::StatusCode::kNoDevice ? 3 : 1;
}

int fail(const char* what, cudaError_t err) {
  std::printf("%s: %s (%s)\n", what, cudaGetErrorName(err), cudaGetErrorString(err));
  return err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ? 3 : 1;
}

// Device copy of a host vector, freed on scope exit.
struct DeviceCopy {
  void* ptr = nullptr;
  cudaError_t err;
  template <typename T>
  explicit DeviceCopy(const std::vector<T>& host) {
    err = cudaMalloc(&ptr, host.size() * sizeof(T));
    if (err == cudaSuccess) err = cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  DeviceCopy(const DeviceCopy&) = delete;
  DeviceCopy& operator=(const DeviceCopy&) = delete;
  ~DeviceCopy() { cudaFree(ptr); }
};

}  // namespace

int main() {
  using namespace ptxattn;
  PrefillConfig config;
  config.dtype = DType::kBF16;
  config.num_qo_heads = 8;
  config.num_kv_heads = 2;
  config.head_dim = 128;
  config.kv_format = KvFormat::kPaged;
  config.kv_layout = KvLayout::kNHD;
  config.page_size = 16;
  config.num_pages = 8;
  config.options.causal = true;

  // Request 0: 20 queries over 37 keys (pages 5, 2, 7; 5 rows in the last).
  // Request 1: 9 queries over 16 keys (page 0, full).
  const std::vector<int32_t> qo_indptr{0, 20, 29}, kv_indptr{0, 3, 4}, kv_indices{5, 2, 7, 0}, last_page_len{5, 16};
  const BatchIndices indices{2, qo_indptr.data(), kv_indptr.data(), kv_indices.data(), last_page_len.data()};

  PrefillPlan plan;
  if (Status s = plan_prefill(config, indices, plan); !s.ok()) return fail("plan_prefill", s);

  const int64_t num_q_tokens = qo_indptr.back();
  const size_t q_elements = size_t(num_q_tokens) * config.num_qo_heads * config.head_dim;
  const size_t kv_elements = size_t(config.num_pages) * config.page_size * config.num_kv_heads * config.head_dim;
  std::vector<uint16_t> q(q_elements), k(kv_elements), v(kv_elements);
  for (size_t i = 0; i < q_elements; ++i) q[i] = float_to_bf16(std::sin(0.37f * float(i)));
  for (size_t i = 0; i < kv_elements; ++i) {
    k[i] = float_to_bf16(std::cos(0.11f * float(i)));
    v[i] = float_to_bf16(std::sin(0.05f * float(i)));
  }
  const DeviceCopy dq(q), dk(k), dv(v), dout{std::vector<uint16_t>(q_elements)};
  for (const DeviceCopy* d : {&dq, &dk, &dv, &dout})
    if (d->err != cudaSuccess) return fail("device allocation", d->err);

  const PrefillTensors tensors{dq.ptr, dk.ptr, dv.ptr, dout.ptr, nullptr, num_q_tokens, config.num_pages};
  if (Status s = run_prefill(plan, tensors, /*stream=*/nullptr); !s.ok()) return fail("run_prefill", s);
  if (cudaError_t err = cudaDeviceSynchronize(); err != cudaSuccess) return fail("cudaDeviceSynchronize", err);

  std::vector<uint16_t> out(q_elements);
  if (cudaError_t err = cudaMemcpy(out.data(), dout.ptr, q_elements * sizeof(uint16_t), cudaMemcpyDeviceToHost);
      err != cudaSuccess)
    return fail("cudaMemcpy", err);
  std::printf("run_prefill: ok (%lld work tiles); o[0][0][0..3] = %.4f %.4f %.4f %.4f\n",
              (long long)plan.num_work_tiles(), bf16_to_float(out[0]), bf16_to_float(out[1]), bf16_to_float(out[2]),
              bf16_to_float(out[3]));
  return 0;
}
