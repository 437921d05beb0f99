// Prefill argument validation (src/validate.cpp): one test case per rule of
// README "Validation", each checking the status code and that the message
// names the argument and the bad value. No GPU and no CUDA call needed.
#include <catch2/catch.hpp>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "validate.hpp"

namespace {

using namespace ptxattn;

void require_status(const Status& status, StatusCode code, std::initializer_list<const char*> fragments = {}) {
  INFO("message: " << status.message);
  REQUIRE(std::string(status_code_name(status.code)) == status_code_name(code));
  for (const char* fragment : fragments) CHECK_THAT(status.message, Catch::Contains(fragment));
}

void require_ok(const Status& status) { require_status(status, StatusCode::kOk); }

int32_t first_built_head_dim() {
  for (int32_t head_dim : {64, 128, 256})
    if (head_dim_is_built(head_dim)) return head_dim;
  FAIL("this build has no head dim");
  return 0;
}

DType first_built_dtype() { return dtype_is_built(DType::kBF16) ? DType::kBF16 : DType::kFP16; }

// A valid paged batch of 3 requests (page_size 16, pool of 8 pages):
//   request 0: qo_len 5, 2 pages, last 4  -> kv_len 20
//   request 1: qo_len 0, no page          -> kv_len 0
//   request 2: qo_len 7, 3 pages, last 16 -> kv_len 48
struct PagedBatch {
  PrefillConfig config;
  std::vector<int32_t> qo_indptr{0, 5, 5, 12};
  std::vector<int32_t> kv_indptr{0, 2, 2, 5};
  std::vector<int32_t> kv_indices{3, 0, 7, 1, 2};
  std::vector<int32_t> kv_last_page_len{4, 0, 16};

  PagedBatch() {
    config.dtype = first_built_dtype();
    config.num_qo_heads = 8;
    config.num_kv_heads = 2;
    config.head_dim = first_built_head_dim();
    config.kv_format = KvFormat::kPaged;
    config.page_size = 16;
    config.num_pages = 8;
    config.options.causal = true;
  }

  BatchIndices indices() const {
    return {int32_t(qo_indptr.size()) - 1, qo_indptr.data(), kv_indptr.data(), kv_indices.data(),
            kv_last_page_len.data()};
  }
  Status validate() const { return validate_batch_indices(config, indices()); }
};

// A valid ragged batch: kv rows by kv_indptr.
struct RaggedBatch {
  PrefillConfig config;
  std::vector<int32_t> qo_indptr{0, 3, 10};
  std::vector<int32_t> kv_indptr{0, 4, 30};

  RaggedBatch() {
    config.dtype = first_built_dtype();
    config.num_qo_heads = 4;
    config.num_kv_heads = 4;
    config.head_dim = first_built_head_dim();
    config.kv_format = KvFormat::kRagged;
    config.options.causal = true;
  }

  BatchIndices indices() const {
    return {int32_t(qo_indptr.size()) - 1, qo_indptr.data(), kv_indptr.data(), nullptr, nullptr};
  }
  Status validate() const { return validate_batch_indices(config, indices()); }
};

}  // namespace

// ----------------------------------------------------------------------------
// validate_prefill_config
// ----------------------------------------------------------------------------

TEST_CASE("validation: valid paged and ragged batches pass", "[validation]") {
  require_ok(PagedBatch().validate());
  require_ok(RaggedBatch().validate());
  PagedBatch hnd;
  hnd.config.kv_layout = KvLayout::kHND;
  require_ok(hnd.validate());
}

TEST_CASE("validation: enum values outside their enum", "[validation]") {
  PagedBatch batch;
  SECTION("dtype") {
    batch.config.dtype = static_cast<DType>(7);
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.dtype = 7"});
  }
  SECTION("kv_format") {
    batch.config.kv_format = static_cast<KvFormat>(2);
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.kv_format = 2"});
  }
  SECTION("kv_layout") {
    batch.config.kv_layout = static_cast<KvLayout>(-1);
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.kv_layout = -1"});
  }
  SECTION("load_path") {
    batch.config.load_path = static_cast<KvLoadPath>(3);
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.load_path = 3"});
  }
  SECTION("schedule") {
    batch.config.schedule = static_cast<WorkSchedule>(4);
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {"config.schedule = 4 is not a WorkSchedule (0 = auto, 1 = one item per CTA, 2 = persistent, 3 = dynamic)"});
    batch.config.schedule = static_cast<WorkSchedule>(-1);
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.schedule = -1 is not a WorkSchedule"});
  }
  SECTION("kv_block") {
    batch.config.kv_block = static_cast<KvBlock>(3);
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {"config.kv_block = 3 is not a KvBlock (0 = auto, 1 = standard, 2 = wide)"});
    batch.config.kv_block = static_cast<KvBlock>(-1);
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.kv_block = -1 is not a KvBlock"});
  }
}

