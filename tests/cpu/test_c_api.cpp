// C API (include/ptxattn/ptxattn.h): NULL arguments and C-only checks give a
// status code and a message, never a crash; messages are per thread. Runs
// without a GPU: every case but the last fails validation before any CUDA
// call; the last checks what valid calls say when there is no GPU.
#include <cuda_runtime_api.h>

#include <catch2/catch.hpp>
#include <string>
#include <thread>

#include "ptxattn/ptxattn.h"
#include "ptxattn/ptxattn.hpp"

namespace {

std::string last_message() { return ptxattn_last_error_message(); }

void require_invalid(int status, const char* fragment) {
  INFO("message: " << last_message());
  REQUIRE(std::string(ptxattn_status_name(status)) == "invalid_argument");
  CHECK_THAT(last_message(), Catch::Contains(fragment));
}

// A config that passes the C checks but not the C++ validator (no heads).
ptxattn_prefill_config default_config() {
  ptxattn_prefill_config config;
  ptxattn_prefill_config_init(&config);
  return config;
}

// A valid paged config: 2 qo heads over 1 KV head, head_dim 128, a pool of two pages of 16.
ptxattn_prefill_config small_paged_config() {
  ptxattn_prefill_config config = default_config();
  config.num_qo_heads = 2;
  config.num_kv_heads = 1;
  config.head_dim = 128;
  config.page_size = 16;
  config.num_pages = 2;
  return config;
}

}  // namespace

TEST_CASE("c api: status names", "[c_api]") {
  CHECK(std::string(ptxattn_status_name(PTXATTN_STATUS_OK)) == "ok");
  CHECK(std::string(ptxattn_status_name(PTXATTN_STATUS_INVALID_ARGUMENT)) == "invalid_argument");
  CHECK(std::string(ptxattn_status_name(PTXATTN_STATUS_UNSUPPORTED)) == "unsupported");
  CHECK(std::string(ptxattn_status_name(PTXATTN_STATUS_PLAN_MISMATCH)) == "plan_mismatch");
  CHECK(std::string(ptxattn_status_name(PTXATTN_STATUS_CUDA_ERROR)) == "cuda_error");
  CHECK(std::string(ptxattn_status_name(PTXATTN_STATUS_NO_DEVICE)) == "no_device");
  CHECK(std::string(ptxattn_status_name(PTXATTN_STATUS_INTERNAL_ERROR)) == "internal_error");
  CHECK(std::string(ptxattn_status_name(42)) == "unknown_status");
}

TEST_CASE("c api: config_init gives the C++ defaults", "[c_api]") {
  const ptxattn_prefill_config config = default_config();
  CHECK(config.dtype == PTXATTN_DTYPE_BF16);
  CHECK(config.kv_format == PTXATTN_KV_FORMAT_PAGED);
  CHECK(config.kv_layout == PTXATTN_KV_LAYOUT_NHD);
  CHECK(config.load_path == PTXATTN_KV_LOAD_PATH_AUTO);
  CHECK(config.schedule == PTXATTN_WORK_SCHEDULE_AUTO);
  CHECK(config.max_ctas == 0);
  CHECK(config.options.causal == 0);
  CHECK(config.options.window_left == -1);
  CHECK(config.options.logits_soft_cap == 0.0f);
  CHECK(config.options.sm_scale == 0.0f);
  CHECK(config.options.return_lse == 0);

  ptxattn_rope_config rope;
  ptxattn_rope_config_init(&rope);
  CHECK(rope.theta == 1e4f);
  CHECK(rope.rope_scale == 1.0f);
  CHECK(rope.interleave == 0);
  CHECK(rope.old_context_len == 8192);
}

