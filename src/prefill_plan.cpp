// plan_prefill: validates a batch and turns it into the kernel's work list.
#include "prefill_plan.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "prefill_schedule.hpp"
#include "status.hpp"
#include "validate.hpp"

namespace ptxattn {

using detail::KvBlockRange;
using detail::RequestInfo;
using detail::WorkTile;

// NOTES: per-page TMA pays a large fixed cost per request, so below this page
// size the cp.async gather feeds shared memory faster (measured in the real
// kernel, each path forced: docs/kernels.md, "Load paths").
constexpr int32_t kTmaMinPageSize = 64;

DeviceArena::~DeviceArena() {
  if (ptr_) cudaFree(ptr_);
}

Status DeviceArena::reserve(size_t bytes) {
  if (bytes > capacity_) {
    if (ptr_) PTXATTN_CUDA_RETURN_IF_ERROR(cudaFree(ptr_));
    ptr_ = nullptr;
    capacity_ = 0;
    PTXATTN_CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr_, bytes));
    capacity_ = bytes;
  }
  return Status::Ok();
}

Status DeviceArena::release() {
  if (ptr_) PTXATTN_CUDA_RETURN_IF_ERROR(cudaFree(ptr_));
  ptr_ = nullptr;
  capacity_ = 0;
  return Status::Ok();
}

Status DeviceArena::upload(const void* host, size_t bytes) {
  PTXATTN_RETURN_IF_ERROR(reserve(bytes));
  if (bytes > 0) PTXATTN_CUDA_RETURN_IF_ERROR(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice));
  return Status::Ok();
}

PinnedArena::~PinnedArena() {
  if (ptr_) cudaFreeHost(ptr_);
}

Status PinnedArena::reserve(size_t bytes) {
  if (bytes > capacity_) {
    if (ptr_) PTXATTN_CUDA_RETURN_IF_ERROR(cudaFreeHost(ptr_));
    ptr_ = nullptr;
    capacity_ = 0;
    PTXATTN_CUDA_RETURN_IF_ERROR(cudaHostAlloc(&ptr_, bytes, cudaHostAllocPortable));
    capacity_ = bytes;
  }
  return Status::Ok();
}

PrefillPlanImpl::~PrefillPlanImpl() {
  if (uploaded != nullptr) cudaEventDestroy(uploaded);
}

Status PrefillPlanImpl::release_buffers() {
  if (uploaded != nullptr) {  // an event of the old device: recorded on none of the new one's streams
    PTXATTN_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(uploaded));
    PTXATTN_CUDA_RETURN_IF_ERROR(cudaEventDestroy(uploaded));
    uploaded = nullptr;
  }
  return owned_device.release();
}

Status PrefillPlanImpl::check_device() const {
  int current = -1;
  PTXATTN_CUDA_RETURN_IF_ERROR(cudaGetDevice(&current));
  if (current != device)
    return detail::plan_mismatch("the current device is ", current, " but the plan was made on device ", device,
                                 ": its buffers live there (plan again on this device, or cudaSetDevice(", device,
                                 ") first)");
  return Status::Ok();
}

namespace detail {

PlanLayout plan_layout(const PlanCounts& c) {
  PlanLayout layout;
  size_t end = 0;
  auto place = [&](int64_t count, size_t element_bytes) {
    const size_t offset = (end + kWorkspaceAlignment - 1) / kWorkspaceAlignment * kWorkspaceAlignment;
    end = offset + size_t(count) * element_bytes;
    return offset;
  };
  layout.requests = place(c.requests, sizeof(RequestInfo));
  layout.tiles = place(c.tiles, sizeof(WorkTile));
  layout.cta_indptr = place(c.cta_indptr, sizeof(int32_t));
  layout.items = place(c.items, sizeof(int32_t));
  layout.kv_entries = place(c.kv_entries, sizeof(int32_t));
  layout.page_table_error = place(c.page_table_error ? 1 : 0, sizeof(unsigned long long));
  layout.live_q_tokens = place(c.live_q_tokens ? 1 : 0, sizeof(int64_t));
  layout.state_indptr = place(c.state_indptr, sizeof(int32_t));
  layout.uploaded_bytes = end;
  layout.partial_o = place(c.partial_states * c.head_dim, sizeof(float));
  layout.partial_lse = place(c.partial_states, sizeof(float));
  layout.work_counter = place(c.work_counter ? 1 : 0, sizeof(int32_t));
  layout.device_bytes = end;
  return layout;
}

const char* wide_kv_block_obstacle(const PrefillConfig& c, KvLoadPath path, int32_t window_left) {
  if (c.head_dim != 128) return "config.head_dim is not 128";
  if (c.kv_format != KvFormat::kRagged) return "config.kv_format is kPaged";
  if (path != KvLoadPath::kTma) return "config.load_path is kGather (the wide block is built for the TMA path only)";
  if (c.options.causal) return "config.options.causal is set";
  if (window_left >= 0) return "config.options.window_left is below the batch's longest kv_len";
  if (c.schedule == WorkSchedule::kDynamic) return "config.schedule is kDynamic (its kernels walk the standard block only)";
  return nullptr;
}

double work_weighted_kv_len(const std::vector<RequestInfo>& requests) {
  // A request's work is qo_len x kv_len scores; weighting each kv_len by it
  // gives the KV length of the average score.
  double work = 0, weighted = 0;
  for (const RequestInfo& r : requests) {
    const double scores = double(r.qo_len) * double(r.kv_len);
    work += scores;
    weighted += scores * double(r.kv_len);
  }
  return work > 0 ? weighted / work : 0;
}

int32_t auto_block_kv(const PrefillConfig& c, KvLoadPath path, int32_t window_left,
                      const std::vector<RequestInfo>& requests) {
  const bool wide =
      wide_kv_block_obstacle(c, path, window_left) == nullptr && work_weighted_kv_len(requests) >= kWideBlockMinKvLen;
  return prefill_block_kv(c.head_dim, wide);
}

const char* deep_kv_ring_obstacle(int32_t head_dim, KvLoadPath path, int32_t block_kv) {
  if (head_dim != 128) return "config.head_dim is not 128";
  if (path != KvLoadPath::kGather) return "the load path is kTma (the deep ring is built for the gather path only)";
  if (block_kv != prefill_block_kv(head_dim, false)) return "the KV block is the wide one (3 stages do not fit)";
  return nullptr;
}

}  // namespace detail