TEST_CASE("validation: max_ctas must be >= 0 and only limits the persistent and dynamic schedules", "[validation]") {
  PagedBatch batch;
  SECTION("negative") {
    batch.config.max_ctas = -1;
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.max_ctas = -1 is negative"});
    batch.config.max_ctas = std::numeric_limits<int32_t>::min();
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.max_ctas = -2147483648 is negative"});
  }
  SECTION("with one item per CTA") {
    batch.config.schedule = WorkSchedule::kOneItemPerCta;
    batch.config.max_ctas = 4;
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {"config.max_ctas = 4 limits the persistent and dynamic schedules, but config.schedule is "
                    "kOneItemPerCta"});
  }
  SECTION("every schedule passes with max_ctas 0; auto, persistent and dynamic with any max_ctas > 0") {
    for (WorkSchedule schedule :
         {WorkSchedule::kAuto, WorkSchedule::kOneItemPerCta, WorkSchedule::kPersistent, WorkSchedule::kDynamic}) {
      batch.config.schedule = schedule;
      batch.config.max_ctas = 0;
      require_ok(batch.validate());
    }
    for (WorkSchedule schedule : {WorkSchedule::kAuto, WorkSchedule::kPersistent, WorkSchedule::kDynamic}) {
      batch.config.schedule = schedule;
      for (int32_t max_ctas : {1, 2, 132, std::numeric_limits<int32_t>::max()}) {
        batch.config.max_ctas = max_ctas;
        require_ok(batch.validate());
      }
    }
  }
  SECTION("validate_prefill_config alone") {
    batch.config.max_ctas = -3;
    require_status(validate_prefill_config(batch.config), StatusCode::kInvalidArgument, {"config.max_ctas = -3"});
  }
}

TEST_CASE("validation: head counts must be positive", "[validation]") {
  PagedBatch batch;
  SECTION("num_qo_heads = 0") {
    batch.config.num_qo_heads = 0;
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.num_qo_heads = 0", "positive"});
  }
  SECTION("num_kv_heads = -2") {
    batch.config.num_kv_heads = -2;
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.num_kv_heads = -2", "positive"});
  }
}

TEST_CASE("validation: num_qo_heads must be a multiple of num_kv_heads", "[validation]") {
  PagedBatch batch;
  batch.config.num_qo_heads = 10;
  batch.config.num_kv_heads = 4;
  require_status(batch.validate(), StatusCode::kInvalidArgument,
                 {"config.num_qo_heads = 10", "config.num_kv_heads = 4"});
}

TEST_CASE("validation: head_dim must be 64, 128 or 256 and built", "[validation]") {
  PagedBatch batch;
  SECTION("non-positive head_dim is invalid") {
    batch.config.head_dim = 0;
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.head_dim = 0"});
  }
  SECTION("other head dims are unsupported") {
    batch.config.head_dim = 96;
    require_status(batch.validate(), StatusCode::kUnsupported, {"config.head_dim = 96"});
  }
  SECTION("supported head dims pass exactly when built") {
    for (int32_t head_dim : {64, 128, 256}) {
      batch.config.head_dim = head_dim;
      if (head_dim_is_built(head_dim))
        require_ok(batch.validate());
      else
        require_status(batch.validate(), StatusCode::kUnsupported,
                       {("config.head_dim = " + std::to_string(head_dim)).c_str(), "not built"});
    }
  }
}

TEST_CASE("validation: dtypes pass exactly when built", "[validation]") {
  PagedBatch batch;
  for (DType dtype : {DType::kBF16, DType::kFP16}) {
    batch.config.dtype = dtype;
    if (dtype_is_built(dtype))
      require_ok(batch.validate());
    else
      require_status(batch.validate(), StatusCode::kUnsupported,
                     {dtype == DType::kBF16 ? "config.dtype = bf16" : "config.dtype = fp16", "not built"});
  }
}

TEST_CASE("validation: page_size must be in [1, 1024]", "[validation]") {
  PagedBatch batch;
  for (int32_t bad : {0, -3, kMaxPageSize + 1}) {
    batch.config.page_size = bad;
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {("config.page_size = " + std::to_string(bad)).c_str(), "[1, 1024]"});
  }
  batch.config.page_size = kMaxPageSize;  // request 2's last page (16) still fits
  require_ok(batch.validate());
}

TEST_CASE("validation: page size 1 works with last_page_len 1", "[validation]") {
  PagedBatch batch;
  batch.config.page_size = 1;
  batch.kv_last_page_len = {1, 0, 1};  // kv_len 2 and 3 for qo_len 5 and 7: not causal then
  batch.config.options.causal = false;
  require_ok(batch.validate());
}

TEST_CASE("validation: num_pages must be >= 0", "[validation]") {
  PagedBatch batch;
  batch.config.num_pages = -1;
  require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.num_pages = -1"});
}

TEST_CASE("validation: the page pool must fit int32 row indices", "[validation]") {
  constexpr int32_t kInt32Max = std::numeric_limits<int32_t>::max();
  PagedBatch batch;
  batch.config.num_pages = kInt32Max / 32;  // * 16 rows * 2 heads: the largest pool that fits
  require_ok(validate_prefill_config(batch.config));
  batch.config.num_pages = kInt32Max / 32 + 1;
  require_status(batch.validate(), StatusCode::kInvalidArgument,
                 {"config.num_pages * page_size * num_kv_heads = 67108864 * 16 * 2", "INT32_MAX"});
  // Every factor at its largest: the product exceeds int64 (no signed overflow in the check).
  batch.config.num_pages = kInt32Max;
  batch.config.page_size = 1024;
  batch.config.num_qo_heads = kInt32Max;
  batch.config.num_kv_heads = kInt32Max;
  require_status(validate_prefill_config(batch.config), StatusCode::kInvalidArgument,
                 {"config.num_pages * page_size * num_kv_heads = 2147483647 * 1024 * 2147483647", "INT32_MAX"});
}

TEST_CASE("validation: ragged K/V is NHD only", "[validation]") {
  RaggedBatch batch;
  batch.config.kv_layout = KvLayout::kHND;
  require_status(batch.validate(), StatusCode::kUnsupported, {"config.kv_layout = HND", "ragged"});
}

TEST_CASE("validation: window_left must be -1 or >= 0", "[validation]") {
  PagedBatch batch;
  batch.config.options.window_left = -2;
  require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.options.window_left = -2"});
  // Any window is accepted: one reaching past every key means no window.
  for (int32_t ok : {-1, 0, 7, 48, 1 << 30, std::numeric_limits<int32_t>::max() - 500,
                     std::numeric_limits<int32_t>::max()}) {
    batch.config.options.window_left = ok;
    require_ok(batch.validate());
  }
}

