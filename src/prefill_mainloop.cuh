// The prefill kernel's mainloop: S = Q K^T, mask and online softmax, and
// O += P V over one work item's KV blocks, for one consumer warpgroup.
#pragma once

#include <cuda.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "ptx/barrier.cuh"
#include "ptx/cvt.cuh"
#include "ptx/wgmma.cuh"
#include "prefill_load.cuh"
#include "prefill_pipeline.cuh"
#include "prefill_scheduler.cuh"
#include "prefill_traits.cuh"

namespace ptxattn::detail {

// ============================================================================
// Consumer
// ============================================================================

// Hides a value from the optimiser so that descriptors derived from it are
// computed next to their wgmma instead of being hoisted out of the KV loop,
// where 2 x (HEAD_DIM/16 + BLOCK_KV/16) live 64-bit descriptors would crowd
// out the accumulators.
__device__ __forceinline__ uint64_t opaque(uint64_t x) {
  asm volatile("" : "+l"(x));
  return x;
}

// Issues S (64 x BLOCK_KV) = Q (64 x D) K^T for this warpgroup's 64 rows
// (one commit group; the caller waits).
template <class T>
__device__ __forceinline__ void issue_scores(float (&scores)[T::kBlockKV / 2], const uint8_t* q_rows,
                                             const uint8_t* k_tile) {
  constexpr int kStepsPerSlice = T::kSliceCols / 16;
  // K-major 128B swizzle: 8-row groups 1024 B apart, LBO unused.
  const uint64_t q_desc = opaque(ptx::make_smem_descriptor(ptx::smem_u32(q_rows), 16, 1024, ptx::Swizzle::k128B));
  const uint64_t k_desc = opaque(ptx::make_smem_descriptor(ptx::smem_u32(k_tile), 16, 1024, ptx::Swizzle::k128B));
#pragma unroll
  for (int step = 0; step < T::kHeadDim / 16; ++step) {
    const int slice = step / kStepsPerSlice;
    const uint32_t k_offset = (step % kStepsPerSlice) * 32;  // 16 elements along K = 32 bytes in a swizzled row
#ifdef PTXATTN_INJECT_BUG_SKIP_FIRST_SCALE_D0
    const bool accumulate = true;  // the first step adds onto stale registers
#else
    const bool accumulate = step > 0;  // RULE: the first wgmma of an accumulation uses scale-d = 0
#endif
    ptx::wgmma_ss<T::kBlockKV, T::kType, 0, 0>(
        scores, ptx::descriptor_advance(q_desc, slice * T::kQSliceBytes + k_offset),
        ptx::descriptor_advance(k_desc, slice * T::kKvSliceBytes + k_offset), accumulate);
  }
  ptx::wgmma_commit_group();
}

// Issues O (64 x D) += P (64 x BLOCK_KV, registers) V (BLOCK_KV x D, MN-major)
// (one commit group; the caller waits).
template <class T>
__device__ __forceinline__ void issue_pv(float (&out)[T::kHeadDim / 2], const uint32_t (&probs)[T::kBlockKV / 4],
                                         const uint8_t* v_tile) {
  // MN-major 128B swizzle: LBO = distance between 64-column slices, SBO = 8 rows.
  const uint64_t v_desc =
      opaque(ptx::make_smem_descriptor(ptx::smem_u32(v_tile), T::kKvSliceBytes, 1024, ptx::Swizzle::k128B));
#pragma unroll
  for (int step = 0; step < T::kBlockKV / 16; ++step) {
    const uint32_t a[4] = {probs[4 * step], probs[4 * step + 1], probs[4 * step + 2], probs[4 * step + 3]};
    ptx::wgmma_rs<T::kHeadDim, T::kType, 1>(out, a, ptx::descriptor_advance(v_desc, step * 16 * T::kRowBytes), true);
  }
  ptx::wgmma_commit_group();
}

// Per-thread view of the two rows it owns in the m64 accumulator layout.
struct RowState {
  float max[2];          // running max of the (capped) raw scores; -inf until a visible key was seen
  float partial_sum[2];  // this thread's share of the row sum; reduced over the quad at the end
};

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// What the mask needs about this thread's rows: the absolute positions of
// its two rows (8 tile rows apart: 8 tokens apart token-major, fewer packed)
// and of the tile's first and last tokens.
struct RowPositions {
  int row_pos[2];
  int tile_first_pos;
  int tile_last_pos;
};

// Only blocks that cross the sequence end, the causal diagonal or the
// window's left edge need per-element masks. Walked from the last block to
// the first, such blocks form a prefix (end, diagonal) and a suffix (window)
// of an item's walk.
template <class T>
__device__ __forceinline__ bool block_needs_mask(const PrefillParams& p, const RequestInfo& req,
                                                 const RowPositions& at, int n) {
  const int key0 = n * T::kBlockKV;
  const bool crosses_end = key0 + T::kBlockKV > req.kv_len;
  const bool crosses_diagonal = p.causal && key0 + T::kBlockKV - 1 > at.tile_first_pos;
  const bool crosses_window = p.window_left >= 0 && key0 < at.tile_last_pos - p.window_left;
  return crosses_end || crosses_diagonal || crosses_window;
}

// Where softmax_block masks: in blocks that need it (a branch in every
// block), in every block, or in none (the caller knows the block needs none).
enum class Masking { kWhereNeeded, kAlways, kNever };
// Whether softmax_block soft-caps: as p.soft_cap says (a branch in every
// block), or as the caller has already decided from it.
enum class SoftCap { kAsParams, kOn, kOff };

// Soft cap, mask and online softmax of one score block; leaves P (fp32) in
// `scores` and the factors the accumulator must be rescaled by in `rescale`.
template <class T, Masking kMasking = Masking::kWhereNeeded, SoftCap kSoftCap = SoftCap::kAsParams>
__device__ __forceinline__ void softmax_block(float (&scores)[T::kBlockKV / 2], float (&rescale)[2], RowState& rows,
                                              const PrefillParams& p, const RequestInfo& req, const RowPositions& at,
                                              int n, int lane) {
  constexpr int kS = T::kBlockKV / 2;
  if (kSoftCap == SoftCap::kOn || (kSoftCap == SoftCap::kAsParams && p.soft_cap)) {
#pragma unroll
    for (int j = 0; j < kS; ++j) scores[j] = tanhf(scores[j] * p.score_prescale);
  }
  const int key0 = n * T::kBlockKV;
  // Masking a block that needs no mask selects every score: kAlways gives
  // the bits kWhereNeeded gives.
  if (kMasking == Masking::kAlways || (kMasking == Masking::kWhereNeeded && block_needs_mask<T>(p, req, at, n))) {
    // Key of register j = key_base + 8*(j/4) + (j&1). The visible keys of each
    // row form [first, end) relative to key_base, so the per-register test
    // compares against immediates (no per-register key stays live).
    // Positions, keys and the window (below every kv_len: the plan turns a
    // longer one off) are all under 2^30, and the window's left edge is
    // clamped at key 0 before key_base is subtracted, so nothing here wraps.
    const int key_base = key0 + 2 * (lane % 4);
    int first[2], end[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int pos = at.row_pos[h];
      end[h] = (p.causal ? min(req.kv_len, pos + 1) : req.kv_len) - key_base;
#ifdef PTXATTN_INJECT_BUG_WINDOW_OVERFLOW
      first[h] = p.window_left >= 0 ? pos - p.window_left - key_base : INT_MIN;  // the bug: wraps
#else
      first[h] = p.window_left >= 0 ? max(pos - p.window_left, 0) - key_base : INT_MIN;
#endif
    }
#pragma unroll
    for (int j = 0; j < kS; ++j) {
      const int key = 8 * (j / 4) + (j & 1);
      const int h = (j / 2) & 1;
      // RULE: mask by selection, never by arithmetic.
      scores[j] = key >= first[h] && key < end[h] ? scores[j] : -INFINITY;
    }
  }

  // RULE: a row with no visible key yet keeps max = -inf; it is shifted by 0
  // instead, so exp2 gives 0 rather than exp2(-inf + inf) = NaN.
  float shift[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float block_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kS; ++j)
      if (((j / 2) & 1) == h) block_max = fmaxf(block_max, scores[j]);
    const float new_max = fmaxf(rows.max[h], quad_max(block_max));
    const float safe_max = new_max == -INFINITY ? 0.f : new_max;
    shift[h] = safe_max * p.score_scale_log2;
    rescale[h] = ptx::ex2_approx(rows.max[h] * p.score_scale_log2 - shift[h]);  // 0 while max was -inf
    rows.max[h] = new_max;
  }
  float block_sum[2] = {0.f, 0.f};
#pragma unroll
  for (int j = 0; j < kS; ++j) {
    const int h = (j / 2) & 1;
    scores[j] = ptx::ex2_approx(fmaf(scores[j], p.score_scale_log2, -shift[h]));
    block_sum[h] += scores[j];
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) rows.partial_sum[h] = rows.partial_sum[h] * rescale[h] + block_sum[h];
}

