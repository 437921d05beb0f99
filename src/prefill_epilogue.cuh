// The prefill kernel's epilogue: O normalised, staged through shared memory
// and stored in 16-byte row chunks, and LSE (natural log), for one consumer
// warp's 16 rows of a work item; with split-KV, the rows' state of the
// item's chunk (float32 O and LSE) into the plan's workspace instead.
#pragma once

#include <cmath>
#include <cstdint>

#include "ptx/cvt.cuh"
#include "ptx/ld_st.cuh"
#include "prefill_mainloop.cuh"
#include "prefill_params.hpp"
#include "prefill_scheduler.cuh"
#include "prefill_traits.cuh"

namespace ptxattn::detail {

constexpr float kLn2 = 0.6931471805599453f;

// What the epilogue makes of this thread's two rows: the factor that
// normalises O and the LSE (natural log). Every lane of the quad calls it.
// RULE: a fully masked row has sum 0: output 0 and LSE -inf.
struct RowResult {
  float inv[2];
  float lse[2];
};
__device__ __forceinline__ RowResult row_result(const PrefillParams& p, const RowState& rows) {
  RowResult r;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float sum = quad_sum(rows.partial_sum[h]);
    r.inv[h] = sum > 0.f ? 1.f / sum : 0.f;
    r.lse[h] = sum > 0.f ? (rows.max[h] * p.score_scale_log2 + __log2f(sum)) * kLn2 : -INFINITY;
  }
  return r;
}

// Epilogue: normalise and write O (and LSE) of this thread's two rows
// (`row_in_tile` is the first; its warp's 16 rows start lane / 4 rows above).
// The item is loaded again here rather than kept live through the KV loop,
// where every register is needed.
//
// NOTES: stored straight from the accumulator layout, a warp's store
// instruction writes 4 bytes per lane, half a sector in each of 8 rows; at
// S = 512 a build without the O stores ran 20-25% faster
// (docs/benchmarks.md, 2026-12-05). So the warp writes its rows as 8x8
// matrices (stmatrix) into `staging`, its share of the staging the caller
// gives (T::kOwnStaging: shared memory of its own, or the item's last V
// stage; T::kEpilogueWarpBytes, chunks XOR-swizzled by row so both sides are free
// of bank conflicts), reads them back as 16-byte row chunks and stores whole
// sectors. Head dims above kEpilogueCols go in passes of that many columns.
// `staging` null: the item had no KV block and its O is zero, stored directly.
template <class T>
__device__ __forceinline__ void store_output(const PrefillParams& p, const float (&out)[T::kHeadDim / 2],
                                             const RowState& rows, int item, int row_in_tile, int lane,
                                             uint8_t* staging) {
  const Work w = work_at<T>(p, item);
  const RowResult result = row_result(p, rows);
  const float(&inv)[2] = result.inv;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const TileRow at = tile_row(p, w, row_in_tile + 8 * h);
    if (p.lse != nullptr && lane % 4 == 0 && at.q_row < w.req.qo_len)
      p.lse[int64_t(w.req.qo_start + at.q_row) * p.num_qo_heads + at.head] = result.lse[h];
  }

  constexpr int kCols = T::kEpilogueCols;
  constexpr int kChunks = kCols / 8;  // 16-byte chunks per staged row
  constexpr int kStagedRowBytes = kCols * 2;
  const int warp_first_row = row_in_tile - lane / 4;
  auto* o = static_cast<typename T::Element*>(p.o);
  // Chunk c of staged row r sits at slot c ^ (r % 8): the 8 rows of one
  // stmatrix matrix, and the 8 chunks of a row one read phase takes, land in
  // 8 different 16-byte bank groups.
  auto staged = [&](int row, int chunk) { return staging + row * kStagedRowBytes + ((chunk ^ (row % 8)) * 16); };
