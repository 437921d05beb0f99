// Shared-memory swizzle modes and the byte each logical element lands on.
// Host and device (CPU unit tests check these against hand-computed values).
//
// NOTES: the hardware swizzles by XOR-ing address bits [7, 7+b) into bits
// [4, 4+b), b = 3/2/1 for 128B/64B/32B: the 16-byte chunk index inside a row of
// the swizzle width is XOR-ed with the row index modulo (width / 16). This
// holds for TMA writes and wgmma reads alike as long as the tile base is
// aligned to the swizzle repeat (1024/512/256 bytes), so both sides agree.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define PTXATTN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PTXATTN_HOST_DEVICE inline
#endif

namespace ptxattn::ptx {

enum class Swizzle : uint32_t { kNone = 0, k32B = 32, k64B = 64, k128B = 128 };

// Number of address bits XOR-ed (log2 of 16-byte chunks per swizzle row).
PTXATTN_HOST_DEVICE constexpr uint32_t swizzle_bits(Swizzle s) {
  return s == Swizzle::k128B ? 3u : s == Swizzle::k64B ? 2u : s == Swizzle::k32B ? 1u : 0u;
}

// Bytes after which the swizzle pattern repeats (8 rows of the swizzle width).
PTXATTN_HOST_DEVICE constexpr uint32_t swizzle_repeat_bytes(Swizzle s) {
  return s == Swizzle::kNone ? 16u : 8u * static_cast<uint32_t>(s);
}

// Physical byte offset of linear byte offset `linear` in a swizzled tile.
PTXATTN_HOST_DEVICE constexpr uint32_t swizzle_offset(Swizzle s, uint32_t linear) {
  const uint32_t mask = (1u << swizzle_bits(s)) - 1u;
  return linear ^ (((linear >> 7) & mask) << 4);
}

// Byte offset of element (row, col) of a tile whose rows are exactly the
// swizzle width wide (128B swizzle: 64 bf16 per row), rows contiguous.
PTXATTN_HOST_DEVICE constexpr uint32_t swizzled_element_offset(Swizzle s, uint32_t row, uint32_t col,
                                                               uint32_t elem_bytes) {
  const uint32_t row_bytes = s == Swizzle::kNone ? 16u : static_cast<uint32_t>(s);
  return swizzle_offset(s, row * row_bytes + col * elem_bytes);
}

}  // namespace ptxattn::ptx