// P as wgmma A-fragments: S registers 2m, 2m+1 are two neighbouring columns
// of one row: packed, they are A-fragment register m, and k16 slice j is
// registers 4j..4j+3 (ptx/wgmma.cuh).
template <class T>
__device__ __forceinline__ void pack_probs(const float (&scores)[T::kBlockKV / 2],
                                           uint32_t (&probs)[T::kBlockKV / 4]) {
#pragma unroll
  for (int m = 0; m < T::kBlockKV / 4; ++m) probs[m] = ptx::cvt_pack_f32x2<T::kType>(scores[2 * m], scores[2 * m + 1]);
}

template <int kCount>
__device__ __forceinline__ void scale_accumulator(float (&out)[kCount], const float (&rescale)[2]) {
#pragma unroll
  for (int j = 0; j < kCount; ++j) out[j] *= rescale[(j / 2) & 1];
}

// TMA path, first block walked (the only one that can end inside the block).
// RULE: V rows past the sequence end must be zero before P V reads them
// (P = 0 there, but 0 * NaN = NaN). TMA fills zeros only outside the pool,
// never in the unused tail of a page inside it, nor in rows of pages the
// request does not own, so both consumer warpgroups overwrite those rows once
// the block has landed, fence, and meet before either issues P V.
template <class T>
__device__ __forceinline__ void zero_v_tail(PrefillSharedStorage<T>& s, const PrefillParams& p, const RequestInfo& req,
                                            KvBlockRange range, const PipelineState<T::kStages>& first,
                                            int consumer_tid) {
  constexpr int kConsumerThreads = T::kConsumerWarpgroups * 128;
  const int tail_rows_from = req.kv_len - (range.end - 1) * T::kBlockKV;
  if (tail_rows_from >= T::kBlockKV) return;
  wait_full<T>(s, p, &s.v_full[first.stage], first.phase);
#ifndef PTXATTN_INJECT_BUG_SKIP_TAIL_ZERO
  zero_tile_rows<T, kConsumerThreads>(s.v[first.stage], tail_rows_from, consumer_tid);
#endif
#ifndef PTXATTN_INJECT_BUG_SKIP_PROXY_FENCE
  // RULE: generic-proxy stores must be fenced before wgmma (async proxy) reads them.
  ptx::fence_proxy_async_shared_cta();
#endif
  consumers_meet<T>();
}

