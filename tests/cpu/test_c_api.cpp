// C API (include/ptxattn/ptxattn.h): NULL arguments, structs of another
// layout and C-only checks give a status code and a message, never a crash;
// messages are per thread; every C++ entry point has its C twin that answers
// the same. Runs without a GPU: every case but the last fails validation
// before any CUDA call or needs none; the last checks what valid calls say
// when there is no GPU.
#include <cuda_runtime_api.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "ptxattn/ptxattn.h"
#include "ptxattn/ptxattn.hpp"

namespace {

std::string last_message() { return ptxattn_last_error_message(); }

void require_invalid(int status, const char* fragment) {
  INFO("message: " << last_message());
  REQUIRE(std::string(ptxattn_status_name(status)) == "invalid_argument");
  CHECK_THAT(last_message(), Catch::Contains(fragment));
}

// A struct filled by its _init function (which must succeed).
template <typename T>
T initialised(int (*init)(T*, size_t)) {
  T value;
  REQUIRE(init(&value, sizeof value) == PTXATTN_STATUS_OK);
  return value;
}

// A config that passes the C checks but not the C++ validator (no heads).
ptxattn_prefill_config default_config() { return initialised(ptxattn_prefill_config_init); }

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

ptxattn_batch_indices batch_indices(int32_t num_requests, const int32_t* qo_indptr, const int32_t* kv_indptr,
                                    const int32_t* kv_indices, const int32_t* kv_last_page_len) {
  ptxattn_batch_indices indices = initialised(ptxattn_batch_indices_init);
  indices.num_requests = num_requests;
  indices.qo_indptr = qo_indptr;
  indices.kv_indptr = kv_indptr;
  indices.kv_indices = kv_indices;
  indices.kv_last_page_len = kv_last_page_len;
  return indices;
}

// A valid batch for plan_prefill and plan_append_paged_kv: one request of 20
// keys in pages 1 and 0 of 16 (4 tokens in the last), 3 queries, the last 2
// tokens appended.
constexpr int32_t kQoIndptr[] = {0, 3}, kKvIndptr[] = {0, 2}, kKvIndices[] = {1, 0}, kLastPageLen[] = {4};
constexpr int32_t kAppendIndptr[] = {0, 2};
constexpr int32_t kBadAppendIndptr[] = {0, 21};  // 21 tokens appended to a request of 20

// The append twin of small_paged_config and the batch above.
ptxattn_append_config small_append_config() {
  ptxattn_append_config config = initialised(ptxattn_append_config_init);
  config.num_kv_heads = 1;
  config.head_dim = 128;
  config.page_size = 16;
  config.num_pages = 2;
  return config;
}

ptxattn_append_indices small_append_indices() {
  ptxattn_append_indices indices = initialised(ptxattn_append_indices_init);
  indices.num_requests = 1;
  indices.append_indptr = kAppendIndptr;
  indices.kv_indptr = kKvIndptr;
  indices.kv_indices = kKvIndices;
  indices.kv_last_page_len = kLastPageLen;
  return indices;
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

TEST_CASE("c api: the version of the library is the version of its header", "[c_api]") {
  CHECK(ptxattn_version() == PTXATTN_VERSION);
  CHECK(PTXATTN_VERSION == PTXATTN_VERSION_MAJOR * 10000 + PTXATTN_VERSION_MINOR * 100 + PTXATTN_VERSION_PATCH);
  CHECK(std::string(ptxattn_version_string()) == PTXATTN_VERSION_STRING);
  CHECK(std::string(PTXATTN_VERSION_STRING) == std::to_string(PTXATTN_VERSION_MAJOR) + "." +
                                                   std::to_string(PTXATTN_VERSION_MINOR) + "." +
                                                   std::to_string(PTXATTN_VERSION_PATCH));
}

TEST_CASE("c api: config_init gives the C++ defaults", "[c_api]") {
  const ptxattn_prefill_config config = default_config();
  CHECK(config.struct_size == sizeof(ptxattn_prefill_config));
  CHECK(config.dtype == PTXATTN_DTYPE_BF16);
  CHECK(config.kv_format == PTXATTN_KV_FORMAT_PAGED);
  CHECK(config.kv_layout == PTXATTN_KV_LAYOUT_NHD);
  CHECK(config.load_path == PTXATTN_KV_LOAD_PATH_AUTO);
  CHECK(config.schedule == PTXATTN_WORK_SCHEDULE_AUTO);
  CHECK(config.max_ctas == 0);
  CHECK(config.kv_block == PTXATTN_KV_BLOCK_AUTO);
  CHECK(config.kv_splits == 0);
  CHECK(config.gqa_packing == PTXATTN_GQA_PACKING_AUTO);
  CHECK(config.kv_stages == 0);
  CHECK(config.options.causal == 0);
  CHECK(config.options.window_left == -1);
  CHECK(config.options.logits_soft_cap == 0.0f);
  CHECK(config.options.sm_scale == 0.0f);
  CHECK(config.options.return_lse == 0);

  const ptxattn_rope_config rope = initialised(ptxattn_rope_config_init);
  CHECK(rope.struct_size == sizeof(ptxattn_rope_config));
  CHECK(rope.theta == 1e4f);
  CHECK(rope.rope_scale == 1.0f);
  CHECK(rope.interleave == 0);
  CHECK(rope.old_context_len == 8192);

  const ptxattn_append_config append = initialised(ptxattn_append_config_init);
  CHECK(append.struct_size == sizeof(ptxattn_append_config));
  CHECK(append.dtype == PTXATTN_DTYPE_BF16);
  CHECK(append.kv_layout == PTXATTN_KV_LAYOUT_NHD);
  CHECK(append.num_kv_heads == 0);
}

namespace {

// One _init function: another struct_size is refused and nothing written;
// its own sets struct_size and zeroes what has no C++ default.
template <typename T>
void check_init(int (*init)(T*, size_t), const char* type_name) {
  INFO(type_name);
  T value;
  std::memset(&value, 0xAB, sizeof value);
  const T untouched = value;
  for (const size_t wrong : {size_t(0), sizeof(T) - 4, sizeof(T) + 8}) {
    const std::string expected = "struct_size = " + std::to_string(wrong) + ", but this library's " + type_name +
                                 " has " + std::to_string(sizeof(T)) + " bytes";
    require_invalid(init(&value, wrong), expected.c_str());
    CHECK(std::memcmp(&value, &untouched, sizeof value) == 0);
  }
  require_invalid(init(nullptr, sizeof(T)), "out is null");
  REQUIRE(init(&value, sizeof value) == PTXATTN_STATUS_OK);
  CHECK(value.struct_size == sizeof(T));
}

}  // namespace

TEST_CASE("c api: every _init refuses another layout and writes nothing then", "[c_api]") {
  check_init(ptxattn_prefill_config_init, "ptxattn_prefill_config");
  check_init(ptxattn_batch_indices_init, "ptxattn_batch_indices");
  check_init(ptxattn_prefill_tensors_init, "ptxattn_prefill_tensors");
  check_init(ptxattn_prefill_plan_info_init, "ptxattn_prefill_plan_info");
  check_init(ptxattn_rope_config_init, "ptxattn_rope_config");
  check_init(ptxattn_rope_tensors_init, "ptxattn_rope_tensors");
  check_init(ptxattn_rope_positions_init, "ptxattn_rope_positions");
  check_init(ptxattn_append_config_init, "ptxattn_append_config");
  check_init(ptxattn_append_indices_init, "ptxattn_append_indices");
  check_init(ptxattn_append_tensors_init, "ptxattn_append_tensors");
  check_init(ptxattn_append_plan_info_init, "ptxattn_append_plan_info");
  check_init(ptxattn_merge_states_tensors_init, "ptxattn_merge_states_tensors");
  check_init(ptxattn_merge_state_tensors_init, "ptxattn_merge_state_tensors");
  check_init(ptxattn_wait_timeout_init, "ptxattn_wait_timeout");
  check_init(ptxattn_plan_capacity_init, "ptxattn_plan_capacity");
  check_init(ptxattn_workspace_sizes_init, "ptxattn_workspace_sizes");
  check_init(ptxattn_plan_workspace_init, "ptxattn_plan_workspace");
}

TEST_CASE("c api: workspace sizes and plans in the caller's workspace", "[c_api][workspace]") {
  const ptxattn_prefill_config config = small_paged_config();
  ptxattn_plan_capacity capacity = initialised(ptxattn_plan_capacity_init);
  capacity.max_requests = 4, capacity.max_q_tokens = 300, capacity.max_kv_entries = 64, capacity.num_sms = 132;
  ptxattn_workspace_sizes sizes = initialised(ptxattn_workspace_sizes_init);
  REQUIRE(ptxattn_prefill_workspace_size(&config, &capacity, &sizes) == PTXATTN_STATUS_OK);
  ptxattn::PrefillConfig cpp;  // the same config through the C++ API gives the same sizes
  cpp.num_qo_heads = config.num_qo_heads, cpp.num_kv_heads = config.num_kv_heads, cpp.head_dim = config.head_dim;
  cpp.dtype = ptxattn::DType(config.dtype), cpp.page_size = config.page_size, cpp.num_pages = config.num_pages;
  ptxattn::WorkspaceSizes cpp_sizes;
  REQUIRE(ptxattn::prefill_workspace_size(cpp, {4, 300, 64, 132}, &cpp_sizes).ok());
  CHECK(sizes.device_bytes == cpp_sizes.device_bytes);
  CHECK(sizes.host_bytes == cpp_sizes.host_bytes);
  require_invalid(ptxattn_prefill_workspace_size(&config, nullptr, &sizes), "capacity is null");
  require_invalid(ptxattn_prefill_workspace_size(&config, &capacity, nullptr), "sizes is null");
  capacity.max_requests = -1;
  require_invalid(ptxattn_prefill_workspace_size(&config, &capacity, &sizes), "capacity.max_requests = -1");

  ptxattn_prefill_plan* plan = nullptr;
  REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK);
  const ptxattn_batch_indices indices = batch_indices(1, kQoIndptr, kKvIndptr, kKvIndices, kLastPageLen);
  ptxattn_plan_workspace workspace = initialised(ptxattn_plan_workspace_init);
  require_invalid(ptxattn_plan_prefill_in(plan, &config, &indices, nullptr), "workspace is null");
  require_invalid(ptxattn_plan_prefill_in(nullptr, &config, &indices, &workspace), "plan is null");
  ptxattn_prefill_plan_destroy(plan);
}

TEST_CASE("c api: every entry point refuses a struct of another layout", "[c_api]") {
  ptxattn_prefill_config config = small_paged_config();
  ptxattn_batch_indices indices = batch_indices(1, kQoIndptr, kKvIndptr, kKvIndices, kLastPageLen);
  ptxattn_prefill_tensors tensors = initialised(ptxattn_prefill_tensors_init);
  ptxattn_prefill_plan_info info = initialised(ptxattn_prefill_plan_info_init);
  ptxattn_rope_config rope = initialised(ptxattn_rope_config_init);
  ptxattn_rope_tensors rope_tensors = initialised(ptxattn_rope_tensors_init);
  ptxattn_rope_positions positions = initialised(ptxattn_rope_positions_init);
  ptxattn_append_config append_config = small_append_config();
  ptxattn_append_indices append_indices = small_append_indices();
  ptxattn_append_tensors append_tensors = initialised(ptxattn_append_tensors_init);
  ptxattn_append_plan_info append_info = initialised(ptxattn_append_plan_info_init);
  ptxattn_wait_timeout timeout = initialised(ptxattn_wait_timeout_init);
  ptxattn_merge_states_tensors merge_states = initialised(ptxattn_merge_states_tensors_init);
  ptxattn_merge_state_tensors merge_state = initialised(ptxattn_merge_state_tensors_init);
  ptxattn_prefill_plan* plan = nullptr;
  ptxattn_append_plan* append_plan = nullptr;
  REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK);
  REQUIRE(ptxattn_append_plan_create(&append_plan) == PTXATTN_STATUS_OK);
  int32_t flag = 0;

