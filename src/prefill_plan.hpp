// The prefill plan's contents: its workspace (the per-request summary, the
// work tiles and per-CTA work lists, the page indices, the page-table error
// word, the split-KV states) and where each part lies, plus what run() checks.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "prefill_params.hpp"
#include "ptxattn/ptxattn.hpp"

namespace ptxattn {

// A grow-only device allocation: re-planning reuses it while it is large
// enough, so pointers captured in a CUDA graph stay valid.
class DeviceArena {
 public:
  DeviceArena() = default;
  ~DeviceArena();
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  Status upload(const void* host, size_t bytes);  // grows if needed, then copies
  Status reserve(size_t bytes);                   // grows if needed; contents undefined
  Status release();                               // frees (the next upload allocates anew)
  const void* get() const { return ptr_; }
  void* get() { return ptr_; }

 private:
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
};

// A grow-only pinned host allocation (cudaHostAlloc): the staging buffer of
// a plan that owns its workspace.
class PinnedArena {
 public:
  PinnedArena() = default;
  ~PinnedArena();
  PinnedArena(const PinnedArena&) = delete;
  PinnedArena& operator=(const PinnedArena&) = delete;

  Status reserve(size_t bytes);  // grows if needed; contents undefined
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
};

namespace detail {

// How many of each thing a plan's workspace holds (a batch's, or a
// capacity's upper bounds).
struct PlanCounts {
  int64_t requests = 0;         // RequestInfo
  int64_t tiles = 0;            // WorkTile (query tiles x KV chunks)
  int64_t cta_indptr = 0;       // int32, persistent schedule: CTAs + 1
  int64_t items = 0;            // int32, listed work items
  int64_t kv_entries = 0;       // int32, the plan's copy of a host page table
  bool page_table_error = false;  // one uint64 (paged K/V)
  bool live_q_tokens = false;     // one int64: a graph plan's query tokens, which its merge reads
  int64_t state_indptr = 0;     // int32, split-KV where tiles have fewer chunks than kv_splits: tokens + 1
  bool work_counter = false;      // one int32: the dynamic schedule's next item, zeroed by each run
  int64_t partial_states = 0;   // split-KV (token, chunk, head) states: state rows x heads
  int32_t head_dim = 0;
};

// Where each part lies in the workspace: byte offsets, each 256-byte
// aligned. The parts the plan writes (requests .. state_indptr) come
// first and are uploaded as one copy of `uploaded_bytes` from the staging
// buffer; the split-KV states after them are written by the runs.
struct PlanLayout {
  size_t requests = 0, tiles = 0, cta_indptr = 0, items = 0, kv_entries = 0, page_table_error = 0, live_q_tokens = 0,
         state_indptr = 0;
  size_t partial_o = 0, partial_lse = 0, work_counter = 0;
  size_t uploaded_bytes = 0;  // the staging copy: also the host staging bytes needed
  size_t device_bytes = 0;    // the whole workspace
};
PlanLayout plan_layout(const PlanCounts& counts);

// Workspace regions start at multiples of this (and so must the workspace).
constexpr size_t kWorkspaceAlignment = 256;

}  // namespace detail

class PrefillPlanImpl {
 public:
  PrefillPlanImpl() = default;
  ~PrefillPlanImpl();
  PrefillPlanImpl(const PrefillPlanImpl&) = delete;
  PrefillPlanImpl& operator=(const PrefillPlanImpl&) = delete;

  PrefillConfig config;
  KvLoadPath load_path = KvLoadPath::kAuto;  // resolved: kTma or kGather
  int32_t block_kv = 0;  // KV block rows the kernel walks (prefill_params.hpp)
  int32_t kv_stages = 0;  // K/V stages of the kernel's shared-memory ring (prefill_params.hpp)
  int32_t window_left = -1;  // config.options.window_left, or -1 where it reaches past every key
  int64_t num_q_tokens = 0;  // the rows q, o and lse hold: the batch's, or a graph plan's capacity
  int64_t num_kv_rows = 0;  // paged: page-table entries (detail::kv_units); ragged: K/V rows used
  bool graph = false;       // made for a capacity (PlanWorkspace::graph_capacity)
  WorkSchedule schedule = WorkSchedule::kAuto;  // resolved: kOneItemPerCta, kPersistent or kDynamic
  int64_t num_tiles = 0;
  int64_t num_ctas = 0;
  int64_t num_items = 0;
  bool items_listed = false;  // the items region holds the items' order
  int32_t kv_splits = 1;   // split-KV chunks per query tile, the most (1: none)
  bool state_indptr = false;  // the state_indptr region holds each token's first state row (WorkTile::first_state)
  int64_t state_rows = 0;     // split-KV: the rows of states (a row per token and chunk, its heads' states)
  int32_t heads_log2 = 0;  // GQA packing: qo heads per query tile, log2 (0: token-major)
  bool device_page_table = false;  // paged without host kv_indices: the run gives the table (PrefillTensors::kv_indices)
  std::vector<int32_t> kv_indptr;  // each request's first page-table entry, then the entry count: names a bad entry's request
  int device = -1;                 // the CUDA device the plan was made on (-1: an empty batch, no device)
  bool valid = false;