#pragma unroll
  for (int pass = 0; pass < T::kHeadDim / kCols; ++pass) {
    if (staging != nullptr) {
      // Accumulator register 4c + 2h (and + 1) holds row lane / 4 + 8h,
      // columns 8c + 2 (lane % 4) (and + 1): the stmatrix fragment of the 8x8
      // matrix (h, c). One x4 store takes matrices (0, c), (1, c), (0, c + 1),
      // (1, c + 1); lane 8m + r names row r of matrix m.
#pragma unroll
      for (int k = 0; k < kChunks; k += 2) {
        uint32_t fragments[4];
#pragma unroll
        for (int m = 0; m < 4; ++m) {
          const int h = m & 1, c = pass * kChunks + k + m / 2;
          fragments[m] = ptx::cvt_pack_f32x2<T::kType>(out[4 * c + 2 * h] * inv[h], out[4 * c + 2 * h + 1] * inv[h]);
        }
        const int m = lane / 8;
        ptx::stmatrix_x4(staged(8 * (m & 1) + lane % 8, k + m / 2), fragments);
      }
      __syncwarp();  // the warp's matrices are in shared memory before any lane reads another's
    }
#pragma unroll
    for (int i = 0; i < 16 * kChunks / 32; ++i) {
      const int row = (32 * i + lane) / kChunks, chunk = (32 * i + lane) % kChunks;
      const uint4 value = staging != nullptr ? ptx::ld_shared_v4(staged(row, chunk)) : uint4{0, 0, 0, 0};
      const TileRow at = tile_row(p, w, warp_first_row + row);
      if (at.q_row >= w.req.qo_len) continue;
      const int64_t o_offset = int64_t(w.req.qo_start + at.q_row) * p.o_row_stride + at.head * T::kHeadDim;
      *reinterpret_cast<uint4*>(o + o_offset + pass * kCols + chunk * 8) = value;
    }
    if (staging != nullptr) __syncwarp();  // every lane has read the pass before the next overwrites it
  }
}

// Split-KV epilogue: this thread's two rows of the item's chunk as an
// attention state (prefill_params.hpp, kv_splits): O normalised, in float32,
// and the LSE, at state (token, split, head) of the plan's workspace (the
// token's chunk a row, WorkTile::first_state). A quad
// writes 32 contiguous bytes of a row per register pair. An item whose chunk
// has no visible key writes O = 0 and LSE = -inf like any fully masked row.
// RULE: every state merge_states reads is written, in every run.
template <class T>
__device__ __forceinline__ void store_partial_state(const PrefillParams& p, const float (&out)[T::kHeadDim / 2],
                                                    const RowState& rows, int item, int row_in_tile, int lane) {
  const Work w = work_at<T>(p, item);
  const RowResult result = row_result(p, rows);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const TileRow at = tile_row(p, w, row_in_tile + 8 * h);
    if (at.q_row >= w.req.qo_len) continue;
    const int token_in_tile = at.q_row - w.tile.q_block * tile_tokens(p.heads_log2);
    const int64_t state =
        int64_t(w.tile.first_state + token_in_tile * w.tile.splits + w.tile.split) * p.num_qo_heads + at.head;
    if (lane % 4 == 0) p.partial_lse[state] = result.lse[h];
    float* row = p.partial_o + state * T::kHeadDim + 2 * (lane % 4);
    // Accumulator register 4c + 2h (and + 1): this thread's row h, columns 8c + 2 (lane % 4) (and + 1).
#pragma unroll
    for (int c = 0; c < T::kHeadDim / 8; ++c)
      *reinterpret_cast<float2*>(row + 8 * c) =
          make_float2(out[4 * c + 2 * h] * result.inv[h], out[4 * c + 2 * h + 1] * result.inv[h]);
  }
}

// The item's result: O and LSE, or where split-KV cut its tile into 2
// chunks or more, its chunk's state.
// `staging` as for store_output.
template <class T>
__device__ __forceinline__ void store_result(const PrefillParams& p, const float (&out)[T::kHeadDim / 2],
                                             const RowState& rows, int item, int row_in_tile, int lane,
                                             uint8_t* staging) {
  if (p.kv_splits > 1 && work_at<T>(p, item).tile.splits > 1)  // unsplit plans skip the tile's load
    store_partial_state<T>(p, out, rows, item, row_in_tile, lane);
  else
    store_output<T>(p, out, rows, item, row_in_tile, lane, staging);
}

}  // namespace ptxattn::detail