  // Each call with one struct argument made 4 bytes larger than this library's.
  const auto refused = [](uint32_t& struct_size, const char* name, auto call) {
    const uint32_t own = struct_size;
    struct_size = own + 4;
    const std::string expected = std::string(name) + ".struct_size = " + std::to_string(own + 4) +
                                 ", but this library's ";
    require_invalid(call(), expected.c_str());
    struct_size = own;
  };
  refused(config.struct_size, "config", [&] { return ptxattn_plan_prefill(plan, &config, &indices); });
  refused(indices.struct_size, "indices", [&] { return ptxattn_plan_prefill(plan, &config, &indices); });
  refused(tensors.struct_size, "tensors", [&] { return ptxattn_run_prefill(plan, &tensors, nullptr); });
  refused(info.struct_size, "info", [&] { return ptxattn_prefill_plan_get_info(plan, &info); });
  refused(config.struct_size, "config", [&] { return ptxattn_tma_load_path_supported(&config, &flag); });
  refused(config.struct_size, "config", [&] { return ptxattn_validate_prefill_config(&config); });
  refused(config.struct_size, "config", [&] { return ptxattn_validate_batch_indices(&config, &indices); });
  refused(indices.struct_size, "indices", [&] { return ptxattn_validate_batch_indices(&config, &indices); });
  refused(rope.struct_size, "rope", [&] { return ptxattn_validate_rope_config(&rope); });
  refused(rope.struct_size, "rope", [&] { return ptxattn_build_rope_cos_sin_cache(nullptr, 16, 64, &rope, nullptr); });
  refused(rope_tensors.struct_size, "tensors", [&] { return ptxattn_apply_rope(&rope_tensors, &positions, &rope, nullptr); });
  refused(positions.struct_size, "positions", [&] { return ptxattn_apply_rope(&rope_tensors, &positions, &rope, nullptr); });
  refused(rope.struct_size, "rope", [&] { return ptxattn_apply_rope(&rope_tensors, &positions, &rope, nullptr); });
  refused(rope_tensors.struct_size, "tensors", [&] {
    return ptxattn_apply_rope_with_cos_sin_cache(&rope_tensors, nullptr, nullptr, 16, 64, 0, nullptr);
  });
  refused(append_config.struct_size, "config",
          [&] { return ptxattn_plan_append_paged_kv(append_plan, &append_config, &append_indices); });
  refused(append_indices.struct_size, "indices",
          [&] { return ptxattn_plan_append_paged_kv(append_plan, &append_config, &append_indices); });
  refused(append_tensors.struct_size, "tensors",
          [&] { return ptxattn_append_paged_kv_cache(append_plan, &append_tensors, nullptr, nullptr); });
  refused(rope.struct_size, "rope",
          [&] { return ptxattn_append_paged_kv_cache(append_plan, &append_tensors, &rope, nullptr); });
  refused(append_info.struct_size, "info", [&] { return ptxattn_append_plan_get_info(append_plan, &append_info); });
  refused(append_config.struct_size, "config",
          [&] { return ptxattn_validate_append_indices(&append_config, &append_indices); });
  refused(append_indices.struct_size, "indices",
          [&] { return ptxattn_validate_append_indices(&append_config, &append_indices); });
  refused(timeout.struct_size, "out", [&] { return ptxattn_last_wait_timeout(&timeout, &flag); });
  refused(merge_states.struct_size, "tensors", [&] { return ptxattn_merge_states(&merge_states, nullptr); });
  refused(merge_state.struct_size, "tensors", [&] { return ptxattn_merge_state(&merge_state, nullptr); });
  ptxattn_prefill_plan_destroy(plan);
  ptxattn_append_plan_destroy(append_plan);
}