bool tma_load_path_supported(const PrefillConfig& c) {
  if (c.kv_format == KvFormat::kRagged) return true;
  const int32_t block_kv = detail::prefill_block_kv(c.head_dim, false);  // paged K/V never take the wide block
  if (c.page_size <= 0 || block_kv <= 0) return false;
  return c.page_size >= block_kv ? c.page_size % block_kv == 0 : block_kv % c.page_size == 0;
}

namespace {

Status resolve_load_path(const PrefillConfig& c, KvLoadPath* path) {
  if (c.kv_format == KvFormat::kRagged) {
    // Contiguous K/V rows: one 3-D box per block, no page table to gather through.
    *path = c.load_path == KvLoadPath::kGather ? KvLoadPath::kGather : KvLoadPath::kTma;
    return Status::Ok();
  }
  const bool tma_ok = tma_load_path_supported(c);
  switch (c.load_path) {
    case KvLoadPath::kTma:
      if (!tma_ok)
        return detail::unsupported("load_path = kTma needs page_size to divide or be a multiple of the KV block (",
                                   detail::prefill_block_kv(c.head_dim, false), " rows at head_dim ", c.head_dim,
                                   "); page_size = ", c.page_size);
      *path = KvLoadPath::kTma;
      return Status::Ok();
    case KvLoadPath::kGather: *path = KvLoadPath::kGather; return Status::Ok();
    case KvLoadPath::kAuto:
      *path = tma_ok && c.page_size >= kTmaMinPageSize ? KvLoadPath::kTma : KvLoadPath::kGather;
      return Status::Ok();
  }
  return detail::invalid_argument("load_path = ", int(c.load_path), " is not a KvLoadPath");
}

Status resolve_block_kv(const PrefillConfig& c, KvLoadPath path, int32_t window_left,
                        const std::vector<RequestInfo>& requests, int32_t* block_kv) {
  switch (c.kv_block) {
    case KvBlock::kStandard: *block_kv = detail::prefill_block_kv(c.head_dim, false); return Status::Ok();
    case KvBlock::kWide:
      if (const char* obstacle = detail::wide_kv_block_obstacle(c, path, window_left); obstacle != nullptr)
        return detail::unsupported("kv_block = kWide needs head_dim 128, ragged K/V on the TMA path, no causal mask, "
                                   "no window shorter than the longest kv_len and a schedule other than kDynamic, but ",
                                   obstacle);
      *block_kv = detail::kWideBlockKV;
      return Status::Ok();
    case KvBlock::kAuto: *block_kv = detail::auto_block_kv(c, path, window_left, requests); return Status::Ok();
  }
  return detail::invalid_argument("kv_block = ", int(c.kv_block), " is not a KvBlock");
}

Status resolve_tile_heads(const PrefillConfig& c, const std::vector<RequestInfo>& requests, int32_t* heads_log2) {
  const int32_t group = c.num_qo_heads / c.num_kv_heads;
  const bool packable = detail::gqa_packable(group);
  switch (c.gqa_packing) {
    case GqaPacking::kOff: *heads_log2 = 0; return Status::Ok();
    case GqaPacking::kOn:
      if (!packable)
        return detail::unsupported("gqa_packing = kOn needs the GQA group (num_qo_heads / num_kv_heads = ", group,
                                   ") to divide 128, the query tile's rows");
      *heads_log2 = detail::log2_of(group);
      return Status::Ok();
    case GqaPacking::kAuto:
      *heads_log2 = packable && detail::gqa_packing_pays(requests, group) ? detail::log2_of(group) : 0;
      return Status::Ok();
  }
  return detail::invalid_argument("gqa_packing = ", int(c.gqa_packing), " is not a GqaPacking");
}

// NOTES: the persistent schedule measured faster than one CTA per item on
// every shape where both ran, on both load paths (docs/benchmarks.md,
// "2026-12-04, second session": +2% to +19%); detail::auto_schedule has
// where the dynamic one measured faster still. kAuto is left as it is here:
// that rule needs the chunk count, which comes later.
Status resolve_schedule(const PrefillConfig& c, int64_t num_items, WorkSchedule* schedule) {
  const bool listed = num_items <= detail::kMaxListedItems;
  switch (c.schedule) {
    case WorkSchedule::kPersistent:
      if (!listed)
        return detail::unsupported("schedule = kPersistent lists at most ", detail::kMaxListedItems,
                                   " work items (128-row tiles x head groups x KV chunks); the batch has ", num_items);
      *schedule = WorkSchedule::kPersistent;
      return Status::Ok();
    case WorkSchedule::kOneItemPerCta: *schedule = WorkSchedule::kOneItemPerCta; return Status::Ok();
    case WorkSchedule::kDynamic:
      if (!listed)
        return detail::unsupported("schedule = kDynamic lists at most ", detail::kMaxListedItems,
                                   " work items (128-row tiles x head groups x KV chunks); the batch has ", num_items);
      *schedule = WorkSchedule::kDynamic;
      return Status::Ok();
    case WorkSchedule::kAuto:
      if (c.max_ctas > 0 && !listed)
        return detail::unsupported("config.max_ctas = ", c.max_ctas, " needs the persistent schedule, which lists at most ",
                                   detail::kMaxListedItems, " work items (128-row tiles x head groups x KV chunks); the batch has ",
                                   num_items);
      *schedule = WorkSchedule::kAuto;
      return Status::Ok();
  }
  return detail::invalid_argument("schedule = ", int(c.schedule), " is not a WorkSchedule");
}

}  // namespace