TEST_CASE("c api: null pointers give invalid_argument and a message", "[c_api]") {
  const ptxattn_prefill_config config = default_config();
  const ptxattn_batch_indices indices{};
  const ptxattn_prefill_tensors tensors{};
  const ptxattn_rope_tensors rope_tensors{};
  const ptxattn_rope_positions positions{};
  ptxattn_rope_config rope;
  ptxattn_rope_config_init(&rope);

  require_invalid(ptxattn_prefill_plan_create(nullptr), "out is null");

  ptxattn_prefill_plan* plan = nullptr;
  REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK);
  REQUIRE(plan != nullptr);
  require_invalid(ptxattn_plan_prefill(nullptr, &config, &indices), "plan is null");
  require_invalid(ptxattn_plan_prefill(plan, nullptr, &indices), "config is null");
  require_invalid(ptxattn_plan_prefill(plan, &config, nullptr), "indices is null");
  require_invalid(ptxattn_run_prefill(nullptr, &tensors, nullptr), "plan is null");
  require_invalid(ptxattn_run_prefill(plan, nullptr, nullptr), "tensors is null");
  require_invalid(ptxattn_build_rope_cos_sin_cache(nullptr, 16, 64, nullptr, nullptr), "rope is null");
  require_invalid(ptxattn_apply_rope(nullptr, &positions, &rope, nullptr), "tensors is null");
  require_invalid(ptxattn_apply_rope(&rope_tensors, nullptr, &rope, nullptr), "positions is null");
  require_invalid(ptxattn_apply_rope(&rope_tensors, &positions, nullptr, nullptr), "rope is null");
  require_invalid(ptxattn_apply_rope_with_cos_sin_cache(nullptr, nullptr, nullptr, 16, 64, 0, nullptr),
                  "tensors is null");
  ptxattn_prefill_plan_destroy(plan);
  ptxattn_prefill_plan_destroy(nullptr);
}

TEST_CASE("c api: int32 booleans must be 0 or 1", "[c_api]") {
  ptxattn_prefill_plan* plan = nullptr;
  REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK);
  const ptxattn_batch_indices indices{};
  ptxattn_prefill_config config = default_config();
  config.options.causal = 2;
  require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.options.causal = 2 must be 0 or 1");
  config.options.causal = 0;
  config.options.return_lse = -1;
  require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.options.return_lse = -1");

  ptxattn_rope_config rope;
  ptxattn_rope_config_init(&rope);
  rope.interleave = 3;
  require_invalid(ptxattn_build_rope_cos_sin_cache(nullptr, 16, 64, &rope, nullptr), "rope.interleave = 3");
  const ptxattn_rope_tensors rope_tensors{};
  require_invalid(ptxattn_apply_rope_with_cos_sin_cache(&rope_tensors, nullptr, nullptr, 16, 64, 5, nullptr),
                  "interleave = 5");
  ptxattn_prefill_plan_destroy(plan);
}

TEST_CASE("c api: the C++ validator's message comes through", "[c_api]") {
  ptxattn_prefill_plan* plan = nullptr;
  REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK);
  const ptxattn_prefill_config config = default_config();  // num_qo_heads = 0
  const ptxattn_batch_indices indices{};
  require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.num_qo_heads = 0");
  ptxattn_prefill_plan_destroy(plan);
}

TEST_CASE("c api: schedule and max_ctas reach the C++ validator", "[c_api]") {
  ptxattn_prefill_plan* plan = nullptr;
  REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK);
  // An empty batch and a config that are valid apart from what each section breaks.
  static const int32_t kZero[] = {0};
  const ptxattn_batch_indices indices{0, kZero, kZero, nullptr, nullptr};
  ptxattn_prefill_config config = small_paged_config();
  SECTION("schedule outside the enum") {
    config.schedule = 3;
    require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.schedule = 3 is not a WorkSchedule");
    config.schedule = -1;
    require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.schedule = -1 is not a WorkSchedule");
  }
  SECTION("negative max_ctas") {
    config.schedule = PTXATTN_WORK_SCHEDULE_PERSISTENT;
    config.max_ctas = -5;
    require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.max_ctas = -5 is negative");
  }
  SECTION("max_ctas with one item per CTA") {
    config.schedule = PTXATTN_WORK_SCHEDULE_ONE_ITEM_PER_CTA;
    config.max_ctas = 7;
    require_invalid(ptxattn_plan_prefill(plan, &config, &indices),
                    "config.max_ctas = 7 limits the persistent schedule, but config.schedule is kOneItemPerCta");
  }
  ptxattn_prefill_plan_destroy(plan);
}

TEST_CASE("c api: the last error message belongs to the calling thread", "[c_api]") {
  require_invalid(ptxattn_prefill_plan_create(nullptr), "out is null");
  std::string seen_by_other_thread = "unset";
  std::thread([&] { seen_by_other_thread = last_message(); }).join();
  CHECK(seen_by_other_thread.empty());
  CHECK_THAT(last_message(), Catch::Contains("out is null"));
}

