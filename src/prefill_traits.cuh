// Compile-time configuration of the prefill kernel, one traits struct per
// (head_dim, dtype, load path), with the static asserts that tie it together.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "prefill_params.hpp"
#include "ptx/wgmma.cuh"

namespace ptxattn::detail {

enum class LoadPath { kTma, kGather };

template <int kHeadDim_, ptx::MmaType kType_, LoadPath kPath_, int kBlockKV_ = prefill_block_kv(kHeadDim_, false),
          bool kDynamic_ = false, int kStages_ = default_kv_stages(kHeadDim_)>
struct PrefillTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr ptx::MmaType kType = kType_;
  static constexpr LoadPath kPath = kPath_;
  // The dynamic schedule (items claimed at run time): its own kernels.
  static constexpr bool kDynamic = kDynamic_;
  using Element = std::conditional_t<kType == ptx::MmaType::kBF16, __nv_bfloat16, __half>;

  // Two consumer warpgroups of 64 query rows each, one producer warpgroup.
  static constexpr int kConsumerWarpgroups = 2;
  static constexpr int kRowsPerConsumer = 64;
  static constexpr int kBlockQ = kConsumerWarpgroups * kRowsPerConsumer;
  static_assert(kBlockQ == kPrefillBlockQ, "the plan schedules tiles of kPrefillBlockQ rows");
  static constexpr int kThreads = (kConsumerWarpgroups + 1) * 128;
  // NOTES: head_dim 256 halves the KV block so S (32 regs), O (128 regs) and P
  // (16 regs) fit a consumer's 232 registers, and the smem ring fits 227 KB.
  // The wide block (176 at head_dim 128) holds S in 88 registers, P in 44.
  static constexpr int kBlockKV = kBlockKV_;
  // NOTES: the consumer warpgroups take turns issuing wgmma (ping-pong,
  // prefill_mainloop.cuh consume_blocks) where that measured faster than overlap within
  // each warpgroup alone: +3% at head_dim 256, +1% at 64, no gain at 128
  // (docs/benchmarks.md, 2026-12-04).
  static constexpr bool kPingPong = kHeadDim != 128;
  // NOTES: the KV blocks that need a mask and those that do not run in
  // separate loops (prefill_mainloop.cuh consume_blocks) where that measured
  // faster than one loop with a mask branch per block: +8 to +13% at
  // head_dim 256 on the TMA path, +2% on the gather path at head_dim 64 and
  // 256; elsewhere short items lost up to 3% (docs/benchmarks.md, 2026-12-05).
  static constexpr bool kSplitMaskedLoops = kHeadDim == 256 || (kHeadDim == 64 && kPath == LoadPath::kGather);

  // 128B swizzle holds 64 16-bit elements per row: wider heads are stored as
  // column slices [slice][rows][64], each slice a K-major swizzled tile.
  static constexpr int kSliceCols = kTmaBoxCols;  // a TMA box fills one slice's rows
  static constexpr int kSlices = kHeadDim / kSliceCols;
  static constexpr int kRowBytes = kSliceCols * 2;
  static constexpr int kQSliceBytes = kBlockQ * kRowBytes;
  static constexpr int kKvSliceBytes = kBlockKV * kRowBytes;
  static constexpr int kKvTileBytes = kSlices * kKvSliceBytes;
  // K/V stages (prefill_params.hpp, default_kv_stages and kDeepKvStages),
  // each of which must fit beside Q in 227 KB (the barriers and the
  // alignment slack take 2 KB).
  // NOTES: at head_dim 128 the third stage that fits measured slower where
  // the DRAM is saturated on the H100 (decode level to 1.6%, W1 and W2 level
  // to 4%; docs/benchmarks.md, eighteenth session) and faster on the gather
  // path of the H200 (decode +2.4-2.9%; twenty-third session).
  static constexpr int kStages = kStages_;
  static constexpr int kStagesThatFit = (227 * 1024 - kSlices * kQSliceBytes - 2048) / (2 * kKvTileBytes);
  // Dynamic schedule: claimed items handed from producer thread 0 to every
  // role (prefill_pipeline.cuh, ItemFeed): the one being loaded and the next.
  static constexpr int kItemSlots = 2;

  // Registers per thread after setmaxnreg. The launch gives every thread 168
  // (64K / 384); the producer warpgroup hands the rest to the consumers:
  // P + 2C = 3 * 168, all multiples of 8. A TMA producer is one thread
  // issuing copies (24 suffice); the gather producer holds row addresses and
  // its work loop in 40, and the consumers' S, P and O fit in
  // what is left without spilling (ptxas, checked by the build).
  // The dynamic kernels' producers also claim items and read the item ring:
  // at 40 they spilled, so they take 56 and their consumers 224, which hold
  // S, P and O at the standard block without spilling.
  static constexpr uint32_t kProducerRegs = kDynamic ? 56 : kPath == LoadPath::kTma ? 24 : 40;
  static constexpr uint32_t kConsumerRegs = kDynamic ? 224 : kPath == LoadPath::kTma ? 240 : 232;