namespace {

// The SM count of the current device.
Status current_device_sms(int32_t* sms) {
  int device = 0;
  PTXATTN_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  PTXATTN_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, device));
  return Status::Ok();
}

// A forced K/V ring (config.kv_stages > 0) where a kernel with it is built
// (0: the head dim's ring).
Status check_forced_kv_stages(const PrefillConfig& c, KvLoadPath path, int32_t block_kv) {
  const int32_t standard = detail::default_kv_stages(c.head_dim);
  if (c.kv_stages == 0 || c.kv_stages == standard) return Status::Ok();
  if (c.kv_stages == detail::kDeepKvStages) {
    if (const char* obstacle = detail::deep_kv_ring_obstacle(c.head_dim, path, block_kv); obstacle != nullptr)
      return detail::unsupported("kv_stages = ", detail::kDeepKvStages,
                                 " needs head_dim 128 on the gather path with the standard KV block, but ", obstacle);
    return Status::Ok();
  }
  return detail::unsupported("kv_stages = ", c.kv_stages, " has no kernel at head_dim ", c.head_dim, ": ", standard,
                             c.head_dim == 128 ? ", or 3 on the gather path" : "", " (0: the head dim's ring)");
}

// Checks a capacity against a valid config and fills in its SM count.
Status check_capacity(const PrefillConfig& config, const PlanCapacity& capacity, int32_t* sms) {
  if (capacity.max_requests < 0)
    return detail::invalid_argument("capacity.max_requests = ", capacity.max_requests, " must be >= 0");
  if (capacity.max_q_tokens < 0 || capacity.max_q_tokens > kMaxTokens)
    return detail::invalid_argument("capacity.max_q_tokens = ", capacity.max_q_tokens, " is outside [0, 2^30]");
  if (capacity.max_q_tokens * config.num_qo_heads > kMaxRows)
    return detail::invalid_argument("capacity.max_q_tokens * config.num_qo_heads = ", capacity.max_q_tokens, " * ",
                                    config.num_qo_heads, " query rows exceed INT32_MAX, which no batch may");
  if (capacity.max_kv_entries < 0 || capacity.max_kv_entries > std::numeric_limits<int32_t>::max())
    return detail::invalid_argument("capacity.max_kv_entries = ", capacity.max_kv_entries,
                                    " is outside [0, INT32_MAX]");
  if (capacity.num_sms < 0) return detail::invalid_argument("capacity.num_sms = ", capacity.num_sms, " must be >= 0");
  if (capacity.max_kv_units < 0 || capacity.max_kv_units > std::numeric_limits<int32_t>::max())
    return detail::invalid_argument("capacity.max_kv_units = ", capacity.max_kv_units, " is outside [0, INT32_MAX]");
  *sms = capacity.num_sms;
  if (*sms == 0) PTXATTN_RETURN_IF_ERROR(current_device_sms(sms));
  return Status::Ok();
}

