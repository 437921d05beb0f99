// ptxattn-validate: the kernels it checks, behind one interface, so that
// repeats, polluters and bit-identity checks are written once (validate.cpp).
//   prefill  run_prefill through one load path and schedule, against the
//            attention references (reference/compare.hpp)
//   rope     apply_rope, or build_rope_cos_sin_cache +
//            apply_rope_with_cos_sin_cache, against reference/rope.hpp
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/compare.hpp"
#include "reference/testdata.hpp"
#include "tests/common/gpu_test.hpp"
#include "tests/common/polluters.hpp"
#include "tests/common/prefill_runner.hpp"
#include "tools/validate_cli.hpp"

namespace ptxattn::validator {

// How far one run's outputs are from the exact reference.
struct Metrics {
  int64_t elements = 0;
  double max_abs_err = 0.0;
  double max_rel_err = 0.0;
  double max_err_over_tol = 0.0;  // > 1 somewhere on a failure
  int64_t nonfinite = 0;          // NaN/Inf where a finite value is expected
  int64_t bad = 0;                // elements over their tolerance (non-finite included)
  std::string detail;             // the first bad element(s); "" when none

  bool pass() const { return bad == 0; }
};

// The raw bits one run produced: 16-bit outputs, then float outputs (LSE,
// the cos/sin cache). Compared bit for bit across repeats, polluters, paths
// and schedules.
struct KernelOutput {
  Status status;
  std::string path;      // the load path the plan chose ("-" for RoPE)
  std::string schedule;  // the work schedule the plan chose ("-" for RoPE)
  int32_t block_kv = 0;  // the KV block the plan chose (0 for RoPE)
  float gpu_ms = 0.0f;
  std::vector<uint16_t> values16;
  std::vector<float> values32;
  std::string contract_failure;  // "" or what the kernel wrote that it must not have (counted as bad)
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  // Runs once: outputs poisoned, then `polluter` (null: none) with `seed`, then the kernel.
  virtual KernelOutput run(const testing::Polluter* polluter, uint64_t seed) = 0;
  virtual Metrics check(const KernelOutput& output) const = 0;
  // Where element `index` of values16 / values32 is, in words.
  virtual std::string locate16(int64_t index) const = 0;
  virtual std::string locate32(int64_t index) const = 0;
  virtual bool accepts(testing::Polluter polluter) const = 0;
};

// "" when a and b have the same bits, else where they first differ.
std::string first_difference(const Kernel& kernel, const KernelOutput& a, const KernelOutput& b);

// The plan options --kv-splits, --gqa-packing and --kv-stages force on every prefill run.
struct PlanOptions {
  int32_t kv_splits = 0;
  GqaPacking gqa_packing = GqaPacking::kAuto;
  int32_t kv_stages = 0;
};

// run_prefill through `path` under `schedule` with `plan`'s options;
// `device` and `refs` must outlive the kernel.
std::unique_ptr<Kernel> make_prefill_kernel(testing::DevicePrefillCase& device, const testing::References& refs,
                                            KvLoadPath path, const testing::ScheduleChoice& schedule,
                                            const PlanOptions& plan);

// "auto", "one-item-per-cta", "persistent" or "dynamic" (the --schedule values).
const char* schedule_name(WorkSchedule schedule);

// The host side of a RoPE check (inputs, positions, exact outputs): CPU only,
// so it can be prepared while the GPU runs something else.
struct RopeHost {
  RopeConfig config;
  bool use_cache = false;
  DType dtype = DType::kBF16;
  int32_t head_dim = 0;
  int32_t num_qo_heads = 0;
  int32_t num_kv_heads = 0;
  std::vector<int32_t> qo_indptr;        // token ranges of the requests
  std::vector<int32_t> offsets;          // position of each request's first token
  std::vector<int32_t> positions;        // per token
  int32_t max_position = 0;              // cache rows: every position + 1
  std::vector<uint16_t> q, k;            // inputs [tokens][heads][head_dim]
  std::vector<double> q_exact, k_exact;  // exact rotation (fp64, before dtype rounding)
  std::vector<double> cache_exact;       // use_cache: [max_position][rotary_dim]

  int64_t num_tokens() const { return int64_t(qo_indptr.back()); }
};

RopeHost make_rope_host(const testing::HostCase& c, const RopeSpec& spec);

// What make_rope_host would use, without computing anything large.
RopeConfig rope_config(const RopeSpec& spec, int32_t head_dim);
std::vector<int32_t> rope_request_offsets(const testing::HostCase& c, const RopeSpec& spec);

// Uploads the inputs; `host` must outlive the kernel.
std::unique_ptr<Kernel> make_rope_kernel(const RopeHost& host);

}  // namespace ptxattn::validator
