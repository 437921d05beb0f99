// Runs a generated prefill case on the GPU the way every test, the validator
// and the pollution matrix must: inputs uploaded once; before each run the
// output and LSE buffers, and the plan's split-KV workspace, are filled with
// NaN and an optional polluter runs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/testdata.hpp"
#include "tests/common/gpu_test.hpp"

namespace ptxattn::testing {

// A schedule to force, and its name in reports.
struct ScheduleChoice {
  WorkSchedule schedule;
  int32_t max_ctas;  // config.max_ctas
  const char* name;
};

// Every case runs under each: one item per CTA; persistent, one CTA per SM
// (small cases give most CTAs one item); persistent on 2 CTAs, so that CTAs
// walk many items and the pipeline's phases carry across them.
constexpr ScheduleChoice kScheduleChoices[] = {{WorkSchedule::kOneItemPerCta, 0, "one-item-per-cta"},
                                               {WorkSchedule::kPersistent, 0, "persistent"},
                                               {WorkSchedule::kPersistent, 2, "persistent-2-ctas"},
                                               {WorkSchedule::kDynamic, 0, "dynamic"},
                                               {WorkSchedule::kDynamic, 2, "dynamic-2-ctas"}};

struct PrefillRun {
  Status status;                // plan or run failure (outputs empty then)
  KvLoadPath path = KvLoadPath::kAuto;  // the path the plan chose
  WorkSchedule schedule = WorkSchedule::kAuto;  // the schedule the plan chose
  int32_t block_kv = 0;                         // the KV block the plan chose (PrefillPlan::chosen_block_kv)
  int32_t kv_splits = 0;                        // the KV chunks the plan chose (PrefillPlan::chosen_kv_splits)
  int32_t tile_heads = 0;                       // qo heads per tile the plan chose (PrefillPlan::chosen_tile_heads)
  int32_t kv_stages = 0;                        // the K/V ring the plan chose (PrefillPlan::chosen_kv_stages)
  int64_t num_ctas = 0;                         // the plan's grid
  int64_t num_work_items = 0;                   // 128-row tiles x head groups
  std::vector<uint16_t> out;    // [num_q_tokens][H_qo][D] raw bits
  std::vector<float> lse;       // [num_q_tokens][H_qo]; empty when the case's return_lse is off
  int64_t lse_written_at = -1;  // return_lse off: the first LSE word the run changed (-1: none)
  float gpu_ms = 0.0f;          // run_prefill alone: CUDA events just before and after it

  // The LSE to compare (null when return_lse is off), and "" unless the run
  // wrote LSE it was not asked for.
  const float* lse_or_null() const { return lse.empty() ? nullptr : lse.data(); }
  std::string lse_contract_failure() const;
};

class DevicePrefillCase {
 public:
  explicit DevicePrefillCase(const HostCase& c);

  // Plans for `path`, `schedule`, `kv_block`, `kv_splits` (config.kv_splits:
  // 0 the plan's rule), `gqa_packing` and `kv_stages` (0: the rule), poisons o, lse and the split-KV
  // workspace with NaN, calls
  // `before_run` (a polluter; it may launch kernels), runs on the default
  // stream, synchronises and downloads. The case's options decide whether LSE
  // is written; when they do not, the LSE buffer (as `before_run` left it)
  // must come back unchanged.
  PrefillRun run(KvLoadPath path, const std::function<void()>& before_run = {},
                 const ScheduleChoice& schedule = {WorkSchedule::kAuto, 0, "auto"}, KvBlock kv_block = KvBlock::kAuto,
                 int32_t kv_splits = 0, GqaPacking gqa_packing = GqaPacking::kAuto, int32_t kv_stages = 0);

  const HostCase& host() const { return host_; }
  DeviceBuffer& q() { return q_; }
  DeviceBuffer& k() { return k_; }
  DeviceBuffer& v() { return v_; }
  DeviceBuffer& out() { return out_; }
  DeviceBuffer& lse() { return lse_; }
  PrefillTensors tensors() const;

 private:
  const HostCase& host_;
  DeviceBuffer q_, k_, v_, out_, lse_;
};

// "tma", "gather" or "auto".
const char* load_path_name(KvLoadPath path);

// The load paths a case is run through: gather, then TMA wherever it can serve the case too.
std::vector<KvLoadPath> load_paths_for(const HostCase& c);


}  // namespace ptxattn::testing
