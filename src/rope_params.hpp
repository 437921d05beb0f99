// Plain data shared by the RoPE host code (rope_api.cpp, append_kv.cu) and the
// kernels (rope.cu): the kernel's parameter block, how a row is cut into
// per-thread units, the launch functions, and the host-side checks both API
// files use.
//
// NOTES: one kernel serves apply_rope, apply_rope_with_cos_sin_cache and
// append_paged_kv_cache. Each token has up to three groups of rows (Q, K, V);
// a group is rotated (rotary_dim of its row) or copied, and written to a dense
// tensor shaped like its input or to a paged pool. A thread owns one unit of
// one group for one block of heads: it computes its cos/sin once and reuses
// them for every head of the block.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ptx/swizzle.hpp"  // PTXATTN_HOST_DEVICE
#include "ptxattn/ptxattn.hpp"

namespace ptxattn::detail {

constexpr int32_t kRopeMaxRotaryDim = 256;  // the largest head_dim
constexpr int32_t kRopeMaxFrequencies = kRopeMaxRotaryDim / 2;
constexpr int32_t kRopeMaxGroups = 3;       // Q, K, V
constexpr int32_t kRopeUnitElements = 8;    // one 16-byte vector of bf16/fp16
// Heads per group: with at most head_dim / 8 = 32 units per row and 3 groups,
// a token has at most 3 · 32 · 65536 work items, so a CTA indexes its items
// in int32 (the API refuses more heads).
constexpr int32_t kRopeMaxHeads = 65536;

// The elements of a row one thread handles: span a = [a_begin, a_begin + count)
// and, for a NeoX rotary unit, its partners b = a + rotary_dim/2. A GPT-J unit
// rotates the pairs inside span a; a pass-through unit copies span a.
struct RopeUnit {
  int32_t a_begin;
  int32_t b_begin;     // NeoX rotary units only
  int32_t count;       // 1..8 elements per span
  int32_t first_freq;  // frequency index of the first pair
  bool rotary;
};

// Units per row: rotary units first (NeoX: 8 pairs each over [0, rotary_dim/2);
// GPT-J: 8 elements = 4 pairs each over [0, rotary_dim)), then pass-through
// units over [rotary_dim, head_dim) on 8-element boundaries (the first may be
// partial). rotary_dim == 0 makes every unit pass-through. Every element
// belongs to exactly one unit, so a thread reads only what it writes.
PTXATTN_HOST_DEVICE int32_t rope_rotary_units(int32_t rotary_dim, bool interleave) {
  const int32_t rotated_span = interleave ? rotary_dim : rotary_dim / 2;
  return (rotated_span + kRopeUnitElements - 1) / kRopeUnitElements;
}

PTXATTN_HOST_DEVICE int32_t rope_units_per_row(int32_t head_dim, int32_t rotary_dim, bool interleave) {
  return rope_rotary_units(rotary_dim, interleave) + head_dim / kRopeUnitElements - rotary_dim / kRopeUnitElements;
}

PTXATTN_HOST_DEVICE RopeUnit rope_unit(int32_t unit, int32_t rotary_dim, bool interleave) {
  const int32_t rotary_units = rope_rotary_units(rotary_dim, interleave);
  if (unit < rotary_units) {
    const int32_t begin = unit * kRopeUnitElements;
    const int32_t rotated_span = interleave ? rotary_dim : rotary_dim / 2;
    const int32_t count = rotated_span - begin < kRopeUnitElements ? rotated_span - begin : kRopeUnitElements;
    return {begin, begin + rotary_dim / 2, count, interleave ? begin / 2 : begin, true};
  }
  const int32_t chunk = rotary_dim / kRopeUnitElements + (unit - rotary_units);
  const int32_t begin = chunk * kRopeUnitElements > rotary_dim ? chunk * kRopeUnitElements : rotary_dim;
  return {begin, 0, (chunk + 1) * kRopeUnitElements - begin, 0, false};
}

// One group of rows: [num_tokens][heads][head_dim] in, dense or paged out.
struct RopeRowGroup {
  const void* in;
  void* out;
  int32_t heads;
  bool rotate;  // false: copy (all units pass through)
  bool paged;   // out is a paged pool: row of (token, head) from token_page and the position
  // Filled by split_rope_work:
  int32_t units;        // rope_units_per_row(head_dim, rotate ? rotary_dim : 0, interleave)
  int32_t head_blocks;  // ceil(heads / heads_per_block)
};

struct RopeParams {
  RopeRowGroup groups[kRopeMaxGroups];
  int32_t num_groups;
  int64_t num_tokens;
  int32_t head_dim;
  int32_t rotary_dim;
  bool interleave;

  // Positions: pos_ids[token], or indptr + offsets (pos_ids == null).
  const int32_t* pos_ids;
  const int32_t* indptr;   // [num_requests + 1]
  const int32_t* offsets;  // [num_requests]
  int32_t num_requests;

  // cos/sin: from a cache (cos_sin_cache != null) or computed from
  // half_turns[i] = freq_i / pi (double, see reference/rope.hpp kGpu).
  const float* cos_sin_cache;  // [max_position][rotary_dim]
  int32_t max_position;
  double half_turns[kRopeMaxFrequencies];