TEST_CASE("c api: null pointers give invalid_argument and a message", "[c_api]") {
  const ptxattn_prefill_config config = default_config();
  const ptxattn_batch_indices indices = initialised(ptxattn_batch_indices_init);
  const ptxattn_prefill_tensors tensors = initialised(ptxattn_prefill_tensors_init);
  const ptxattn_rope_tensors rope_tensors = initialised(ptxattn_rope_tensors_init);
  const ptxattn_rope_positions positions = initialised(ptxattn_rope_positions_init);
  const ptxattn_rope_config rope = initialised(ptxattn_rope_config_init);
  const ptxattn_append_config append_config = small_append_config();
  const ptxattn_append_indices append_indices = small_append_indices();
  const ptxattn_append_tensors append_tensors = initialised(ptxattn_append_tensors_init);
  ptxattn_wait_timeout timeout = initialised(ptxattn_wait_timeout_init);
  int32_t flag = 0;

  require_invalid(ptxattn_prefill_plan_create(nullptr), "out is null");
  require_invalid(ptxattn_append_plan_create(nullptr), "out is null");

  ptxattn_prefill_plan* plan = nullptr;
  REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK);
  REQUIRE(plan != nullptr);
  require_invalid(ptxattn_plan_prefill(nullptr, &config, &indices), "plan is null");
  require_invalid(ptxattn_plan_prefill(plan, nullptr, &indices), "config is null");
  require_invalid(ptxattn_plan_prefill(plan, &config, nullptr), "indices is null");
  require_invalid(ptxattn_check_page_table_errors(nullptr, nullptr), "plan is null");
  require_invalid(ptxattn_check_page_table_errors(plan, nullptr), "plan: not made");
  require_invalid(ptxattn_run_prefill(nullptr, &tensors, nullptr), "plan is null");
  require_invalid(ptxattn_run_prefill(plan, nullptr, nullptr), "tensors is null");
  require_invalid(ptxattn_prefill_plan_get_info(nullptr, nullptr), "plan is null");
  require_invalid(ptxattn_prefill_plan_get_info(plan, nullptr), "info is null");
  require_invalid(ptxattn_tma_load_path_supported(nullptr, &flag), "config is null");
  require_invalid(ptxattn_tma_load_path_supported(&config, nullptr), "supported is null");
  require_invalid(ptxattn_validate_prefill_config(nullptr), "config is null");
  require_invalid(ptxattn_validate_batch_indices(nullptr, &indices), "config is null");
  require_invalid(ptxattn_validate_batch_indices(&config, nullptr), "indices is null");
  require_invalid(ptxattn_validate_rope_config(nullptr), "rope is null");
  require_invalid(ptxattn_build_rope_cos_sin_cache(nullptr, 16, 64, nullptr, nullptr), "rope is null");
  require_invalid(ptxattn_apply_rope(nullptr, &positions, &rope, nullptr), "tensors is null");
  require_invalid(ptxattn_apply_rope(&rope_tensors, nullptr, &rope, nullptr), "positions is null");
  require_invalid(ptxattn_apply_rope(&rope_tensors, &positions, nullptr, nullptr), "rope is null");
  require_invalid(ptxattn_apply_rope_with_cos_sin_cache(nullptr, nullptr, nullptr, 16, 64, 0, nullptr),
                  "tensors is null");
  ptxattn_prefill_plan_destroy(plan);
  ptxattn_prefill_plan_destroy(nullptr);

  ptxattn_append_plan* append_plan = nullptr;
  REQUIRE(ptxattn_append_plan_create(&append_plan) == PTXATTN_STATUS_OK);
  REQUIRE(append_plan != nullptr);
  require_invalid(ptxattn_plan_append_paged_kv(nullptr, &append_config, &append_indices), "plan is null");
  require_invalid(ptxattn_plan_append_paged_kv(append_plan, nullptr, &append_indices), "config is null");
  require_invalid(ptxattn_plan_append_paged_kv(append_plan, &append_config, nullptr), "indices is null");
  require_invalid(ptxattn_append_paged_kv_cache(nullptr, &append_tensors, nullptr, nullptr), "plan is null");
  require_invalid(ptxattn_append_paged_kv_cache(append_plan, nullptr, nullptr, nullptr), "tensors is null");
  require_invalid(ptxattn_append_plan_get_info(nullptr, nullptr), "plan is null");
  require_invalid(ptxattn_append_plan_get_info(append_plan, nullptr), "info is null");
  require_invalid(ptxattn_validate_append_indices(nullptr, &append_indices), "config is null");
  require_invalid(ptxattn_validate_append_indices(&append_config, nullptr), "indices is null");
  ptxattn_append_plan_destroy(append_plan);
  ptxattn_append_plan_destroy(nullptr);

  require_invalid(ptxattn_last_wait_timeout(nullptr, &flag), "out is null");
  require_invalid(ptxattn_last_wait_timeout(&timeout, nullptr), "found is null");
  require_invalid(ptxattn_merge_states(nullptr, nullptr), "tensors is null");
  require_invalid(ptxattn_merge_state(nullptr, nullptr), "tensors is null");
}