TEST_CASE("validation: logits_soft_cap and sm_scale must be finite and >= 0", "[validation]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  PagedBatch batch;
  SECTION("logits_soft_cap") {
    for (auto [bad, text] : {std::pair{-1.0f, "= -1"}, std::pair{nan, "= nan"}, std::pair{inf, "= inf"}}) {
      batch.config.options.logits_soft_cap = bad;
      require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.options.logits_soft_cap", text});
    }
    batch.config.options.logits_soft_cap = 30.0f;
    require_ok(batch.validate());
  }
  SECTION("sm_scale") {
    for (auto [bad, text] : {std::pair{-0.5f, "= -0.5"}, std::pair{nan, "= nan"}, std::pair{-inf, "= -inf"}}) {
      batch.config.options.sm_scale = bad;
      require_status(batch.validate(), StatusCode::kInvalidArgument, {"config.options.sm_scale", text});
    }
    batch.config.options.sm_scale = 0.125f;
    require_ok(batch.validate());
  }
}

TEST_CASE("validation: validate_prefill_config alone", "[validation]") {
  PagedBatch batch;
  require_ok(validate_prefill_config(batch.config));
  batch.config.num_kv_heads = 3;
  require_status(validate_prefill_config(batch.config), StatusCode::kInvalidArgument, {"config.num_kv_heads = 3"});
}

// ----------------------------------------------------------------------------
// validate_batch_indices
// ----------------------------------------------------------------------------

TEST_CASE("validation: num_requests must be >= 0; an empty batch is valid", "[validation]") {
  PagedBatch batch;
  BatchIndices indices = batch.indices();
  indices.num_requests = -1;
  require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                 {"indices.num_requests = -1"});
  indices.num_requests = 0;  // reads only qo_indptr[0] and kv_indptr[0]
  require_ok(validate_batch_indices(batch.config, indices));
}

TEST_CASE("validation: the block-table form", "[validation][device-page-table]") {
  // PagedBatch's lengths (20, 0, 48 keys in pages of 16) as a block table of
  // rows of 4 entries.
  PagedBatch batch;
  const std::vector<int32_t> kv_lens{20, 0, 48};
  BatchIndices indices{3, batch.qo_indptr.data(), nullptr, nullptr, nullptr, kv_lens.data(), 4};
  require_ok(validate_batch_indices(batch.config, indices));
  const detail::RequestKv second = detail::request_kv(batch.config, indices, 2);
  CHECK(second.start == 8);
  CHECK(second.len == 48);
  CHECK(detail::kv_units(indices) == 12);
  SECTION("paged only") {
    batch.config.kv_format = KvFormat::kRagged;
    batch.config.page_size = 0, batch.config.num_pages = 0;
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"the block-table form is for paged K/V"});
  }
  SECTION("stride positive") {
    indices.block_table_stride = 0;  // kv_lens alone still selects the form
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"indices.block_table_stride = 0 must be positive"});
  }
  SECTION("the CSR arrays null") {
    indices.kv_last_page_len = batch.kv_last_page_len.data();
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"must be null in the block-table form"});
  }
  SECTION("kv_lens given") {
    indices.kv_lens = nullptr;
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"indices.kv_lens is null", "3 entries"});
  }
  SECTION("a row holds the request's pages") {
    indices.block_table_stride = 2;  // 48 keys need 3 pages
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"indices.kv_lens[2] = 48 needs 3 pages", "indices.block_table_stride = 2"});
  }
  SECTION("lengths in [0, 2^30]") {
    const std::vector<int32_t> negative{20, -1, 48};
    indices.kv_lens = negative.data();
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"indices.kv_lens[1] = -1 is outside [0, 2^30"});
  }
  SECTION("entries fit int32") {
    indices.block_table_stride = 1 << 30;
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"3 * 1073741824 table entries exceed INT32_MAX"});
  }
  SECTION("a pool to name") {
    batch.config.num_pages = 0;
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"indices.kv_lens[0] = 20 but config.num_pages = 0"});
  }
  SECTION("causal: qo_len <= kv_len") {
    const std::vector<int32_t> short_first{4, 0, 48};  // request 0 has 5 queries
    indices.kv_lens = short_first.data();
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"request 0: qo_len = 5", "kv_len = 4"});
  }
}