// Upper bounds of what any batch within a (checked) capacity makes a plan
// of `config` hold. A request's tiles hold at least one token each and at
// most 128 rows, so its ceil(rows / 128) tiles are at most rows / 128 + 1
// and at most its tokens; GQA packing gives rows = tokens x group per KV
// group.
detail::PlanCounts capacity_counts(const PrefillConfig& config, const PlanCapacity& capacity, int32_t sms) {
  const int64_t q = capacity.max_q_tokens, r = capacity.max_requests;
  const int32_t group = config.num_qo_heads / config.num_kv_heads;
  auto tiles_for = [&](int64_t rows_per_token) { return std::min(q, q * rows_per_token / 128 + r); };
  const bool token_major = config.gqa_packing != GqaPacking::kOn || !detail::gqa_packable(group);
  const bool packed = config.gqa_packing != GqaPacking::kOff && detail::gqa_packable(group);
  int64_t tiles = 0, items = 0;
  if (token_major) tiles = tiles_for(1), items = tiles_for(1) * config.num_qo_heads;
  if (packed) tiles = std::max(tiles, tiles_for(group)), items = std::max(items, tiles_for(group) * config.num_kv_heads);
  int64_t states = 0, state_indptr = 0;
  if (config.kv_splits > 1) {
    tiles *= config.kv_splits, items *= config.kv_splits;
    states = q * config.kv_splits * config.num_qo_heads;
  } else if (config.kv_splits == 0) {
    // The rule keeps its partial states (the chunks of each query row of
    // a split tile) within kAutoSplitStatesPerSm x SMs. The chunks of a
    // split tile add to the unsplit tiles: each holds a token's states of
    // every qo head at least, and each of their items a query row's, so
    // they are as many at most. The merge finds each token's states through
    // an offset per token.
    states = std::min<int64_t>(detail::kAutoSplitStatesPerSm * sms, q * detail::kMaxKvSplits * config.num_qo_heads);
    tiles += std::min<int64_t>(states / config.num_qo_heads, q * detail::kMaxKvSplits);
    items += states;
    state_indptr = q + 1;
  }
  // Query rows (tokens x heads) are at most 2^31, so every count here is at
  // most 2^31 x 64 (chunks) and the bytes at most 2^47 per region: the
  // layout's sums cannot wrap.
  detail::PlanCounts counts;
  counts.requests = r;
  counts.tiles = tiles;
  counts.cta_indptr = int64_t(config.max_ctas > 0 ? config.max_ctas : sms) + 1;
  counts.items = std::min(items, detail::kMaxListedItems);
  counts.kv_entries = config.kv_format == KvFormat::kPaged ? capacity.max_kv_entries : 0;
  counts.page_table_error = config.kv_format == KvFormat::kPaged;
  counts.partial_states = states;
  counts.state_indptr = state_indptr;
  counts.head_dim = config.head_dim;
  counts.live_q_tokens = true;  // graph plans use it; the sizes must hold for them too
  return counts;
}

// What a graph plan asks of its config and batch: every choice the plan
// would otherwise make per batch forced, and the batch within the capacity.
Status check_graph_plan(const PrefillConfig& config, const BatchIndices& indices, const PlanCapacity& capacity,
                        int32_t* sms) {
  PTXATTN_RETURN_IF_ERROR(check_capacity(config, capacity, sms));
  if (config.kv_splits == 0)
    return detail::unsupported("a graph plan needs config.kv_splits fixed (1 to 64): the rule's count depends on "
                               "the batch");
  if (config.gqa_packing == GqaPacking::kAuto)
    return detail::unsupported("a graph plan needs config.gqa_packing kOn or kOff: kAuto depends on the batch");
  if (config.kv_block == KvBlock::kAuto)
    return detail::unsupported("a graph plan needs config.kv_block kStandard or kWide: kAuto depends on the batch");
  if (config.schedule == WorkSchedule::kOneItemPerCta)
    return detail::unsupported("a graph plan needs the persistent schedule (config.schedule kAuto or kPersistent): "
                               "one item per CTA sizes the grid by the batch");
  if (config.schedule == WorkSchedule::kDynamic)
    return detail::unsupported("a graph plan needs the persistent schedule (config.schedule kAuto or kPersistent): "
                               "the dynamic schedule is not made for graph plans");
  const int32_t n = indices.num_requests;
  if (n > capacity.max_requests)
    return detail::invalid_argument("indices.num_requests = ", n, " exceeds the graph capacity's max_requests = ",
                                    capacity.max_requests);
  if (indices.qo_indptr[n] > capacity.max_q_tokens)
    return detail::invalid_argument("indices.qo_indptr[num_requests] = ", indices.qo_indptr[n],
                                    " query tokens exceed the graph capacity's max_q_tokens = ", capacity.max_q_tokens);
  // The form of the page table is part of the launch (which table the
  // kernel reads), so it is the capacity's, and what the captured tensors
  // hold bounds what a batch may name.
  const bool paged = config.kv_format == KvFormat::kPaged;
  const bool table_at_run = paged && indices.kv_indices == nullptr;
  if (paged && table_at_run != (capacity.max_kv_entries == 0))
    return detail::invalid_argument(
        table_at_run ? "indices.kv_indices is null (the page table comes at run), but the graph capacity's "
                       "max_kv_entries = "
                     : "indices.kv_indices is given, but the graph capacity's max_kv_entries = ",
        capacity.max_kv_entries, ": a graph plan keeps one form of the page table (max_kv_entries 0: at run)");
  const int64_t units = detail::kv_units(indices);
  if (paged && !table_at_run && units > capacity.max_kv_entries)
    return detail::invalid_argument("indices.kv_indices holds ", units,
                                    " entries, more than the graph capacity's max_kv_entries = ",
                                    capacity.max_kv_entries);
  if ((!paged || table_at_run) && units > capacity.max_kv_units)
    return detail::invalid_argument("the batch names ", units, paged ? " page-table entries given at run" : " K/V rows",
                                    ", more than the graph capacity's max_kv_units = ", capacity.max_kv_units,
                                    " (what the captured tensors hold)");
  return Status::Ok();
}