TEST_CASE("c api: int32 booleans must be 0 or 1", "[c_api]") {
  ptxattn_prefill_plan* plan = nullptr;
  REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK);
  const ptxattn_batch_indices indices = initialised(ptxattn_batch_indices_init);
  ptxattn_prefill_config config = default_config();
  config.options.causal = 2;
  require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.options.causal = 2 must be 0 or 1");
  config.options.causal = 0;
  config.options.return_lse = -1;
  require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.options.return_lse = -1");

  ptxattn_rope_config rope = initialised(ptxattn_rope_config_init);
  rope.interleave = 3;
  require_invalid(ptxattn_build_rope_cos_sin_cache(nullptr, 16, 64, &rope, nullptr), "rope.interleave = 3");
  require_invalid(ptxattn_validate_rope_config(&rope), "rope.interleave = 3");
  rope.interleave = 0;
  rope.llama31 = 7;
  require_invalid(ptxattn_validate_rope_config(&rope), "rope.llama31 = 7");
  const ptxattn_rope_tensors rope_tensors = initialised(ptxattn_rope_tensors_init);
  require_invalid(ptxattn_apply_rope_with_cos_sin_cache(&rope_tensors, nullptr, nullptr, 16, 64, 5, nullptr),
                  "interleave = 5");
  ptxattn_prefill_plan_destroy(plan);
}

