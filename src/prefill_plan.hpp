// The prefill plan's contents: device copies of the per-request summary, the
// work tiles and per-CTA work lists, and the page indices, the split-KV
// workspace, plus what run() checks.
#pragma once

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

class PrefillPlanImpl {
 public:
  PrefillConfig config;
  KvLoadPath load_path = KvLoadPath::kAuto;  // resolved: kTma or kGather
  int32_t block_kv = 0;  // KV block rows the kernel walks (prefill_params.hpp)
  int32_t window_left = -1;  // config.options.window_left, or -1 where it reaches past every key
  int64_t num_q_tokens = 0;
  int64_t num_kv_rows = 0;  // paged: page-table entries (detail::kv_units); ragged: K/V rows used
  WorkSchedule schedule = WorkSchedule::kAuto;  // resolved: kOneItemPerCta or kPersistent
  int64_t num_tiles = 0;
  int64_t num_ctas = 0;
  bool items_listed = false;  // cta_work_items holds the items' order
  DeviceArena requests;         // detail::RequestInfo[num_requests]
  DeviceArena tiles;            // detail::WorkTile[num_tiles], longest first
  DeviceArena cta_work_indptr;  // persistent: int32[num_ctas + 1]
  DeviceArena cta_work_items;   // int32[num_tiles * head groups], when listed
  DeviceArena kv_indices;  // int32[num_kv_rows], paged with host indices.kv_indices only
  bool device_page_table = false;  // paged without host kv_indices: the run gives the table (PrefillTensors::kv_indices)
  // uint64: the lowest bad page-table entry the runs met (PrefillParams::
  // page_table_error), kNoPageTableError when none. Mutable: runs write it
  // through a const plan.
  mutable DeviceArena page_table_error;
  std::vector<int32_t> kv_indptr;  // each request's first page-table entry, then the entry count: names a bad entry's request
  int device = -1;                 // the CUDA device the plan was made on (-1: an empty batch, no device)
  // Frees every device buffer (re-planning on another device must not reuse them).
  Status release_buffers();
  // Ok when the current device is `device`; kPlanMismatch otherwise.
  Status check_device() const;
  int32_t kv_splits = 1;   // split-KV chunks per query tile (1: none)
  int32_t heads_log2 = 0;  // GQA packing: qo heads per query tile, log2 (0: token-major)
  // Split-KV workspace (kv_splits > 1), written by every run's kernel and
  // read by its merge (prefill_params.hpp): float32
  // [num_q_tokens][kv_splits][num_qo_heads][head_dim] and
  // [num_q_tokens][kv_splits][num_qo_heads]. Mutable: a run writes it
  // through a const plan, so one plan's runs must not overlap in time.
  mutable DeviceArena partial_o;
  mutable DeviceArena partial_lse;
  bool valid = false;
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

}  // namespace detail
}  // namespace ptxattn