// plan_prefill into the caller's workspace, or (workspace null) into the
// plan's own, grown as needed and uploaded synchronously.
Status plan_batch(const PrefillConfig& config, const BatchIndices& indices, const PlanWorkspace* workspace,
                  PrefillPlan& plan) {
  if (plan.impl() == nullptr) plan = PrefillPlan();  // a moved-from plan becomes a fresh one
  PrefillPlanImpl& impl = *plan.impl();
  impl.valid = false;
  PTXATTN_RETURN_IF_ERROR(validate_prefill_config(config));
  PTXATTN_RETURN_IF_ERROR(validate_batch_indices(config, indices));
  KvLoadPath path{};
  PTXATTN_RETURN_IF_ERROR(resolve_load_path(config, &path));
  const PlanCapacity* graph = workspace != nullptr ? workspace->graph_capacity : nullptr;
  int32_t graph_sms = 0;
  if (graph != nullptr) PTXATTN_RETURN_IF_ERROR(check_graph_plan(config, indices, *graph, &graph_sms));

  const bool paged = config.kv_format == KvFormat::kPaged;
  const int32_t n = indices.num_requests;
  std::vector<RequestInfo> requests(n);
  for (int32_t b = 0; b < n; ++b) {
    RequestInfo& r = requests[b];
    r.qo_start = indices.qo_indptr[b];
    r.qo_len = indices.qo_indptr[b + 1] - indices.qo_indptr[b];
    const detail::RequestKv kv = detail::request_kv(config, indices, b);
    r.kv_start = kv.start;
    r.kv_len = kv.len;
  }

  // A query sits at a position below its request's kv_len, so a window
  // reaching back kv_len keys or more hides nothing: such a window is off.
  // Every window the kernel sees is then below kMaxTokens, which keeps its
  // position arithmetic inside int32 (validate.hpp).
  int32_t max_kv_len = 0;
  for (const RequestInfo& r : requests) max_kv_len = std::max(max_kv_len, r.kv_len);
  // A graph plan's launch must not depend on the batch: there the window is
  // off only where it reaches past every possible key (2^30, which keeps the
  // same bound); a window between a batch's longest kv_len and that hides
  // nothing either.
  const int32_t window_end = graph != nullptr ? int32_t(kMaxTokens) : max_kv_len;
#ifdef PTXATTN_INJECT_BUG_WINDOW_OVERFLOW
  const int32_t window = config.options.window_left;  // the bug: windows near INT32_MAX reach the kernel
  (void)window_end;
#else
  const int32_t window = config.options.window_left >= window_end ? -1 : config.options.window_left;
#endif

  int32_t block_kv = 0;
  PTXATTN_RETURN_IF_ERROR(resolve_block_kv(config, path, window, requests, &block_kv));
  PTXATTN_RETURN_IF_ERROR(check_forced_kv_stages(config, path, block_kv));
  int32_t heads_log2 = 0;
  PTXATTN_RETURN_IF_ERROR(resolve_tile_heads(config, requests, &heads_log2));
  detail::ScheduleInputs schedule_inputs{&requests,
                                         config.num_qo_heads,
                                         config.num_qo_heads / config.num_kv_heads,
                                         config.head_dim,
                                         block_kv,
                                         config.options.causal,
                                         window};
  schedule_inputs.heads_log2 = heads_log2;
  std::vector<WorkTile> tiles = detail::tiles_longest_first(schedule_inputs);
  int64_t num_items = int64_t(tiles.size()) * schedule_inputs.item_heads();
  if (num_items > std::numeric_limits<int32_t>::max())
    return detail::invalid_argument("the batch has ", num_items, " work items (", tiles.size(), " tiles x ",
                                    schedule_inputs.item_heads(), " head groups), more than one launch holds (2^31 - 1)");
  // The SM count of the current device, asked only where needed (so an
  // empty batch plans without a device).
  int32_t num_sms = 0;
  auto sm_count = [&](int32_t* sms) -> Status {
    if (num_sms == 0) PTXATTN_RETURN_IF_ERROR(current_device_sms(&num_sms));
    *sms = num_sms;
    return Status::Ok();
  };

  // Split-KV (docs/kernels.md, "Split-KV"): the tiles again, each once per
  // KV chunk. The limits of a forced count are checked before the longer
  // list is built: it holds `splits` tiles per query tile. (The merge's
  // limit, tokens x heads in int32, is validate_batch_indices'.)
  auto split_tiles = [&](int32_t splits) -> Status {
    const int64_t split_tiles = int64_t(tiles.size()) * splits;
    if (split_tiles > detail::kMaxListedItems)
      return detail::unsupported("config.kv_splits = ", splits, " makes ", split_tiles,
                                 " tiles; split-KV lists at most ", detail::kMaxListedItems);
    const int64_t split_items = num_items * splits;
    if (split_items > std::numeric_limits<int32_t>::max())
      return detail::invalid_argument("config.kv_splits = ", splits, " makes ", split_items, " work items (",
                                      tiles.size(), " tiles x ", splits, " chunks x ", schedule_inputs.item_heads(),
                                      " head groups), more than one launch holds (2^31 - 1)");
    schedule_inputs.kv_splits = splits;
    tiles = detail::tiles_longest_first(schedule_inputs);
    num_items = split_items;
    return Status::Ok();
  };
  // A forced count is applied before the schedule is chosen, the rule's
  // after it (it needs the device). The rule's chunks add items, so a batch
  // whose list would then pass kMaxListedItems (a batch that fills every SM
  // many times over) is not split, and the schedule chosen for its unsplit
  // items holds. The rule counts SMs, not config.max_ctas, so the chunks,
  // and the results' bits, are the same under every schedule.
  if (config.kv_splits > 1) PTXATTN_RETURN_IF_ERROR(split_tiles(config.kv_splits));
  WorkSchedule schedule{};
  PTXATTN_RETURN_IF_ERROR(resolve_schedule(config, num_items, &schedule));
  int32_t kv_splits = std::max(config.kv_splits, 1);
  if (config.kv_splits == 0 && num_items > 0 && num_items <= detail::kMaxListedItems) {
    int32_t sms = 0;
    PTXATTN_RETURN_IF_ERROR(sm_count(&sms));
    detail::ScheduleInputs split = schedule_inputs;
    split.kv_splits = detail::auto_kv_splits(schedule_inputs, tiles, sms);
    split.splits_by_length = true;
    if (split.kv_splits > 1) {
      std::vector<WorkTile> split_list = detail::tiles_longest_first(split);
      const int64_t split_items = int64_t(split_list.size()) * split.item_heads();
      if (split_items <= detail::kMaxListedItems) {
        schedule_inputs = split;
        tiles = std::move(split_list);
        num_items = split_items;
        kv_splits = split.kv_splits;
      }
    }
  }
  // The split-KV states' rows, and where each token's lie when tiles have
  // different chunk counts (state_offsets).
  const int64_t state_rows = kv_splits > 1 ? detail::state_row_count(schedule_inputs, tiles) : 0;
  const std::vector<int32_t> state_indptr =
      kv_splits > 1 ? detail::state_offsets(schedule_inputs, tiles, indices.qo_indptr[n]) : std::vector<int32_t>();
  if (schedule == WorkSchedule::kAuto) {
    int32_t max_qo_len = 0;
    for (const RequestInfo& r : requests) max_qo_len = std::max(max_qo_len, r.qo_len);
    schedule = detail::auto_schedule(
        {num_items, max_qo_len, path == KvLoadPath::kGather, kv_splits, graph != nullptr, config.max_ctas});
  }
  detail::PersistentLists lists;
  if (schedule == WorkSchedule::kPersistent && num_items > 0) {
    int32_t sms = graph_sms;  // asked also with max_ctas: no list is made without a device
    if (sms == 0) PTXATTN_RETURN_IF_ERROR(sm_count(&sms));
    lists = detail::persistent_work_lists(schedule_inputs, tiles, config.max_ctas > 0 ? config.max_ctas : sms);
  } else if (num_items <= detail::kMaxListedItems) {
    lists.items = detail::items_in_l2_order(schedule_inputs, tiles);
  }
  // A graph plan launches the same grid for every batch: the CTAs past the
  // batch's get empty lists.
  int64_t num_ctas = schedule == WorkSchedule::kPersistent && num_items > 0 ? lists.num_ctas() : num_items;
  if (schedule == WorkSchedule::kDynamic && num_items > 0) {
    int32_t sms = 0;
    PTXATTN_RETURN_IF_ERROR(sm_count(&sms));
    num_ctas = std::min<int64_t>(num_items, config.max_ctas > 0 ? config.max_ctas : sms);
  }
  if (graph != nullptr) {
    if (schedule != WorkSchedule::kPersistent)
      return detail::unsupported("a graph plan needs the persistent schedule, which lists at most ",
                                 detail::kMaxListedItems, " work items; the batch has ", num_items);
    num_ctas = config.max_ctas > 0 ? config.max_ctas : graph_sms;
    if (lists.cta_indptr.empty()) lists.cta_indptr.push_back(0);
    lists.cta_indptr.resize(size_t(num_ctas) + 1, lists.cta_indptr.back());
  }

  const int64_t kv_units = detail::kv_units(indices);
  const bool device_page_table = paged && indices.kv_indices == nullptr;
  detail::PlanCounts counts;
  counts.requests = n;
  counts.tiles = int64_t(tiles.size());
  counts.cta_indptr = int64_t(lists.cta_indptr.size());
  counts.items = int64_t(lists.items.size());
  counts.kv_entries = paged && !device_page_table ? kv_units : 0;
  counts.page_table_error = paged && kv_units > 0;
  counts.work_counter = schedule == WorkSchedule::kDynamic && num_items > 0;
  counts.partial_states = state_rows * config.num_qo_heads;
  counts.state_indptr = int64_t(state_indptr.size());
  counts.head_dim = config.head_dim;
  if (graph != nullptr) counts = capacity_counts(config, *graph, graph_sms);  // one layout for every batch
  const detail::PlanLayout layout = detail::plan_layout(counts);

  uint8_t* base = nullptr;
  void* staging = nullptr;
  cudaStream_t stream = nullptr;
  if (workspace != nullptr) {
    if (layout.device_bytes > workspace->device_bytes)
      return detail::invalid_argument("workspace.device_bytes = ", workspace->device_bytes, " is less than the ",
                                      layout.device_bytes, " bytes this batch needs (prefill_workspace_size gives "
                                      "the size for a capacity)");
    if (layout.uploaded_bytes > workspace->host_bytes)
      return detail::invalid_argument("workspace.host_bytes = ", workspace->host_bytes, " is less than the ",
                                      layout.uploaded_bytes, " bytes of staging this batch needs "
                                      "(prefill_workspace_size gives the size for a capacity)");
    if (layout.device_bytes > 0 && workspace->device == nullptr)
      return detail::invalid_argument("workspace.device is null but the batch needs ", layout.device_bytes, " bytes");
    if (reinterpret_cast<uintptr_t>(workspace->device) % detail::kWorkspaceAlignment != 0)
      return detail::invalid_argument("workspace.device = ", workspace->device, " is not ",
                                      detail::kWorkspaceAlignment, "-byte aligned");
    if (layout.uploaded_bytes > 0 && workspace->host == nullptr)
      return detail::invalid_argument("workspace.host is null but the batch needs ", layout.uploaded_bytes,
                                      " bytes of staging");
    base = static_cast<uint8_t*>(workspace->device);
    staging = workspace->host;
    stream = workspace->stream;
  }
  // The device the uploads go to (a batch without requests uploads nothing
  // and plans without one, unless it is a graph plan's, which launches).
  // Owned buffers of a plan made on another device are not reused.
  int device = impl.device;
  if (n > 0 || graph != nullptr) PTXATTN_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  if (impl.device >= 0 && impl.device != device) PTXATTN_RETURN_IF_ERROR(impl.release_buffers());
  if (workspace == nullptr) {
    PTXATTN_RETURN_IF_ERROR(impl.owned_device.reserve(layout.device_bytes));
    PTXATTN_RETURN_IF_ERROR(impl.owned_staging.reserve(layout.uploaded_bytes));
    base = static_cast<uint8_t*>(impl.owned_device.get());
    staging = impl.owned_staging.get();
  }

  if (layout.uploaded_bytes > 0) {
    // The staging buffer may still feed the previous plan's copy. (The host
    // thus stays at most one plan ahead of the copies on the stream.)
    if (impl.uploaded != nullptr)
      PTXATTN_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(impl.uploaded));
    else
      PTXATTN_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&impl.uploaded, cudaEventDisableTiming));
    auto* out = static_cast<uint8_t*>(staging);
    std::memcpy(out + layout.requests, requests.data(), requests.size() * sizeof(RequestInfo));
    std::memcpy(out + layout.tiles, tiles.data(), tiles.size() * sizeof(WorkTile));
    std::memcpy(out + layout.cta_indptr, lists.cta_indptr.data(), lists.cta_indptr.size() * sizeof(int32_t));
    std::memcpy(out + layout.items, lists.items.data(), lists.items.size() * sizeof(int32_t));
    if (counts.kv_entries > 0)
      std::memcpy(out + layout.kv_entries, indices.kv_indices, size_t(counts.kv_entries) * sizeof(int32_t));
    if (counts.page_table_error) {
      const unsigned long long none = detail::kNoPageTableError;
      std::memcpy(out + layout.page_table_error, &none, sizeof(none));
    }
    if (counts.live_q_tokens) {
      const int64_t live = indices.qo_indptr[n];
      std::memcpy(out + layout.live_q_tokens, &live, sizeof(live));
    }
    if (!state_indptr.empty())
      std::memcpy(out + layout.state_indptr, state_indptr.data(), state_indptr.size() * sizeof(int32_t));
    PTXATTN_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(base, staging, layout.uploaded_bytes, cudaMemcpyHostToDevice, stream));
    if (const cudaError_t err = cudaEventRecord(impl.uploaded, stream); err != cudaSuccess) {
      cudaStreamSynchronize(stream);  // the copy may still read the staging, which the next plan rewrites
      return detail::cuda_error(err, "cudaEventRecord(impl.uploaded, stream)", __FILE__, __LINE__);
    }
    // A plan that owns its workspace keeps plan_prefill's synchronous contract.
    if (workspace == nullptr) PTXATTN_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(impl.uploaded));
  }

  impl.workspace = base;
  impl.layout = layout;
  impl.config = config;
  impl.device_page_table = device_page_table;
  impl.kv_indptr.resize(size_t(n) + 1);  // each request's first table entry, and the end
  for (int32_t b = 0; b < n; ++b) impl.kv_indptr[b] = requests[b].kv_start;
  impl.kv_indptr[n] = int32_t(kv_units);
  impl.device = device;
  impl.window_left = window;
  impl.load_path = path;
  impl.block_kv = block_kv;
  impl.kv_stages = config.kv_stages > 0 ? config.kv_stages : detail::default_kv_stages(config.head_dim);
  impl.kv_splits = kv_splits;
  impl.state_indptr = !state_indptr.empty();
  impl.state_rows = state_rows;
  impl.heads_log2 = heads_log2;
  impl.graph = graph != nullptr;
  impl.num_q_tokens = graph != nullptr ? graph->max_q_tokens : indices.qo_indptr[n];
  // A graph plan's captured tensors hold its capacity: the run checks them for it.
  impl.num_kv_rows = graph != nullptr && (!paged || device_page_table) ? graph->max_kv_units : kv_units;
  impl.schedule = schedule;
  impl.num_tiles = int64_t(tiles.size());
  impl.num_ctas = num_ctas;
  impl.num_items = num_items;
  impl.items_listed = !lists.items.empty();
  impl.valid = true;
  return Status::Ok();
}

}  // namespace