TEST_CASE("c api: the C++ validator's message comes through", "[c_api]") {
  ptxattn_prefill_plan* plan = nullptr;
  REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK);
  const ptxattn_prefill_config config = default_config();  // num_qo_heads = 0
  const ptxattn_batch_indices indices = initialised(ptxattn_batch_indices_init);
  require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.num_qo_heads = 0");
  ptxattn_prefill_plan_destroy(plan);
}

// A plan, an empty batch and a config that are valid apart from what a
// section breaks. Empty batches plan without a GPU (nothing to upload).
struct EmptyBatchPlan {
  EmptyBatchPlan() { REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK); }
  ~EmptyBatchPlan() { ptxattn_prefill_plan_destroy(plan); }
  EmptyBatchPlan(const EmptyBatchPlan&) = delete;
  EmptyBatchPlan& operator=(const EmptyBatchPlan&) = delete;
  ptxattn_prefill_plan* plan = nullptr;
  const ptxattn_batch_indices indices = batch_indices(0, kZero, kZero, nullptr, nullptr);
  ptxattn_prefill_config config = small_paged_config();

 private:
  static constexpr int32_t kZero[] = {0};
};

TEST_CASE_METHOD(EmptyBatchPlan, "c api: schedule and max_ctas reach the C++ validator", "[c_api]") {
  SECTION("schedule outside the enum") {
    config.schedule = 4;
    require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.schedule = 4 is not a WorkSchedule");
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
                    "config.max_ctas = 7 limits the persistent and dynamic schedules, but config.schedule is kOneItemPerCta");
  }
}