TEST_CASE("workspace: sizes cover the batches of a capacity, and grow with it", "[validation][workspace]") {
  PagedBatch batch;  // 8 / 2 heads: GQA packing may pack 4 heads per tile
  const PlanCapacity small{4, 300, 64, 132};
  WorkspaceSizes sizes;
  REQUIRE(prefill_workspace_size(batch.config, small, &sizes).ok());
  CHECK(sizes.device_bytes % 256 == 0);
  CHECK(sizes.host_bytes <= sizes.device_bytes);
  // The rule's split states: at most 512 x SMs (token, chunk, head) states of
  // head_dim floats (fewer than 64 chunks of every query row here), which
  // dominate this small capacity.
  CHECK(sizes.device_bytes >= size_t(512) * 132 * size_t(batch.config.head_dim) * sizeof(float));
  WorkspaceSizes more_tokens, more_entries, unsplit, forced;
  // (The rule's split tiles and items, at most its states, dominate up to
  // 512 x 132 rows; these tokens' tiles exceed them.)
  REQUIRE(prefill_workspace_size(batch.config, {4, 3000000, 64, 132}, &more_tokens).ok());
  REQUIRE(prefill_workspace_size(batch.config, {4, 300, 6400, 132}, &more_entries).ok());
  CHECK(more_tokens.host_bytes > sizes.host_bytes);
  CHECK(more_entries.host_bytes >= sizes.host_bytes + 6336 * sizeof(int32_t));
  PrefillConfig config = batch.config;
  config.kv_splits = 1;
  REQUIRE(prefill_workspace_size(config, small, &unsplit).ok());
  CHECK(unsplit.device_bytes < sizes.device_bytes);
  config.kv_splits = 7;
  REQUIRE(prefill_workspace_size(config, small, &forced).ok());
  CHECK(forced.device_bytes >= size_t(300) * 7 * 8 * size_t(config.head_dim) * sizeof(float));
  SECTION("refused capacities") {
    require_status(prefill_workspace_size(batch.config, {-1, 300, 64, 132}, &sizes), StatusCode::kInvalidArgument,
                   {"capacity.max_requests = -1"});
    require_status(prefill_workspace_size(batch.config, {4, int64_t(1) << 31, 64, 132}, &sizes),
                   StatusCode::kInvalidArgument, {"capacity.max_q_tokens = 2147483648 is outside [0, 2^30]"});
    require_status(prefill_workspace_size(batch.config, {4, 1 << 30, 64, 132}, &sizes), StatusCode::kInvalidArgument,
                   {"capacity.max_q_tokens * config.num_qo_heads", "exceed INT32_MAX"});
    require_status(prefill_workspace_size(batch.config, {4, 300, -5, 132}, &sizes), StatusCode::kInvalidArgument,
                   {"capacity.max_kv_entries = -5"});
    require_status(prefill_workspace_size(batch.config, {4, 300, 64, -1}, &sizes), StatusCode::kInvalidArgument,
                   {"capacity.num_sms = -1"});
    require_status(prefill_workspace_size(batch.config, small, nullptr), StatusCode::kInvalidArgument,
                   {"sizes is null"});
  }
}

TEST_CASE("workspace: a batch larger than the workspace is refused before anything is written",
          "[validation][workspace]") {
  // One item per CTA and no split: the plan needs no SM count, so this runs
  // without a GPU up to the size check.
  PagedBatch batch;
  batch.config.schedule = WorkSchedule::kOneItemPerCta;
  batch.config.kv_splits = 1;
  PlanWorkspace workspace;  // no memory at all
  PrefillPlan plan;
  const Status refused = plan_prefill(batch.config, batch.indices(), workspace, plan);
  require_status(refused, StatusCode::kInvalidArgument, {"workspace.device_bytes = 0 is less than the", "bytes this batch needs"});
  CHECK_FALSE(plan.valid());
}

TEST_CASE("workspace: graph plans refuse choices made per batch, and batches beyond their capacity",
          "[validation][workspace][graph]") {
  // Everything here is refused before any CUDA call (num_sms is given).
  PagedBatch batch;  // 3 requests, 12 query tokens, 5 host page-table entries
  PlanCapacity capacity{4, 300, 64, 132};
  PlanWorkspace workspace;
  workspace.graph_capacity = &capacity;
  PrefillPlan plan;
  auto plan_it = [&] { return plan_prefill(batch.config, batch.indices(), workspace, plan); };
  require_status(plan_it(), StatusCode::kUnsupported, {"a graph plan needs config.kv_splits fixed"});
  batch.config.kv_splits = 1;
  require_status(plan_it(), StatusCode::kUnsupported, {"config.gqa_packing kOn or kOff"});
  batch.config.gqa_packing = GqaPacking::kOff;
  require_status(plan_it(), StatusCode::kUnsupported, {"config.kv_block kStandard or kWide"});
  batch.config.kv_block = KvBlock::kStandard;
  batch.config.schedule = WorkSchedule::kOneItemPerCta;
  require_status(plan_it(), StatusCode::kUnsupported, {"a graph plan needs the persistent schedule"});
  batch.config.schedule = WorkSchedule::kDynamic;
  require_status(plan_it(), StatusCode::kUnsupported,
                 {"a graph plan needs the persistent schedule", "the dynamic schedule is not made for graph plans"});
  batch.config.schedule = WorkSchedule::kAuto;
  capacity.max_requests = 2;
  require_status(plan_it(), StatusCode::kInvalidArgument,
                 {"indices.num_requests = 3 exceeds the graph capacity's max_requests = 2"});
  capacity.max_requests = 4, capacity.max_q_tokens = 10;
  require_status(plan_it(), StatusCode::kInvalidArgument,
                 {"12 query tokens exceed the graph capacity's max_q_tokens = 10"});
  capacity.max_q_tokens = 300, capacity.max_kv_entries = 4;
  require_status(plan_it(), StatusCode::kInvalidArgument,
                 {"indices.kv_indices holds 5 entries, more than the graph capacity's max_kv_entries = 4"});
  capacity.max_kv_entries = 0;  // the capacity's form: the table at run
  require_status(plan_it(), StatusCode::kInvalidArgument,
                 {"indices.kv_indices is given, but the graph capacity's max_kv_entries = 0"});
  BatchIndices at_run = batch.indices();
  at_run.kv_indices = nullptr;
  require_status(plan_prefill(batch.config, at_run, workspace, plan), StatusCode::kInvalidArgument,
                 {"the batch names 5 page-table entries given at run, more than the graph capacity's max_kv_units = 0"});
  capacity.max_kv_entries = 64;
  require_status(plan_prefill(batch.config, at_run, workspace, plan), StatusCode::kInvalidArgument,
                 {"indices.kv_indices is null (the page table comes at run), but the graph capacity's max_kv_entries = 64"});
  capacity.max_q_tokens = -1;
  require_status(plan_it(), StatusCode::kInvalidArgument, {"capacity.max_q_tokens = -1"});
  CHECK_FALSE(plan.valid());
}