Status plan_prefill(const PrefillConfig& config, const BatchIndices& indices, PrefillPlan& plan) {
  return plan_batch(config, indices, nullptr, plan);
}

Status plan_prefill(const PrefillConfig& config, const BatchIndices& indices, const PlanWorkspace& workspace,
                    PrefillPlan& plan) {
  return plan_batch(config, indices, &workspace, plan);
}

Status prefill_workspace_size(const PrefillConfig& config, const PlanCapacity& capacity, WorkspaceSizes* sizes) {
  if (sizes == nullptr) return detail::invalid_argument("sizes is null");
  PTXATTN_RETURN_IF_ERROR(validate_prefill_config(config));
  int32_t sms = 0;
  PTXATTN_RETURN_IF_ERROR(check_capacity(config, capacity, &sms));
  const detail::PlanLayout layout = detail::plan_layout(capacity_counts(config, capacity, sms));
  sizes->device_bytes = layout.device_bytes;
  sizes->host_bytes = layout.uploaded_bytes;
  return Status::Ok();
}

// ---------------------------------------------------------------------------
PrefillPlan::PrefillPlan() : impl_(std::make_unique<PrefillPlanImpl>()) {}
PrefillPlan::~PrefillPlan() = default;
PrefillPlan::PrefillPlan(PrefillPlan&&) noexcept = default;
PrefillPlan& PrefillPlan::operator=(PrefillPlan&&) noexcept = default;
bool PrefillPlan::valid() const { return impl_ && impl_->valid; }
const PrefillConfig& PrefillPlan::config() const { return impl_->config; }
KvLoadPath PrefillPlan::chosen_load_path() const { return impl_->load_path; }
int32_t PrefillPlan::chosen_block_kv() const { return impl_->block_kv; }
int32_t PrefillPlan::chosen_kv_stages() const { return impl_->kv_stages; }
int32_t PrefillPlan::chosen_kv_splits() const { return impl_->kv_splits; }
int32_t PrefillPlan::chosen_tile_heads() const { return 1 << impl_->heads_log2; }
int64_t PrefillPlan::num_q_tokens() const { return impl_->num_q_tokens; }
int64_t PrefillPlan::num_kv_rows() const { return impl_->num_kv_rows; }
int64_t PrefillPlan::num_work_tiles() const { return impl_->num_tiles; }
int64_t PrefillPlan::num_ctas() const { return impl_->num_ctas; }
WorkSchedule PrefillPlan::chosen_schedule() const { return impl_->schedule; }

}  // namespace ptxattn