TEST_CASE_METHOD(EmptyBatchPlan, "c api: kv_block reaches the C++ plan", "[c_api]") {
  SECTION("outside the enum") {
    config.kv_block = 3;
    require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.kv_block = 3 is not a KvBlock");
    config.kv_block = -1;
    require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.kv_block = -1 is not a KvBlock");
  }
  SECTION("wide refused on pages") {
    config.kv_block = PTXATTN_KV_BLOCK_WIDE;
    CHECK(ptxattn_plan_prefill(plan, &config, &indices) == PTXATTN_STATUS_UNSUPPORTED);
    CHECK_THAT(last_message(), Catch::Contains("kv_block = kWide needs") &&
                                   Catch::Contains("config.kv_format is kPaged"));
  }
  SECTION("each block forced on ragged K/V, and the config kept") {
    config.kv_format = PTXATTN_KV_FORMAT_RAGGED;
    const struct {
      int32_t kv_block, block_kv;
    } blocks[] = {{PTXATTN_KV_BLOCK_STANDARD, 128},
                  {PTXATTN_KV_BLOCK_WIDE, 176},
                  {PTXATTN_KV_BLOCK_AUTO, 128}};  // auto: an empty batch has no long KV range
    for (const auto& [kv_block, block_kv] : blocks) {
      config.kv_block = kv_block;
      REQUIRE(ptxattn_plan_prefill(plan, &config, &indices) == PTXATTN_STATUS_OK);
      ptxattn_prefill_plan_info info = initialised(ptxattn_prefill_plan_info_init);
      REQUIRE(ptxattn_prefill_plan_get_info(plan, &info) == PTXATTN_STATUS_OK);
      CHECK(info.chosen_block_kv == block_kv);
      CHECK(info.config.kv_block == kv_block);
    }
  }
}

TEST_CASE_METHOD(EmptyBatchPlan, "c api: kv_splits reaches the C++ plan", "[c_api][split-kv]") {
  SECTION("outside [0, 64]") {
    config.kv_splits = 65;
    require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.kv_splits = 65 is outside [0, 64]");
    config.kv_splits = -1;
    require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.kv_splits = -1 is outside [0, 64]");
  }
  SECTION("kept in the config, and no split for an empty batch") {
    config.kv_splits = 7;
    REQUIRE(ptxattn_plan_prefill(plan, &config, &indices) == PTXATTN_STATUS_OK);
    ptxattn_prefill_plan_info info = initialised(ptxattn_prefill_plan_info_init);
    REQUIRE(ptxattn_prefill_plan_get_info(plan, &info) == PTXATTN_STATUS_OK);
    CHECK(info.config.kv_splits == 7);
    CHECK(info.chosen_kv_splits == 7);
  }
}

TEST_CASE_METHOD(EmptyBatchPlan, "c api: gqa_packing reaches the C++ plan", "[c_api][gqa-pack]") {
  SECTION("outside the enum") {
    config.gqa_packing = 3;
    require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.gqa_packing = 3 is not a GqaPacking");
  }
  SECTION("forced on, and the tile's heads reported") {
    config.num_qo_heads = 8;
    config.num_kv_heads = 2;
    config.gqa_packing = PTXATTN_GQA_PACKING_ON;
    REQUIRE(ptxattn_plan_prefill(plan, &config, &indices) == PTXATTN_STATUS_OK);
    ptxattn_prefill_plan_info info = initialised(ptxattn_prefill_plan_info_init);
    REQUIRE(ptxattn_prefill_plan_get_info(plan, &info) == PTXATTN_STATUS_OK);
    CHECK(info.config.gqa_packing == PTXATTN_GQA_PACKING_ON);
    CHECK(info.chosen_tile_heads == 4);
  }
}

TEST_CASE_METHOD(EmptyBatchPlan, "c api: kv_stages reaches the C++ plan", "[c_api][kv-stages]") {
  SECTION("negative") {
    config.kv_stages = -2;
    require_invalid(ptxattn_plan_prefill(plan, &config, &indices), "config.kv_stages = -2 is negative");
  }
  SECTION("forced to the deep ring on the gather path, and reported") {
    config.load_path = PTXATTN_KV_LOAD_PATH_GATHER;
    config.kv_stages = 3;
    REQUIRE(ptxattn_plan_prefill(plan, &config, &indices) == PTXATTN_STATUS_OK);
    ptxattn_prefill_plan_info info = initialised(ptxattn_prefill_plan_info_init);
    REQUIRE(ptxattn_prefill_plan_get_info(plan, &info) == PTXATTN_STATUS_OK);
    CHECK(info.config.kv_stages == 3);
    CHECK(info.chosen_kv_stages == 3);
  }
}

TEST_CASE_METHOD(EmptyBatchPlan, "c api: plan_attention and run_attention are plan_prefill and run_prefill",
                 "[c_api]") {
  config.kv_splits = 65;
  require_invalid(ptxattn_plan_attention(plan, &config, &indices), "config.kv_splits = 65 is outside [0, 64]");
  config.kv_splits = 0;
  REQUIRE(ptxattn_plan_attention(plan, &config, &indices) == PTXATTN_STATUS_OK);
  const ptxattn_prefill_tensors tensors = initialised(ptxattn_prefill_tensors_init);
  CHECK(ptxattn_run_attention(plan, &tensors, nullptr) == ptxattn_run_prefill(plan, &tensors, nullptr));
  CHECK(ptxattn_run_attention(nullptr, &tensors, nullptr) != PTXATTN_STATUS_OK);
}