// Ping-pong (T::kPingPong): the two consumer warpgroups take turns issuing
// wgmma, so one's softmax runs while the other's GEMMs hold the tensor
// cores. A warpgroup waits on its own turn barrier before issuing and
// arrives on the other's after. Both take count + 1 turns per item;
// consumer 1 opens consumer 0's first turn and skips its own last arrival,
// so every barrier phase completes and none is left open between items.
// On an item consumer 1 passes (pass_blocks) neither takes a turn: consumer
// 0 is `alone`. Without ping-pong every call is a no-op.
template <class T>
struct Turns {
  static constexpr uint32_t kThreads = 2 * 128;
  int consumer;
  bool alone;
  __device__ __forceinline__ uint32_t mine() const { return uint32_t(NamedBarrier::kTurnOfConsumer0) + consumer; }
  __device__ __forceinline__ uint32_t other() const {
    return uint32_t(NamedBarrier::kTurnOfConsumer0) + (consumer ^ 1);
  }
  __device__ __forceinline__ void open() const {
    if constexpr (T::kPingPong)
      if (consumer == 1 && !alone) ptx::named_barrier_arrive(other(), kThreads);
  }
  __device__ __forceinline__ void begin() const {
    if constexpr (T::kPingPong)
      if (!alone) ptx::named_barrier_sync(mine(), kThreads);
  }
  __device__ __forceinline__ void end(bool last) const {
    if constexpr (T::kPingPong)
      if (!alone && (!last || consumer == 0)) ptx::named_barrier_arrive(other(), kThreads);
  }
};