TEST_CASE("workspace: a workspace of prefill_workspace_size's bytes is never refused for its size",
          "[validation][workspace][graph]") {
  // Graph and plain plans of a batch within the capacity, in a workspace of
  // exactly the size given for it (addresses that are never dereferenced:
  // without a GPU the plan stops at its first CUDA call, after the checks;
  // the plain plan takes one item per CTA so that no SM count is asked
  // before them).
  PagedBatch batch;
  batch.config.kv_splits = 3;
  batch.config.gqa_packing = GqaPacking::kOn;
  batch.config.kv_block = KvBlock::kStandard;
  PlanCapacity capacity{4, 300, 64, 132};
  WorkspaceSizes sizes;
  REQUIRE(prefill_workspace_size(batch.config, capacity, &sizes).ok());
  PlanWorkspace workspace{reinterpret_cast<void*>(uintptr_t(1) << 40), sizes.device_bytes,
                          reinterpret_cast<void*>(uintptr_t(1) << 41), sizes.host_bytes, nullptr};
  const PlanCapacity* const graphs[] = {nullptr, &capacity};
  for (const PlanCapacity* graph : graphs) {
    workspace.graph_capacity = graph;
    batch.config.schedule = graph ? WorkSchedule::kAuto : WorkSchedule::kOneItemPerCta;
    PrefillPlan plan;
    const Status status = plan_prefill(batch.config, batch.indices(), workspace, plan);
    INFO((graph ? "graph plan: " : "plain plan: ") << status.message);
    CHECK_THAT(status.message, !Catch::Contains("workspace.device_bytes") && !Catch::Contains("workspace.host_bytes"));
  }
}

TEST_CASE("validation: null index arrays", "[validation]") {
  PagedBatch batch;
  BatchIndices indices = batch.indices();
  SECTION("qo_indptr") {
    indices.qo_indptr = nullptr;
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"indices.qo_indptr is null", "4 entries"});
  }
  SECTION("kv_indptr") {
    indices.kv_indptr = nullptr;
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"indices.kv_indptr is null"});
  }
  SECTION("kv_indices with pages listed: the page table comes at run") {
    indices.kv_indices = nullptr;
    require_ok(validate_batch_indices(batch.config, indices));
    batch.config.num_pages = 0;  // ... which needs a pool
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"indices.kv_indices is null (the page table comes at run)", "config.num_pages = 0"});
  }
  SECTION("kv_last_page_len") {
    indices.kv_last_page_len = nullptr;
    require_status(validate_batch_indices(batch.config, indices), StatusCode::kInvalidArgument,
                   {"indices.kv_last_page_len is null"});
  }
  SECTION("ragged ignores the page arrays") {
    RaggedBatch ragged;
    require_ok(ragged.validate());
  }
}

TEST_CASE("validation: indptr[0] must be 0", "[validation]") {
  PagedBatch batch;
  SECTION("qo_indptr") {
    batch.qo_indptr = {2, 5, 5, 12};
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"indices.qo_indptr[0] = 2"});
  }
  SECTION("kv_indptr") {
    batch.kv_indptr = {1, 2, 2, 5};
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"indices.kv_indptr[0] = 1"});
  }
}

TEST_CASE("validation: indptr must be non-decreasing", "[validation]") {
  PagedBatch batch;
  SECTION("qo_indptr") {
    batch.qo_indptr = {0, 5, 3, 12};
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {"indices.qo_indptr[2] = 3 < indices.qo_indptr[1] = 5"});
  }
  SECTION("kv_indptr") {
    batch.kv_indptr = {0, 2, 1, 5};
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {"indices.kv_indptr[2] = 1 < indices.kv_indptr[1] = 2"});
  }
}

TEST_CASE("validation: page indices must lie in the pool", "[validation]") {
  PagedBatch batch;
  batch.config.num_pages = 4096;
  batch.config.options.causal = false;
  batch.qo_indptr = {0, 1};
  batch.kv_indptr = {0, 18};
  batch.kv_indices.assign(18, 0);
  batch.kv_last_page_len = {1};
  SECTION("past the end") {
    batch.kv_indices[17] = 4096;
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {"kv_indices[17] = 4096 is outside the page pool [0, 4096)"});
  }
  SECTION("negative") {
    batch.kv_indices[3] = -1;
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {"kv_indices[3] = -1 is outside the page pool [0, 4096)"});
  }
  SECTION("the last page and repeated pages are fine") {
    batch.kv_indices[17] = 4095;
    require_ok(batch.validate());
  }
}

TEST_CASE("validation: kv_last_page_len must be in [1, page_size] for a request with pages", "[validation]") {
  PagedBatch batch;
  for (int32_t bad : {0, 17, -1}) {
    batch.kv_last_page_len[2] = bad;
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {("indices.kv_last_page_len[2] = " + std::to_string(bad)).c_str(), "[1, config.page_size = 16]"});
  }
}

TEST_CASE("validation: a request without pages has kv_last_page_len 0 and kv_len 0", "[validation]") {
  PagedBatch batch;
  batch.kv_last_page_len[1] = 16;
  require_status(batch.validate(), StatusCode::kInvalidArgument,
                 {"indices.kv_last_page_len[1] = 16 must be 0", "owns no page"});
  // kv_len 0 with queries: fine without causal (the rows are fully masked), not with causal.
  batch.kv_last_page_len[1] = 0;
  batch.qo_indptr = {0, 5, 6, 13};
  require_status(batch.validate(), StatusCode::kInvalidArgument, {"request 1", "qo_len = 1", "kv_len = 0"});
  batch.config.options.causal = false;
  require_ok(batch.validate());
}