  // Epilogue (prefill_epilogue.cuh store_output): each consumer warp stages
  // its 16 rows in passes of up to 128 columns in a share of shared memory:
  // of its own (kOwnStaging) where that fits beside Q and the ring, else of
  // the item's last V stage, which all 8 consumer warps' shares must fit and
  // both warpgroups' P V must have read first (a consumers' barrier per
  // item; prefill_kernel.cuh consumer).
  // NOTES: with a barrier per item each warpgroup waited for the other's
  // last P V: W1 S=512 spent 48% of the consumers' stall samples in the
  // code run once per item (ncu, H100; docs/benchmarks.md, twenty-eighth
  // session). Ping-pong kernels keep the V stage (their turns order the
  // warpgroups anyway).
  static constexpr int kEpilogueCols = kHeadDim < 128 ? kHeadDim : 128;
  static constexpr int kEpilogueWarpBytes = 16 * kEpilogueCols * 2;
  static constexpr int kStagingBytes = kConsumerWarpgroups * 4 * kEpilogueWarpBytes;
  static constexpr bool kOwnStaging =
      !kPingPong && kSlices * kQSliceBytes + 2 * kStages * kKvTileBytes + kStagingBytes + 2048 <= 227 * 1024;

  // Gather path: each producer warp copies a quarter of the block's rows, a
  // row's offset held by one lane. A group of 8 lanes copies one row: lane j
  // takes 16-byte chunk j of the row's 128 bytes in every 64-column slice, so
  // its copies of one row differ only by constant offsets; 4 rows per step.
  static constexpr int kGatherRowsPerWarp = kBlockKV / 4;
  static constexpr int kGatherLanesPerRow = kRowBytes / 16;
  static constexpr int kGatherRowsPerStep = 32 / kGatherLanesPerRow;

  static_assert(kHeadDim == 64 || kHeadDim == 128 || kHeadDim == 256, "head_dim 64, 128 or 256");
  static_assert(ptx::kSupportedWgmmaN<kBlockKV> && ptx::kSupportedWgmmaN<kHeadDim>, "wgmma N not generated");
  static_assert(kPath != LoadPath::kGather || kGatherRowsPerWarp <= 32,
                "one lane of a producer warp holds one row's offset");
  static_assert(kPath != LoadPath::kGather || (kGatherRowsPerStep == 4 && kGatherRowsPerWarp % 8 == 0),
                "a warp's rows start on a swizzle period, and steps alternate between its two halves");
  static_assert(kOwnStaging || kStagingBytes <= kKvTileBytes, "every consumer warp's epilogue staging fits one V stage");
  static_assert(kStages >= 2, "the ring needs two stages to overlap loads with math");
  static_assert(kStages <= kStagesThatFit, "the ring's stages fit beside Q in shared memory");
  static_assert(kBlockKV % 16 == 0, "P V steps through the block 16 keys at a time");
  static_assert(kProducerRegs + 2 * kConsumerRegs == 3 * (65536 / kThreads / 8 * 8),
                "setmaxnreg moves registers within the CTA's launch allocation");
};

// Shared memory of one CTA. Tiles are 1024-byte aligned (128B swizzle repeat);
// the kernel aligns the dynamic smem base itself.
template <class Traits>
struct PrefillSharedStorage {
  alignas(1024) uint8_t q[Traits::kSlices * Traits::kQSliceBytes];
  alignas(1024) uint8_t k[Traits::kStages][Traits::kKvTileBytes];
  alignas(1024) uint8_t v[Traits::kStages][Traits::kKvTileBytes];
  alignas(1024) uint8_t o_staging[Traits::kOwnStaging ? Traits::kStagingBytes : 1];  // epilogue, kOwnStaging
  uint64_t q_full;
  uint64_t k_full[Traits::kStages], v_full[Traits::kStages];
  uint64_t k_empty[Traits::kStages], v_empty[Traits::kStages];
  int32_t item_slot[Traits::kItemSlots];
  int32_t item_claims;  // dynamic schedule: claims made, -1 once the work ran out
  uint64_t item_full[Traits::kItemSlots], item_empty[Traits::kItemSlots];
};

template <class Traits>
constexpr size_t prefill_smem_bytes() {
  return sizeof(PrefillSharedStorage<Traits>) + 1024;  // + alignment slack of the dynamic base
}

}  // namespace ptxattn::detail