  // The workspace (the caller's, or owned_device) and where its parts lie:
  // RequestInfo[requests], WorkTile[num_tiles] longest first, int32
  // cta_indptr[num_ctas + 1] (persistent), int32 items (when listed), the
  // page-table copy int32[num_kv_rows] (host table only), the page-table
  // error word (uint64: the lowest bad entry the runs met, PrefillParams::
  // page_table_error; kNoPageTableError when none), a graph plan's query
  // tokens (int64, which its merge reads), the split-KV state rows of each
  // token (int32 state_indptr[num_q_tokens + 1], where tiles have fewer
  // chunks than kv_splits), and the split-KV states float32
  // [state rows][num_qo_heads][head_dim] and [state rows][num_qo_heads]
  // (a row per token and chunk, WorkTile::first_state), which the runs
  // write and merge (through a const plan: one plan's runs must not overlap
  // in time).
  uint8_t* workspace = nullptr;
  detail::PlanLayout layout;
  template <class T>
  T* region(size_t offset) const {
    return reinterpret_cast<T*>(workspace + offset);
  }

  // A plan made without a caller's workspace owns one, and its staging.
  DeviceArena owned_device;
  PinnedArena owned_staging;
  // Recorded after each upload; the next plan waits for it before it
  // rewrites the staging buffer (that copy only, not the device).
  cudaEvent_t uploaded = nullptr;

  // Frees the owned device buffer and the upload event (re-planning on
  // another device must not reuse them).
  Status release_buffers();
  // Ok when the current device is `device`; kPlanMismatch otherwise.
  Status check_device() const;
};

namespace detail {

// What keeps a config from the wide KV block (prefill_params.hpp), or null
// where it can take it: head_dim 128, ragged K/V on the TMA path (one box
// per block; a paged block is made of page-sized boxes, and 176 is no
// multiple of a page size the TMA path takes), no causal mask and no window
// (window_left as the kernel sees it): every block but the request's last is
// then whole, where a diagonal or a window edge would mask more of 176 keys
// than of 128. kv_block = kAuto takes the wide block where this is null and
// the batch's work lies in long KV ranges (below); kWide is refused with it.
const char* wide_kv_block_obstacle(const PrefillConfig& config, KvLoadPath path, int32_t window_left);

// The KV length of the batch's average score: each request's kv_len weighted
// by its qo_len x kv_len scores (0 for a batch without any).
double work_weighted_kv_len(const std::vector<RequestInfo>& requests);

// NOTES: kv_block = kAuto takes the wide block only where
// work_weighted_kv_len reaches this. Against the standard block, with the
// full mask and every kv_len equal, the wide block measured -15% at kv_len
// 512, -7% at 1024, -4% at 2048, -2% at 4096, +0.6% at 8192 and +2.4% at
// 16384 (the pipeline fills once per item, with 2 stages instead of 3;
// docs/benchmarks.md, "2026-12-05, seventh session").
constexpr double kWideBlockMinKvLen = 8192;

// The block kv_block = kAuto walks: the wide one where the obstacle is null
// and work_weighted_kv_len reaches kWideBlockMinKvLen, else the standard one.
int32_t auto_block_kv(const PrefillConfig& config, KvLoadPath path, int32_t window_left,
                      const std::vector<RequestInfo>& requests);

// The deep ring (kDeepKvStages) is built for head_dim 128 on the gather path
// with the standard block: nullptr there, else what stands in the way.
const char* deep_kv_ring_obstacle(int32_t head_dim, KvLoadPath path, int32_t block_kv);

}  // namespace detail
}  // namespace ptxattn