namespace {

// A valid batch for plan_prefill and plan_append_paged_kv: one request of 20
// keys in pages 1 and 0 of 16 (4 tokens in the last), 3 queries, the last 2
// tokens appended.
constexpr int32_t kQoIndptr[] = {0, 3}, kKvIndptr[] = {0, 2}, kKvIndices[] = {1, 0}, kLastPageLen[] = {4};
constexpr int32_t kAppendIndptr[] = {0, 2};

// What a no_device message must say on this machine: an NVIDIA driver older
// than the runtime is named as such, anything else is a missing GPU.
std::string expected_no_device_words() {
  int count = 0, driver = 0;
  const bool old_driver =
      cudaGetDeviceCount(&count) == cudaErrorInsufficientDriver && cudaDriverGetVersion(&driver) == cudaSuccess &&
      driver > 0;
  return old_driver ? "the NVIDIA driver is too old" : "no CUDA GPU is available";
}

// A no_device status a user can act on: what is missing, in plain words and
// with the runtime's own wording, but no source location.
void check_no_device(int status, const std::string& message) {
  INFO("message: " << message);
  CHECK(std::string(ptxattn_status_name(status)) == "no_device");
  CHECK_THAT(message, Catch::StartsWith(expected_no_device_words()));
  CHECK_THAT(message, Catch::Contains("(the CUDA runtime reports: "));
  CHECK_THAT(message, !Catch::Contains(".cpp:") && !Catch::Contains(".cu:"));
}

void check_ok(int status, const std::string& message) {
  INFO("message: " << message);
  CHECK(std::string(ptxattn_status_name(status)) == "ok");
}

}  // namespace

TEST_CASE("c api: without a GPU, plans and RoPE calls return no_device and say so plainly", "[c_api][no_device]") {
  int count = 0;
  const bool gpu = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  if (gpu) WARN("a CUDA GPU is present: the calls must succeed; the no_device messages are checked without one");
  const auto check = gpu ? check_ok : check_no_device;

  ptxattn_prefill_config config = small_paged_config();
  const ptxattn_batch_indices indices{1, kQoIndptr, kKvIndptr, kKvIndices, kLastPageLen};
  ptxattn_prefill_plan* plan = nullptr;
  REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK);
  const int planned = ptxattn_plan_prefill(plan, &config, &indices);
  check(planned, planned == PTXATTN_STATUS_OK ? "" : last_message());
  ptxattn_prefill_plan_destroy(plan);

  ptxattn::AppendConfig append_config;
  append_config.num_kv_heads = 1;
  append_config.head_dim = 128;
  append_config.page_size = 16;
  append_config.num_pages = 2;
  ptxattn::AppendIndices append_indices;
  append_indices.num_requests = 1;
  append_indices.append_indptr = kAppendIndptr;
  append_indices.kv_indptr = kKvIndptr;
  append_indices.kv_indices = kKvIndices;
  append_indices.kv_last_page_len = kLastPageLen;
  ptxattn::AppendPlan append_plan;
  const ptxattn::Status appended = ptxattn::plan_append_paged_kv(append_config, append_indices, append_plan);
  check(int(appended.code), appended.message);

  // The cos/sin cache build launches a kernel straight away. Without a GPU
  // the launch fails before anything could read the cache, so a host buffer
  // stands in for it.
  constexpr int32_t kPositions = 4, kRotaryDim = 64;
  alignas(16) static float host_cache[kPositions * kRotaryDim];
  void* device_cache = nullptr;
  if (gpu) REQUIRE(cudaMalloc(&device_cache, sizeof(host_cache)) == cudaSuccess);
  float* cache = gpu ? static_cast<float*>(device_cache) : host_cache;
  ptxattn::RopeConfig rope;
  rope.rotary_dim = kRotaryDim;
  const ptxattn::Status built = ptxattn::build_rope_cos_sin_cache(cache, kPositions, kRotaryDim, rope, nullptr);
  check(int(built.code), built.message);
  if (gpu) {
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    CHECK(cudaFree(device_cache) == cudaSuccess);
  }
}