TEST_CASE("c api: the last error message belongs to the calling thread", "[c_api]") {
  require_invalid(ptxattn_prefill_plan_create(nullptr), "out is null");
  std::string seen_by_other_thread = "unset";
  std::thread([&] { seen_by_other_thread = last_message(); }).join();
  CHECK(seen_by_other_thread.empty());
  CHECK_THAT(last_message(), Catch::Contains("out is null"));
}

namespace {

// The C answer (code and message) of a validation-only call equals the C++ one.
void check_same_answer(int code, const ptxattn::Status& expected) {
  const std::string message = code == PTXATTN_STATUS_OK ? "" : last_message();
  INFO("C: " << ptxattn_status_name(code) << " \"" << message << "\"; C++: "
             << ptxattn::status_code_name(expected.code) << " \"" << expected.message << "\"");
  CHECK(code == int(expected.code));
  CHECK(message == expected.message);
}

}  // namespace

TEST_CASE("c api: validation-only calls answer as the C++ ones", "[c_api]") {
  ptxattn_prefill_config config = small_paged_config();
  ptxattn::PrefillConfig cpp_config;
  cpp_config.num_qo_heads = 2;
  cpp_config.num_kv_heads = 1;
  cpp_config.head_dim = 128;
  cpp_config.page_size = 16;
  cpp_config.num_pages = 2;
  check_same_answer(ptxattn_validate_prefill_config(&config), ptxattn::validate_prefill_config(cpp_config));
  config.num_kv_heads = cpp_config.num_kv_heads = 3;  // 2 qo heads over 3 KV heads
  check_same_answer(ptxattn_validate_prefill_config(&config), ptxattn::validate_prefill_config(cpp_config));
  REQUIRE(ptxattn_validate_prefill_config(&config) == PTXATTN_STATUS_INVALID_ARGUMENT);
  config.num_kv_heads = cpp_config.num_kv_heads = 1;

  const int32_t bad_indices[] = {1, 2};  // page 2 is outside a pool of two
  for (const int32_t* kv_indices : {kKvIndices, bad_indices}) {
    const ptxattn_batch_indices indices = batch_indices(1, kQoIndptr, kKvIndptr, kv_indices, kLastPageLen);
    const ptxattn::BatchIndices cpp_indices{1, kQoIndptr, kKvIndptr, kv_indices, kLastPageLen};
    const int code = ptxattn_validate_batch_indices(&config, &indices);
    check_same_answer(code, ptxattn::validate_batch_indices(cpp_config, cpp_indices));
    CHECK(code == (kv_indices == bad_indices ? PTXATTN_STATUS_INVALID_ARGUMENT : PTXATTN_STATUS_OK));
  }

  ptxattn_rope_config rope = initialised(ptxattn_rope_config_init);
  ptxattn::RopeConfig cpp_rope;
  for (const int32_t rotary_dim : {64, 63}) {
    rope.rotary_dim = cpp_rope.rotary_dim = rotary_dim;
    check_same_answer(ptxattn_validate_rope_config(&rope), ptxattn::validate_rope_config(cpp_rope));
  }
  REQUIRE(ptxattn_validate_rope_config(&rope) == PTXATTN_STATUS_INVALID_ARGUMENT);

  const ptxattn_append_config append_config = small_append_config();
  ptxattn_append_indices append_indices = small_append_indices();
  ptxattn::AppendConfig cpp_append_config{ptxattn::DType::kBF16, 1, 128, ptxattn::KvLayout::kNHD, 16, 2};
  for (const int32_t* append_indptr : {kAppendIndptr, kBadAppendIndptr}) {
    append_indices.append_indptr = append_indptr;
    const ptxattn::AppendIndices cpp_indices{1, append_indptr, kKvIndptr, kKvIndices, kLastPageLen};
    check_same_answer(ptxattn_validate_append_indices(&append_config, &append_indices),
                      ptxattn::validate_append_indices(cpp_append_config, cpp_indices));
  }
  REQUIRE(ptxattn_validate_append_indices(&append_config, &append_indices) == PTXATTN_STATUS_INVALID_ARGUMENT);
}

TEST_CASE("c api: load-path support as the C++ API says", "[c_api]") {
  ptxattn_prefill_config config = small_paged_config();
  ptxattn::PrefillConfig cpp_config;
  cpp_config.num_qo_heads = 2;
  cpp_config.num_kv_heads = 1;
  cpp_config.head_dim = 128;
  cpp_config.num_pages = 2;
  for (const int32_t page_size : {1, 7, 16, 64, 256}) {
    config.page_size = cpp_config.page_size = page_size;
    int32_t supported = -1;
    REQUIRE(ptxattn_tma_load_path_supported(&config, &supported) == PTXATTN_STATUS_OK);
    CHECK(supported == int32_t(ptxattn::tma_load_path_supported(cpp_config)));
  }
  int32_t supported = -1;
  REQUIRE(ptxattn_tma_load_path_supported(&config, &supported) == PTXATTN_STATUS_OK);
  CHECK(supported == 1);  // pages of 256: a page holds whole KV blocks
  config.page_size = 7;
  REQUIRE(ptxattn_tma_load_path_supported(&config, &supported) == PTXATTN_STATUS_OK);
  CHECK(supported == 0);
}