  // Paged groups: token t goes to page token_page[t], slot position % page_size.
  const int32_t* token_page;
  int32_t page_size;
  int64_t page_stride, slot_stride, head_stride;  // elements

  // Filled by split_rope_work:
  int32_t heads_per_block;
  int32_t items_per_token;  // sum over groups of units * head_blocks
  int32_t tokens_per_cta;
};

// ---- Work split (the launcher plans it on the host, the kernel decodes it) ----
// A CTA takes tokens_per_cta consecutive tokens; their items are numbered
// token-major, then group, head block and unit (units of one head block are
// adjacent, so a warp reads contiguous spans), in int32.

constexpr int32_t kRopeHeadsPerBlock = 8;  // heads per item when there is enough work

// Fills the fields above. resident_threads: threads the GPU holds at once.
// NOTES: blocks of kRopeHeadsPerBlock heads keep per-item work even across
// groups with different head counts (32 Q heads vs 8 K heads), so warps
// finish together; with few tokens, smaller blocks (down to one head) make
// enough items to fill every SM. Each item computes its own cos/sin, which
// is cheap next to the rows it moves.
inline void split_rope_work(RopeParams& p, int64_t resident_threads, int32_t cta_threads) {
  for (int32_t g = 0; g < p.num_groups; ++g)
    p.groups[g].units = rope_units_per_row(p.head_dim, p.groups[g].rotate ? p.rotary_dim : 0, p.interleave);
  for (p.heads_per_block = kRopeHeadsPerBlock;; p.heads_per_block /= 2) {
    p.items_per_token = 0;
    for (int32_t g = 0; g < p.num_groups; ++g) {
      p.groups[g].head_blocks = (p.groups[g].heads + p.heads_per_block - 1) / p.heads_per_block;
      p.items_per_token += p.groups[g].units * p.groups[g].head_blocks;
    }
    if (p.heads_per_block == 1 || p.num_tokens * p.items_per_token >= resident_threads) break;
  }
  // About one item per thread; a token with more items than threads gets a CTA to itself.
  p.tokens_per_cta = p.items_per_token >= cta_threads ? 1 : cta_threads / p.items_per_token;
}

PTXATTN_HOST_DEVICE int64_t rope_num_ctas(const RopeParams& p) {
  return (p.num_tokens + p.tokens_per_cta - 1) / p.tokens_per_cta;
}

PTXATTN_HOST_DEVICE int32_t rope_cta_items(const RopeParams& p, int64_t cta) {
  const int64_t tokens_left = p.num_tokens - cta * p.tokens_per_cta;
  return int32_t(tokens_left < p.tokens_per_cta ? tokens_left : p.tokens_per_cta) * p.items_per_token;
}

// Heads [head_begin, head_end) of one token of one group, through one unit of their rows.
struct RopeItem {
  int64_t token;
  int32_t group;
  int32_t unit;
  int32_t head_begin;
  int32_t head_end;
};

// Item `item` (< rope_cta_items) of CTA `cta`.
PTXATTN_HOST_DEVICE RopeItem rope_item(const RopeParams& p, int64_t cta, int32_t item) {
  const int32_t token_in_cta = item / p.items_per_token;
  int32_t index = item - token_in_cta * p.items_per_token;
  int32_t group = 0;
  while (group + 1 < p.num_groups && index >= p.groups[group].units * p.groups[group].head_blocks) {
    index -= p.groups[group].units * p.groups[group].head_blocks;
    ++group;
  }
  const RopeRowGroup& g = p.groups[group];
  const int32_t head_begin = index / g.units * p.heads_per_block;
  const int32_t head_end = head_begin + p.heads_per_block < g.heads ? head_begin + p.heads_per_block : g.heads;
  return {cta * p.tokens_per_cta + token_in_cta, group, index % g.units, head_begin, head_end};
}

// ---- Host side (rope_api.cpp) ----

constexpr int64_t kRopeElementBytes = 2;  // bf16 and fp16

// Argument checks (messages name the argument and the bad value).
Status check_dtype(const char* name, DType dtype);                              // a DType, built
Status check_heads(const char* name, int32_t heads);                            // [1, kRopeMaxHeads]
Status check_head_dim(const char* name, int32_t head_dim);                      // 64, 128 or 256
Status check_rotary_dim(const char* name, int32_t rotary_dim, int32_t head_dim); // even, [2, head_dim]
// (Pointer, aliasing and indptr checks: validate.hpp.)

// freq_i / pi for i < rope.rotary_dim / 2 into params.half_turns (rope validated).
void fill_rope_half_turns(const RopeConfig& rope, RopeParams& params);

// Splits the work (split_rope_work) and launches the row kernel on `stream`.
// Returns the launch error (cudaGetLastError), if any.
cudaError_t launch_rope_rows(RopeParams& params, DType dtype, cudaStream_t stream);

// cache [max_position][rotary_dim] from params.half_turns (rotary_dim, max_position set).
cudaError_t launch_build_cos_sin_cache(float* cache, const RopeParams& params, cudaStream_t stream);

}  // namespace ptxattn::detail
