// See prefill_runner.hpp.
#include "tests/common/prefill_runner.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>

#include "prefill_plan.hpp"  // the split-KV workspace

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

PrefillRun DevicePrefillCase::run(KvLoadPath path, const std::function<void()>& before_run,
                                  const ScheduleChoice& schedule, KvBlock kv_block, int32_t kv_splits,
                                  GqaPacking gqa_packing, int32_t kv_stages) {
  PrefillRun result;
  PrefillConfig config = host_.config;
  config.load_path = path;
  config.schedule = schedule.schedule;
  config.max_ctas = schedule.max_ctas;
  config.kv_block = kv_block;
  config.kv_splits = kv_splits;
  config.gqa_packing = gqa_packing;
  config.kv_stages = kv_stages;
  PrefillPlan plan;
  result.status = plan_prefill(config, host_.indices(), plan);
  if (!result.status.ok()) return result;
  result.path = plan.chosen_load_path();
  result.schedule = plan.chosen_schedule();
  result.block_kv = plan.chosen_block_kv();
  result.kv_splits = plan.chosen_kv_splits();
  result.tile_heads = plan.chosen_tile_heads();
  result.kv_stages = plan.chosen_kv_stages();
  result.num_ctas = plan.num_ctas();
  result.num_work_items = plan.num_work_tiles() * (config.num_qo_heads / result.tile_heads);

  out_.fill_u32(kNaNWord);
  lse_.fill_u32(kNaNWord);
  if (result.kv_splits > 1) {
    // All-ones words are NaN in float32: a state the kernel does not write
    // reaches the merge as NaN.
    // The regions as the layout places them (each up to where the next
    // begins): the states' rows depend on each tile's chunks.
    PrefillPlanImpl& impl = *plan.impl();
    const detail::PlanLayout& at = impl.layout;
    PTXATTN_CUDA_CHECK(cudaMemset(impl.region<float>(at.partial_o), 0xFF, at.partial_lse - at.partial_o));
    PTXATTN_CUDA_CHECK(cudaMemset(impl.region<float>(at.partial_lse), 0xFF, at.work_counter - at.partial_lse));
  }
  if (result.schedule == WorkSchedule::kDynamic && result.num_work_items > 0) {
    // The claim counter as a run that does not zero it would find it after
    // other writes: a count past every item, so no item would run.
    PrefillPlanImpl& impl = *plan.impl();
    const uint32_t poison = kNaNWord;
    PTXATTN_CUDA_CHECK(cudaMemcpy(impl.region<int32_t>(impl.layout.work_counter), &poison, sizeof(poison),
                                  cudaMemcpyHostToDevice));
  }
  if (before_run) before_run();
  const size_t lse_count = size_t(host_.num_q_tokens) * config.num_qo_heads;
  const bool lse_requested = config.options.return_lse;
  const std::vector<uint32_t> lse_before = lse_requested ? std::vector<uint32_t>() : download_vector<uint32_t>(lse_, lse_count);
  const CudaEvent start, stop;
  PTXATTN_CUDA_CHECK(cudaEventRecord(start.get(), nullptr));
  result.status = run_prefill(plan, tensors(), nullptr);
  if (!result.status.ok()) return result;
  PTXATTN_CUDA_CHECK(cudaEventRecord(stop.get(), nullptr));
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
  result.gpu_ms = elapsed_ms(start, stop);

  result.out = download_vector<uint16_t>(out_, host_.q.size());
  if (lse_requested) {
    result.lse = download_vector<float>(lse_, lse_count);
  } else {
    const std::vector<uint32_t> lse_after = download_vector<uint32_t>(lse_, lse_count);
    const auto changed = std::mismatch(lse_before.begin(), lse_before.end(), lse_after.begin()).first;
    if (changed != lse_before.end()) result.lse_written_at = changed - lse_before.begin();
  }
  return result;
}

std::string PrefillRun::lse_contract_failure() const {
  if (lse_written_at < 0) return "";
  return "config.options.return_lse is off, but lse[" + std::to_string(lse_written_at) +
         "] (token * num_qo_heads + head) was written";
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