TEST_CASE("validation: causal needs qo_len <= kv_len", "[validation]") {
  PagedBatch batch;
  batch.kv_last_page_len[0] = 4;
  batch.kv_indptr = {0, 1, 1, 4};  // request 0: 1 page, kv_len 4 < qo_len 5
  batch.kv_indices = {3, 7, 1, 2};
  require_status(batch.validate(), StatusCode::kInvalidArgument, {"request 0", "qo_len = 5", "kv_len = 4", "causal"});
  batch.config.options.causal = false;
  require_ok(batch.validate());

  RaggedBatch ragged;
  ragged.kv_indptr = {0, 2, 30};  // request 0: kv_len 2 < qo_len 3
  require_status(ragged.validate(), StatusCode::kInvalidArgument, {"request 0", "qo_len = 3", "kv_len = 2"});
}

TEST_CASE("validation: kv_len is at most 2^30", "[validation]") {
  // One page repeated 2^20 times reaches the limit cheaply (repeated pages are allowed).
  PagedBatch batch;
  batch.config.page_size = 1024;
  batch.config.num_pages = 1;
  batch.config.options.causal = false;
  const int32_t pages = 1 << 20;
  batch.qo_indptr = {0, 1};
  batch.kv_indptr = {0, pages};
  batch.kv_indices.assign(pages, 0);
  batch.kv_last_page_len = {1024};  // 1024 * (2^20 - 1) + 1024 = 2^30
  require_ok(batch.validate());
  batch.kv_indptr = {0, pages + 1};
  batch.kv_indices.push_back(0);
  batch.kv_last_page_len = {1};  // 2^30 + 1
  require_status(batch.validate(), StatusCode::kInvalidArgument,
                 {"request 0: kv_len = config.page_size * (pages - 1) + indices.kv_last_page_len[0] = 1024 * 1048576 "
                  "+ 1 = 1073741825 exceeds the limit of 2^30 = 1073741824 tokens per request"});
  // Close to INT32_MAX, where rounding up to whole KV blocks used to wrap.
  const int32_t near_max_pages = 1 << 21;  // 1024 * (2^21 - 1) + 1000 = INT32_MAX - 23
  batch.kv_indptr = {0, near_max_pages};
  batch.kv_indices.assign(near_max_pages, 0);
  batch.kv_last_page_len = {1000};
  require_status(batch.validate(), StatusCode::kInvalidArgument, {"request 0: kv_len", "2147483624", "2^30"});
}

TEST_CASE("validation: query tokens and ragged K/V tokens are at most 2^30 per batch", "[validation]") {
  RaggedBatch batch;
  batch.config.num_qo_heads = 1;
  batch.config.num_kv_heads = 1;
  batch.config.options.causal = false;
  SECTION("query tokens") {
    batch.qo_indptr = {0, 3, 1 << 30};  // the limit: accepted
    require_ok(batch.validate());
    batch.qo_indptr = {0, 3, (1 << 30) + 1};
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {"indices.qo_indptr[num_requests] = 1073741825 query tokens exceed the limit of 2^30 = "
                    "1073741824 tokens per batch"});
    batch.qo_indptr = {0, 3, std::numeric_limits<int32_t>::max() - 126};  // used to plan 0 tiles
    require_status(batch.validate(), StatusCode::kInvalidArgument, {"query tokens exceed the limit of 2^30"});
  }
  SECTION("ragged K/V tokens") {
    batch.kv_indptr = {0, 4, 1 << 30};
    require_ok(batch.validate());
    batch.kv_indptr = {0, 4, (1 << 30) + 1};
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {"indices.kv_indptr[num_requests] = 1073741825 K/V tokens exceed the limit of 2^30 = "
                    "1073741824 tokens per batch"});
  }
}

TEST_CASE("validation: query and ragged K/V rows must fit int32", "[validation]") {
  SECTION("query rows") {
    RaggedBatch batch;
    batch.config.num_qo_heads = 1 << 20;
    batch.config.num_kv_heads = 1;
    batch.config.options.causal = false;
    batch.qo_indptr = {0, 4096};  // 2^12 * 2^20 = 2^32 rows
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {"indices.qo_indptr[num_requests] * config.num_qo_heads = 4096 * 1048576", "INT32_MAX"});
  }
  SECTION("ragged K/V rows") {
    RaggedBatch batch;
    batch.config.num_qo_heads = 4;
    batch.config.num_kv_heads = 4;
    batch.kv_indptr = {0, 4, 1 << 30};
    require_status(batch.validate(), StatusCode::kInvalidArgument,
                   {"indices.kv_indptr[num_requests] * config.num_kv_heads = 1073741824 * 4", "INT32_MAX"});
  }
}

// ----------------------------------------------------------------------------
// validate_prefill_tensors (run_prefill)
// ----------------------------------------------------------------------------

namespace {

// Fake, well-separated and 256-byte aligned device addresses: validation never dereferences them.
void* fake_device_pointer(uintptr_t slot) { return reinterpret_cast<void*>((slot + 1) << 32); }

struct TensorCase {
  PagedBatch batch;
  int64_t plan_num_q_tokens = 12;  // qo_indptr[3]
  int64_t plan_num_kv_rows = 5;    // kv_indptr[3] pages used
  PrefillTensors tensors{fake_device_pointer(0),
                         fake_device_pointer(1),
                         fake_device_pointer(2),
                         fake_device_pointer(3),
                         static_cast<float*>(fake_device_pointer(4)),
                         12,
                         8};

  bool device_page_table = false;  // the plan was made without host kv_indices

