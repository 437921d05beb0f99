// The prefill plan's contents: device copies of the per-request summary, the
// work tiles and per-CTA work lists, and the page indices, plus what run()
// checks.
#pragma once

#include <cstddef>
#include <cstdint>

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
  const void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
};

class PrefillPlanImpl {
 public:
  PrefillConfig config;
  KvLoadPath load_path = KvLoadPath::kAuto;  // resolved: kTma or kGather
  int32_t window_left = -1;  // config.options.window_left, or -1 where it reaches past every key
  int64_t num_q_tokens = 0;
  int64_t num_kv_rows = 0;  // paged: pages referenced (kv_indptr[n]); ragged: K/V rows used
  WorkSchedule schedule = WorkSchedule::kAuto;  // resolved: kOneItemPerCta or kPersistent
  int64_t num_tiles = 0;
  int64_t num_ctas = 0;
  bool items_listed = false;  // cta_work_items holds the items' order
  DeviceArena requests;         // detail::RequestInfo[num_requests]
  DeviceArena tiles;            // detail::WorkTile[num_tiles], longest first
  DeviceArena cta_work_indptr;  // persistent: int32[num_ctas + 1]
  DeviceArena cta_work_items;   // int32[num_tiles * num_qo_heads], when listed
  DeviceArena kv_indices;  // int32[num_kv_rows], paged only
  bool valid = false;
};

}  // namespace ptxattn