TEST_CASE("c api: what an unplanned plan reports", "[c_api]") {
  ptxattn_prefill_plan* plan = nullptr;
  REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK);
  ptxattn_prefill_plan_info info;
  std::memset(&info, 0xAB, sizeof info);
  info.struct_size = sizeof info;
  REQUIRE(ptxattn_prefill_plan_get_info(plan, &info) == PTXATTN_STATUS_OK);
  CHECK(info.valid == 0);
  CHECK(info.config.struct_size == sizeof(ptxattn_prefill_config));
  CHECK(info.num_q_tokens == 0);
  CHECK(info.num_work_tiles == 0);
  CHECK(info.num_ctas == 0);
  ptxattn_prefill_plan_destroy(plan);

  ptxattn_append_plan* append_plan = nullptr;
  REQUIRE(ptxattn_append_plan_create(&append_plan) == PTXATTN_STATUS_OK);
  ptxattn_append_plan_info append_info;
  std::memset(&append_info, 0xAB, sizeof append_info);
  append_info.struct_size = sizeof append_info;
  REQUIRE(ptxattn_append_plan_get_info(append_plan, &append_info) == PTXATTN_STATUS_OK);
  CHECK(append_info.valid == 0);
  CHECK(append_info.config.struct_size == sizeof(ptxattn_append_config));
  CHECK(append_info.num_append_tokens == 0);
  ptxattn_append_plan_destroy(append_plan);
}

TEST_CASE("c api: bounded waits as the C++ API reports them", "[c_api]") {
  CHECK(ptxattn_bounded_waits_built() == int32_t(ptxattn::bounded_waits_built()));
  ptxattn_wait_timeout timeout = initialised(ptxattn_wait_timeout_init);
  int32_t found = -1;
  REQUIRE(ptxattn_last_wait_timeout(&timeout, &found) == PTXATTN_STATUS_OK);
  ptxattn::WaitTimeout cpp_timeout;
  CHECK(found == int32_t(ptxattn::last_wait_timeout(&cpp_timeout)));
  CHECK(found == 0);  // nothing here ran a kernel
}

namespace {

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

  const ptxattn_prefill_config config = small_paged_config();
  const ptxattn_batch_indices indices = batch_indices(1, kQoIndptr, kKvIndptr, kKvIndices, kLastPageLen);
  ptxattn_prefill_plan* plan = nullptr;
  REQUIRE(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK);
  const int planned = ptxattn_plan_prefill(plan, &config, &indices);
  check(planned, planned == PTXATTN_STATUS_OK ? "" : last_message());
  ptxattn_prefill_plan_info info = initialised(ptxattn_prefill_plan_info_init);
  REQUIRE(ptxattn_prefill_plan_get_info(plan, &info) == PTXATTN_STATUS_OK);
  CHECK(info.valid == int32_t(gpu));
  CHECK(info.num_q_tokens == (gpu ? 3 : 0));
  ptxattn_prefill_plan_destroy(plan);

  const ptxattn_append_config append_config = small_append_config();
  const ptxattn_append_indices append_indices = small_append_indices();
  ptxattn_append_plan* append_plan = nullptr;
  REQUIRE(ptxattn_append_plan_create(&append_plan) == PTXATTN_STATUS_OK);
  const int appended = ptxattn_plan_append_paged_kv(append_plan, &append_config, &append_indices);
  check(appended, appended == PTXATTN_STATUS_OK ? "" : last_message());
  ptxattn_append_plan_info append_info = initialised(ptxattn_append_plan_info_init);
  REQUIRE(ptxattn_append_plan_get_info(append_plan, &append_info) == PTXATTN_STATUS_OK);
  CHECK(append_info.valid == int32_t(gpu));
  CHECK(append_info.num_append_tokens == (gpu ? 2 : 0));
  ptxattn_append_plan_destroy(append_plan);

  // The cos/sin cache build launches a kernel straight away. Without a GPU
  // the launch fails before anything could read the cache, so a host buffer
  // stands in for it.
  constexpr int32_t kPositions = 4, kRotaryDim = 64;
  alignas(16) static float host_cache[kPositions * kRotaryDim];
  void* device_cache = nullptr;
  if (gpu) REQUIRE(cudaMalloc(&device_cache, sizeof(host_cache)) == cudaSuccess);
  float* cache = gpu ? static_cast<float*>(device_cache) : host_cache;
  ptxattn_rope_config rope = initialised(ptxattn_rope_config_init);
  rope.rotary_dim = kRotaryDim;
  const int built = ptxattn_build_rope_cos_sin_cache(cache, kPositions, kRotaryDim, &rope, nullptr);
  check(built, built == PTXATTN_STATUS_OK ? "" : last_message());
  if (gpu) {
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    CHECK(cudaFree(device_cache) == cudaSuccess);
  }
}
