// The prefill kernel's epilogue: O normalised and stored from registers,
// and LSE (natural log), for one consumer thread's two rows of a work item.
#pragma once

#include <cmath>
#include <cstdint>

#include "ptx/cvt.cuh"
#include "prefill_mainloop.cuh"
#include "prefill_params.hpp"
#include "prefill_traits.cuh"

namespace ptxattn::detail {

constexpr float kLn2 = 0.6931471805599453f;

// Epilogue: normalise and write O (and LSE) of this thread's two rows
// (`row_in_tile` is the first). The item is loaded again here rather than
// kept live through the KV loop, where every register is needed.
template <class T>
__device__ __forceinline__ void store_output(const PrefillParams& p, const float (&out)[T::kHeadDim / 2],
                                             const RowState& rows, int item, int row_in_tile, int lane) {
  const WorkTile tile = p.tiles[item / p.num_qo_heads];
  const RequestInfo req = p.requests[tile.request];
  const int head = item % p.num_qo_heads;
  const int first_q_row = tile.q_block * T::kBlockQ + row_in_tile;
  auto* o = static_cast<typename T::Element*>(p.o);
  // RULE: a fully masked row has sum 0: output 0 and LSE -inf.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float sum = quad_sum(rows.partial_sum[h]);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    const int q_row = first_q_row + 8 * h;
    if (q_row >= req.qo_len) continue;
    const int64_t row = int64_t(req.qo_start + q_row) * p.num_qo_heads + head;
    uint32_t* dst = reinterpret_cast<uint32_t*>(o + row * T::kHeadDim);
#pragma unroll
    for (int j = 0; j < T::kHeadDim / 2; j += 2) {
      if (((j / 2) & 1) != h) continue;
      const int col = 8 * (j / 4) + 2 * (lane % 4);
      dst[col / 2] = ptx::cvt_pack_f32x2<T::kType>(out[j] * inv, out[j + 1] * inv);
    }
    if (p.lse != nullptr && lane % 4 == 0)
      p.lse[row] = sum > 0.f ? (rows.max[h] * p.score_scale_log2 + __log2f(sum)) * kLn2 : -INFINITY;
  }
}

}  // namespace ptxattn::detail