  Status validate() const {
    return validate_prefill_tensors(batch.config, plan_num_q_tokens, plan_num_kv_rows, tensors, device_page_table);
  }
};

}  // namespace

TEST_CASE("validation: valid tensors pass", "[validation]") { require_ok(TensorCase().validate()); }

TEST_CASE("validation: row strides of q and o", "[validation][strided]") {
  TensorCase t;  // 12 tokens of 8 heads x head_dim
  const int64_t row = 8 * int64_t(t.batch.config.head_dim);
  t.tensors.q_row_stride = row + 2 * 2 * t.batch.config.head_dim;  // a fused QKV row
  t.tensors.o_row_stride = row + 8;
  require_ok(t.validate());
  SECTION("shorter than a row") {
    t.tensors.o_row_stride = row - 8;
    const std::string named = "tensors.o_row_stride = " + std::to_string(row - 8);
    require_status(t.validate(), StatusCode::kInvalidArgument,
                   {named.c_str(), "must be 0 (contiguous) or a multiple of 8"});
  }
  SECTION("not 16-byte rows") {
    t.tensors.q_row_stride = row + 4;
    const std::string named = "tensors.q_row_stride = " + std::to_string(row + 4);
    require_status(t.validate(), StatusCode::kInvalidArgument, {named.c_str()});
  }
  SECTION("negative") {
    t.tensors.q_row_stride = -8;
    require_status(t.validate(), StatusCode::kInvalidArgument, {"tensors.q_row_stride = -8"});
  }
  SECTION("the strided span counts for overlaps") {
    // o starts inside the last q row's span only when q's rows are strided.
    const int64_t q_span_bytes = (11 * t.tensors.q_row_stride + row) * 2;
    t.tensors.o = static_cast<char*>(const_cast<void*>(t.tensors.q)) + (q_span_bytes - 256);
    require_status(t.validate(), StatusCode::kInvalidArgument, {"tensors.o", "overlaps tensors.q"});
    t.tensors.q_row_stride = 0;  // contiguous q ends before o
    require_ok(t.validate());
  }
}

TEST_CASE("validation: the stride of k and v", "[validation][strided]") {
  TensorCase t;  // 8 pages of page_size x num_kv_heads x head_dim
  const PrefillConfig& c = t.batch.config;
  const int64_t page = int64_t(c.page_size) * c.num_kv_heads * c.head_dim;
  SECTION("a combined cache: k and v pages interleaved") {
    t.tensors.kv_stride = 2 * page;
    t.tensors.v = static_cast<const char*>(t.tensors.k) + page * 2;
    require_ok(t.validate());
  }
  SECTION("shorter than a page") {
    t.tensors.kv_stride = page - 8;
    const std::string named = "tensors.kv_stride = " + std::to_string(page - 8);
    require_status(t.validate(), StatusCode::kInvalidArgument,
                   {named.c_str(), "must be 0 (contiguous) or a multiple of 8", "page_size * num_kv_heads * head_dim"});
  }
  SECTION("not in 16-byte units") {
    t.tensors.kv_stride = page + 4;
    require_status(t.validate(), StatusCode::kInvalidArgument, {"tensors.kv_stride = "});
  }
  SECTION("ragged: at least a row") {
    t.batch.config.kv_format = KvFormat::kRagged;
    const int64_t row = int64_t(c.num_kv_heads) * c.head_dim;
    t.tensors.kv_stride = row - 8;
    require_status(t.validate(), StatusCode::kInvalidArgument, {"num_kv_heads * head_dim = "});
    t.tensors.kv_stride = row + 8;
    require_ok(t.validate());
  }
  SECTION("the strided span counts for overlaps") {
    // o starts inside the last page of k only when k's pages are strided.
    t.tensors.kv_stride = 2 * page;
    const int64_t k_span_bytes = (7 * t.tensors.kv_stride + page) * 2;
    t.tensors.o = static_cast<char*>(const_cast<void*>(t.tensors.k)) + (k_span_bytes - 256);
    require_status(t.validate(), StatusCode::kInvalidArgument, {"tensors.o", "overlaps tensors.k"});
    t.tensors.kv_stride = 0;  // contiguous k ends before o
    require_ok(t.validate());
  }
}

TEST_CASE("validation: the page table at run", "[validation][device-page-table]") {
  TensorCase t;
  SECTION("refused where the plan holds its own copy") {
    t.tensors.kv_indices = static_cast<const int32_t*>(fake_device_pointer(5));
    require_status(t.validate(), StatusCode::kInvalidArgument,
                   {"tensors.kv_indices = ", "must be null: the plan was made with host indices.kv_indices"});
  }
  SECTION("refused for ragged K/V") {
    t.batch.config.kv_format = KvFormat::kRagged;
    t.tensors.kv_indices = static_cast<const int32_t*>(fake_device_pointer(5));
    require_status(t.validate(), StatusCode::kInvalidArgument, {"must be null: ragged K/V has no page table"});
  }
  t.device_page_table = true;
  SECTION("required where the plan was made without one") {
    require_status(t.validate(), StatusCode::kInvalidArgument,
                   {"tensors.kv_indices is null", "lists 5 pages", "reads the page table from the device at run"});
  }
  SECTION("not required when no page is listed") {
    t.plan_num_kv_rows = 0;
    require_ok(t.validate());
  }
  SECTION("4-byte aligned") {
    t.tensors.kv_indices =
        reinterpret_cast<const int32_t*>(static_cast<const char*>(fake_device_pointer(5)) + 2);
    require_status(t.validate(), StatusCode::kInvalidArgument, {"tensors.kv_indices", "is not 4-byte aligned"});
  }
  SECTION("given: valid") {
    t.tensors.kv_indices = static_cast<const int32_t*>(fake_device_pointer(5));
    require_ok(t.validate());
  }
  SECTION("an output over the table is refused") {
    t.tensors.kv_indices = static_cast<const int32_t*>(t.tensors.o);
    require_status(t.validate(), StatusCode::kInvalidArgument, {"tensors.o", "overlaps tensors.kv_indices"});
  }
}