// One work item of one consumer warpgroup, but for the P V of its last
// block walked (finish_item): O and the row state of its 64 rows over the
// item's KV blocks, walked from last to first; `probs` is left holding P of
// that last block. `kv` is the ring state of the item's first block (the
// caller moves it past the item); q_phase is the item's parity of q_full;
// `alone`: consumer 1 passes the item. Every wgmma it issued has retired
// when it returns.
template <class T>
__device__ __forceinline__ void consume_blocks(PrefillSharedStorage<T>& s, const PrefillParams& p, const Work& w,
                                               const PipelineState<T::kStages>& kv, uint32_t q_phase,
                                               float (&out)[T::kHeadDim / 2], RowState& rows,
                                               uint32_t (&probs)[T::kBlockKV / 4], int row_in_tile, int consumer,
                                               bool alone, int tid) {
  const int lane = tid % 32;
  const RequestInfo& req = w.req;
  const int shift_to_pos = req.kv_len - req.qo_len;
  const int tile_first_pos = shift_to_pos + w.tile.q_block * tile_tokens(p.heads_log2);
  const RowPositions at{{shift_to_pos + tile_row(p, w, row_in_tile).q_row, shift_to_pos + tile_row(p, w, row_in_tile + 8).q_row},
                        tile_first_pos,
                        tile_first_pos + tile_tokens(p.heads_log2) - 1};
  const uint8_t* q_rows = s.q + consumer * T::kRowsPerConsumer * T::kRowBytes;
  const int count = w.range.count();
  const Turns<T> turns{consumer, alone};

  turns.open();
  wait_barrier<T>(s, p, &s.q_full, q_phase);
  // Block 0: scores and softmax only; its P V is issued with the next scores.
  float scores[T::kBlockKV / 2];
  float rescale[2];
  wait_full<T>(s, p, &s.k_full[kv.stage], kv.phase);
  turns.begin();
  ptx::wgmma_fence();
  issue_scores<T>(scores, q_rows, s.k[kv.stage]);
  turns.end(false);
  ptx::wgmma_wait_group<0>();
  ptx::accumulator_fence(scores);
  release_stage(&s.k_empty[kv.stage], lane);
  softmax_block<T>(scores, rescale, rows, p, req, at, w.range.end - 1, lane);
  pack_probs<T>(scores, probs);

  // Steady state: S(i) and O += P(i-1) V(i-1) are issued together; P(i)
  // replaces P(i-1) once that P V has retired. ptxas issues the P V wait
  // ahead of the softmax, so the softmax does not overlap the P V; forcing
  // the overlap measured slower (docs/kernels.md, "Consumer pipeline").
  auto step = [&](int i, auto masking, auto soft_cap) {
    constexpr Masking kMasking = decltype(masking)::value;
    constexpr SoftCap kSoftCap = decltype(soft_cap)::value;
    const auto st = kv.plus(i), prev = kv.plus(i - 1);
    wait_full_pair<T>(s, p, &s.k_full[st.stage], st.phase, &s.v_full[prev.stage], prev.phase);
    turns.begin();
    ptx::wgmma_fence();  // the accumulator and P were written since the last wgmma
    issue_scores<T>(scores, q_rows, s.k[st.stage]);
    issue_pv<T>(out, probs, s.v[prev.stage]);
    turns.end(false);
    ptx::wgmma_wait_group<1>();  // S(i) retired; P(i-1) V(i-1) may still run
    ptx::accumulator_fence(scores);
    release_stage(&s.k_empty[st.stage], lane);
    softmax_block<T, kMasking, kSoftCap>(scores, rescale, rows, p, req, at, w.range.end - 1 - i, lane);
    ptx::wgmma_wait_group<0>();
    // Keeps P(i-1) alive (the MMA reads its registers until here) and orders
    // the rescale after the accumulation.
    ptx::accumulator_fence(probs);
    ptx::accumulator_fence(out);
    release_stage(&s.v_empty[prev.stage], lane);
    pack_probs<T>(scores, probs);
    scale_accumulator(out, rescale);
  };
  using WhereNeeded = std::integral_constant<Masking, Masking::kWhereNeeded>;
  using Always = std::integral_constant<Masking, Masking::kAlways>;
  using Never = std::integral_constant<Masking, Masking::kNever>;
  using CapAsParams = std::integral_constant<SoftCap, SoftCap::kAsParams>;
  using CapOn = std::integral_constant<SoftCap, SoftCap::kOn>;
  using CapOff = std::integral_constant<SoftCap, SoftCap::kOff>;
  if constexpr (T::kSplitMaskedLoops) {
    // The blocks that need a mask are a prefix and a suffix of the walk
    // (block_needs_mask): three loops, the middle one without mask code.
    auto needs_mask = [&](int i) { return block_needs_mask<T>(p, req, at, w.range.end - 1 - i); };
    int i = 1;
#pragma unroll 1
    for (; i < count && needs_mask(i); ++i) step(i, Always{}, CapAsParams{});
    // The unmasked blocks, the bulk of the work: no branch in their softmax.
    if (p.soft_cap) {
#pragma unroll 1
      for (; i < count && !needs_mask(i); ++i) step(i, Never{}, CapOn{});
    } else {
#pragma unroll 1
      for (; i < count && !needs_mask(i); ++i) step(i, Never{}, CapOff{});
    }
#pragma unroll 1
    for (; i < count; ++i) step(i, Always{}, CapAsParams{});
  } else {
#pragma unroll 1
    for (int i = 1; i < count; ++i) step(i, WhereNeeded{}, CapAsParams{});
  }
}

