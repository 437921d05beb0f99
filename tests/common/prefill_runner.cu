// See prefill_runner.hpp.
#include "tests/common/prefill_runner.hpp"

#include <cuda_runtime_api.h>

namespace ptxattn::testing {

namespace {
constexpr uint32_t kNaNWord = pattern::kQuietNaN;  // also a NaN as f32 (lse)

size_t bytes_of(const std::vector<uint16_t>& v) { return v.size() * sizeof(uint16_t); }
}  // namespace

DevicePrefillCase::DevicePrefillCase(const HostCase& c)
    : host_(c),
      q_(std::max<size_t>(bytes_of(c.q), 16)),
      k_(std::max<size_t>(bytes_of(c.k), 16)),
      v_(std::max<size_t>(bytes_of(c.v), 16)),
      out_(std::max<size_t>(bytes_of(c.q), 16)),
      lse_(std::max<size_t>(size_t(c.num_q_tokens) * c.config.num_qo_heads * sizeof(float), 16)) {
  if (!c.q.empty()) q_.upload(c.q.data(), bytes_of(c.q));
  if (!c.k.empty()) k_.upload(c.k.data(), bytes_of(c.k));
  if (!c.v.empty()) v_.upload(c.v.data(), bytes_of(c.v));
}

PrefillTensors DevicePrefillCase::tensors() const {
  PrefillTensors t;
  t.q = q_.get(), t.k = k_.get(), t.v = v_.get(), t.o = out_.get(), t.lse = lse_.as<float>();
  t.num_q_tokens = host_.num_q_tokens;
  t.num_kv_rows = host_.num_kv_rows;
  return t;
}

PrefillRun DevicePrefillCase::run(KvLoadPath path, const std::function<void()>& before_run) {
  PrefillRun result;
  PrefillConfig config = host_.config;
  config.load_path = path;
  config.options.return_lse = true;
  PrefillPlan plan;
  result.status = plan_prefill(config, host_.indices(), plan);
  if (!result.status.ok()) return result;
  result.path = plan.chosen_load_path();

  out_.fill_u32(kNaNWord);
  lse_.fill_u32(kNaNWord);
  if (before_run) before_run();
  const CudaEvent start, stop;
  PTXATTN_CUDA_CHECK(cudaEventRecord(start.get(), nullptr));
  result.status = run_prefill(plan, tensors(), nullptr);
  if (!result.status.ok()) return result;
  PTXATTN_CUDA_CHECK(cudaEventRecord(stop.get(), nullptr));
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
  result.gpu_ms = elapsed_ms(start, stop);

  result.out.resize(host_.q.size());
  result.lse.resize(size_t(host_.num_q_tokens) * config.num_qo_heads);
  if (!result.out.empty()) out_.download(result.out.data(), bytes_of(result.out));
  if (!result.lse.empty()) lse_.download(result.lse.data(), result.lse.size() * sizeof(float));
  return result;
}

const char* load_path_name(KvLoadPath path) {
  return path == KvLoadPath::kTma ? "tma" : path == KvLoadPath::kGather ? "gather" : "auto";
}

std::vector<KvLoadPath> load_paths_for(const HostCase& c) {
  std::vector<KvLoadPath> paths{KvLoadPath::kGather};
  if (tma_load_path_supported(c.config)) paths.push_back(KvLoadPath::kTma);
  return paths;
}

}  // namespace ptxattn::testing