TEST_CASE("validation: tensor counts must match the plan", "[validation]") {
  TensorCase paged;
  SECTION("num_q_tokens") {
    paged.tensors.num_q_tokens = 11;
    require_status(paged.validate(), StatusCode::kPlanMismatch, {"tensors.num_q_tokens = 11", "plan's 12"});
  }
  SECTION("paged num_kv_rows is the pool size") {
    paged.tensors.num_kv_rows = 5;  // pages used, not the pool
    require_status(paged.validate(), StatusCode::kPlanMismatch, {"tensors.num_kv_rows = 5", "8 pages"});
  }
  SECTION("ragged num_kv_rows is at least the planned row count") {
    TensorCase ragged;
    ragged.batch.config.kv_format = KvFormat::kRagged;
    ragged.plan_num_kv_rows = 30;
    ragged.tensors.num_kv_rows = 29;
    require_status(ragged.validate(), StatusCode::kPlanMismatch, {"tensors.num_kv_rows = 29", "plan's 30"});
    for (int64_t rows : {30, 31}) {  // padding rows after the last request are allowed
      ragged.tensors.num_kv_rows = rows;
      require_ok(ragged.validate());
    }
    // ... but the rows must still fit int32 row indices (config: 2 K/V heads).
    // The outputs move far away so the large K/V ranges overlap neither.
    ragged.tensors.o = reinterpret_cast<void*>(uintptr_t(1) << 50);
    ragged.tensors.lse = reinterpret_cast<float*>(uintptr_t(1) << 51);
    ragged.tensors.num_kv_rows = std::numeric_limits<int32_t>::max() / 2;
    require_ok(ragged.validate());
    for (int64_t rows : {int64_t(std::numeric_limits<int32_t>::max() / 2) + 1, std::numeric_limits<int64_t>::max()}) {
      ragged.tensors.num_kv_rows = rows;
      require_status(ragged.validate(), StatusCode::kInvalidArgument,
                     {("tensors.num_kv_rows * config.num_kv_heads = " + std::to_string(rows) + " * 2").c_str(),
                      "INT32_MAX"});
    }
  }
}

TEST_CASE("validation: null tensor pointers", "[validation]") {
  TensorCase c;
  SECTION("q") {
    c.tensors.q = nullptr;
    require_status(c.validate(), StatusCode::kInvalidArgument, {"tensors.q is null"});
  }
  SECTION("k") {
    c.tensors.k = nullptr;
    require_status(c.validate(), StatusCode::kInvalidArgument, {"tensors.k is null"});
  }
  SECTION("v") {
    c.tensors.v = nullptr;
    require_status(c.validate(), StatusCode::kInvalidArgument, {"tensors.v is null"});
  }
  SECTION("o") {
    c.tensors.o = nullptr;
    require_status(c.validate(), StatusCode::kInvalidArgument, {"tensors.o is null"});
  }
  SECTION("null is fine for an empty tensor") {
    c.plan_num_q_tokens = 0;
    c.tensors.num_q_tokens = 0;
    c.tensors.q = nullptr;
    c.tensors.o = nullptr;
    require_ok(c.validate());
  }
}

TEST_CASE("validation: return_lse needs lse", "[validation]") {
  TensorCase c;
  c.batch.config.options.return_lse = true;
  c.tensors.lse = nullptr;
  require_status(c.validate(), StatusCode::kInvalidArgument, {"tensors.lse is null", "config.options.return_lse"});
  c.batch.config.options.return_lse = false;  // lse is then never written
  require_ok(c.validate());
}

TEST_CASE("validation: tensor pointers must be 16-byte aligned", "[validation]") {
  TensorCase c;
  c.batch.config.options.return_lse = true;
  SECTION("k") {
    c.tensors.k = static_cast<const char*>(c.tensors.k) + 8;
    require_status(c.validate(), StatusCode::kInvalidArgument, {"tensors.k = 0x", "is not 16-byte aligned"});
  }
  SECTION("o") {
    c.tensors.o = static_cast<char*>(c.tensors.o) + 2;
    require_status(c.validate(), StatusCode::kInvalidArgument, {"tensors.o = 0x", "is not 16-byte aligned"});
  }
  SECTION("lse") {
    c.tensors.lse += 1;
    require_status(c.validate(), StatusCode::kInvalidArgument, {"tensors.lse = 0x", "is not 16-byte aligned"});
  }
}

TEST_CASE("validation: outputs must not overlap inputs or each other", "[validation]") {
  TensorCase c;
  c.batch.config.options.return_lse = true;
  SECTION("o is q (in place)") {
    c.tensors.o = const_cast<void*>(c.tensors.q);
    require_status(c.validate(), StatusCode::kInvalidArgument, {"tensors.o [", "overlaps tensors.q"});
  }
  SECTION("lse inside the v pool") {
    c.tensors.lse = reinterpret_cast<float*>(static_cast<char*>(const_cast<void*>(c.tensors.v)) + 4096);
    require_status(c.validate(), StatusCode::kInvalidArgument, {"tensors.lse [", "overlaps tensors.v"});
  }
  SECTION("lse right after o is fine") {
    const int64_t o_bytes = 12 * c.batch.config.num_qo_heads * c.batch.config.head_dim * 2;
    c.tensors.lse = reinterpret_cast<float*>(static_cast<char*>(c.tensors.o) + o_bytes);
    require_ok(c.validate());
  }
}