// The P V of the item's last block walked, whose V stage the caller has
// acquired (and releases: at once, or after the epilogue has staged O in it
// where the traits have no staging of its own, T::kOwnStaging).
template <class T>
__device__ __forceinline__ void finish_item(float (&out)[T::kHeadDim / 2], const uint32_t (&probs)[T::kBlockKV / 4],
                                            const uint8_t* v_tile, int consumer, bool alone) {
  const Turns<T> turns{consumer, alone};
  turns.begin();
  ptx::wgmma_fence();
  issue_pv<T>(out, probs, v_tile);
  turns.end(true);
  ptx::wgmma_wait_group<0>();
  ptx::accumulator_fence(out);
}

// consume_blocks for consumer warpgroup 1 when none of its 64 rows holds a
// query (tile_rows_filled: a decode tile's few packed rows, a request's
// short last tile; row 0 always holds one, so consumer 0 never passes).
// Its GEMMs and softmax would only compute rows nobody stores, so it keeps
// the side of every barrier consume_blocks keeps and computes nothing: each
// block's stages go back once full (the full wait keeps its arrivals in the
// stage's phase), but for the V stage of the last block, which the caller
// acquires and releases, as after consume_blocks. It takes no
// ping-pong turn, and consumer 0 none either (Turns::alone).
template <class T>
__device__ __forceinline__ void pass_blocks(PrefillSharedStorage<T>& s, const PrefillParams& p, const Work& w,
                                            const PipelineState<T::kStages>& kv, int tid) {
  const int lane = tid % 32;
  const int count = w.range.count();
#pragma unroll 1
  for (int i = 0; i < count; ++i) {
    const auto st = kv.plus(i);
    wait_barrier<T>(s, p, &s.k_full[st.stage], st.phase);
    release_stage(&s.k_empty[st.stage], lane);
    if (i + 1 < count) {
      wait_barrier<T>(s, p, &s.v_full[st.stage], st.phase);
      release_stage(&s.v_empty[st.stage], lane);
    }
  }
}

}  // namespace ptxattn::detail
