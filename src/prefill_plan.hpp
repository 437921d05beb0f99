// The prefill plan's contents: device copies of the per-request summary, the
// work tiles (longest first) and the page indices, plus what run() checks.
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
  int64_t num_tiles = 0;
  DeviceArena requests;    // detail::RequestInfo[num_requests]
  DeviceArena tiles;       // detail::WorkTile[num_tiles]
  DeviceArena kv_indices;  // int32[num_kv_rows], paged only
  bool valid = false;
};

}  // namespace ptxattn
