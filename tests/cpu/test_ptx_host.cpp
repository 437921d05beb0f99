// CPU unit tests of the host-side parts of ptx/ (issue 3): the wgmma
// shared-memory descriptor (known values, round trips, advance), the byte
// each logical (row, col) element lands on under 128B/64B/32B swizzle, and
// tensor-map validation (each rule broken once gives its own error).
// The GPU side of the same facts: tests/gpu/test_ptx_gpu.cu.
#include <catch2/catch.hpp>
#include <cstdint>
#include <set>
#include <string>

#include "ptx/swizzle.hpp"
#include "ptx/tma_host.hpp"
#include "ptx/wgmma.cuh"

namespace ptxattn::ptx {
namespace {

using Catch::Matchers::Contains;

// ---------------------------------------------------------------------------
// Matrix descriptor
// ---------------------------------------------------------------------------

TEST_CASE("descriptor: K-major 128B-swizzle tile encodes to the known 64-bit value", "[ptx]") {
  // start 0x1000 -> 0x100 (bits 0-13), LBO 16 -> 1 (bits 16-29), SBO 1024 ->
  // 0x40 (bits 32-45), swizzle 128B -> 1 (bits 62-63).
  CHECK(make_smem_descriptor(0x1000, 16, 1024, Swizzle::k128B) == 0x4000'0040'0001'0100ull);
  // MN-major V slice layout at K = 128: LBO = 128 rows x 128 B = 16384 -> 0x400.
  CHECK(make_smem_descriptor(0x2400, 16384, 1024, Swizzle::k128B) == 0x4000'0040'0400'0240ull);
  // Base offset 5 in bits 49-51.
  CHECK(make_smem_descriptor(0, 16, 1024, Swizzle::k128B, 5) == 0x400A'0040'0001'0000ull);
}

TEST_CASE("descriptor: swizzle mode codes in bits 62-63 (none 0, 128B 1, 64B 2, 32B 3)", "[ptx]") {
  CHECK(make_smem_descriptor(0, 0, 0, Swizzle::kNone) >> 62 == 0);
  CHECK(make_smem_descriptor(0, 0, 0, Swizzle::k128B) >> 62 == 1);
  CHECK(make_smem_descriptor(0, 0, 0, Swizzle::k64B) >> 62 == 2);
  CHECK(make_smem_descriptor(0, 0, 0, Swizzle::k32B) >> 62 == 3);
}

TEST_CASE("descriptor: fields keep address bits 4..17 only", "[ptx]") {
  CHECK(matrix_descriptor_encode(0x1008) == 0x100);    // below 16 B dropped
  CHECK(matrix_descriptor_encode(0x3FFF0) == 0x3FFF);  // the largest encodable value
  CHECK(matrix_descriptor_encode(0x40010) == 0x1);     // 256 KiB and above wrap
  // Nothing leaks into the neighbouring field or the reserved bits.
  const uint64_t d = make_smem_descriptor(0x3FFF0, 0x3FFF0, 0x3FFF0, Swizzle::kNone);
  CHECK(d == 0x0000'3FFF'3FFF'3FFFull);
}

TEST_CASE("descriptor: decode inverts encode for every field", "[ptx]") {
  const Swizzle modes[] = {Swizzle::kNone, Swizzle::k32B, Swizzle::k64B, Swizzle::k128B};
  for (uint32_t start : {0u, 16u, 0x400u, 0x1F3F0u, 0x3FFF0u})
    for (uint32_t lbo : {0u, 16u, 1024u, 16384u, 0x3FFF0u})
      for (uint32_t sbo : {0u, 1024u, 8192u, 0x3FFF0u})
        for (uint32_t base : {0u, 3u, 7u})
          for (Swizzle s : modes) {
            const DescriptorFields f = descriptor_decode(make_smem_descriptor(start, lbo, sbo, s, base));
            INFO("start " << start << " lbo " << lbo << " sbo " << sbo << " base " << base << " swizzle "
                          << uint32_t(s));
            CHECK(f.start_address == start);
            CHECK(f.leading_byte_offset == lbo);
            CHECK(f.stride_byte_offset == sbo);
            CHECK(f.base_offset == base);
            CHECK(f.swizzle_bits == swizzle_descriptor_bits(s));
          }
}

TEST_CASE("descriptor: advance moves only the start address (k16 steps of a 128B K-major row)", "[ptx]") {
  const uint64_t slice = make_smem_descriptor(0x3000, 16, 1024, Swizzle::k128B);
  for (uint32_t k16 = 0; k16 < 4; ++k16) {
    INFO("k16 step " << k16);
    CHECK(descriptor_advance(slice, 32 * k16) == make_smem_descriptor(0x3000 + 32 * k16, 16, 1024, Swizzle::k128B));
  }
  // The MN-major k16 step: +16 rows of 128 B.
  const uint64_t v = make_smem_descriptor(0x8000, 16384, 1024, Swizzle::k128B);
  CHECK(descriptor_decode(descriptor_advance(v, 2048)).start_address == 0x8800);
  CHECK(descriptor_decode(descriptor_advance(v, 2048)).leading_byte_offset == 16384);
}

// ---------------------------------------------------------------------------
// Swizzle address functions
// ---------------------------------------------------------------------------

// Independent statement of the hardware rule for rows exactly one swizzle
// width wide: the 16-byte chunk index is XOR-ed with the row index within
// the repeat, (row * width / 128) mod (width / 16).
uint32_t expected_offset(uint32_t width, uint32_t row, uint32_t col) {
  const uint32_t chunks = width / 16, rows_per_128b = 128 / width;
  const uint32_t chunk = (col * 2 / 16) ^ ((row / rows_per_128b) % chunks);
  return row * width + chunk * 16 + (col * 2) % 16;
}

TEST_CASE("swizzle: bits and repeat per mode", "[ptx]") {
  CHECK(swizzle_bits(Swizzle::k128B) == 3);
  CHECK(swizzle_bits(Swizzle::k64B) == 2);
  CHECK(swizzle_bits(Swizzle::k32B) == 1);
  CHECK(swizzle_bits(Swizzle::kNone) == 0);
  CHECK(swizzle_repeat_bytes(Swizzle::k128B) == 1024);
  CHECK(swizzle_repeat_bytes(Swizzle::k64B) == 512);
  CHECK(swizzle_repeat_bytes(Swizzle::k32B) == 256);
}

TEST_CASE("swizzle 128B: known bytes of bf16 elements (row of 64)", "[ptx]") {
  CHECK(swizzled_element_offset(Swizzle::k128B, 0, 0, 2) == 0);
  CHECK(swizzled_element_offset(Swizzle::k128B, 0, 8, 2) == 16);
  CHECK(swizzled_element_offset(Swizzle::k128B, 1, 0, 2) == 144);   // chunk 0 -> 1
  CHECK(swizzled_element_offset(Swizzle::k128B, 1, 8, 2) == 128);   // chunk 1 -> 0
  CHECK(swizzled_element_offset(Swizzle::k128B, 3, 17, 2) == 402);  // chunk 2 -> 1, element 1 of it
  CHECK(swizzled_element_offset(Swizzle::k128B, 7, 63, 2) == 910);  // chunk 7 -> 0, last element
  CHECK(swizzled_element_offset(Swizzle::k128B, 8, 0, 2) == 1024);  // next 1024-B atom, pattern restarts
  CHECK(swizzled_element_offset(Swizzle::k128B, 9, 0, 2) == 1168);
}

TEST_CASE("swizzle 64B and 32B: known bytes of bf16 elements", "[ptx]") {
  // 64B: rows of 32 elements; rows 2r and 2r+1 share address bits 7-8.
  CHECK(swizzled_element_offset(Swizzle::k64B, 1, 0, 2) == 64);
  CHECK(swizzled_element_offset(Swizzle::k64B, 2, 0, 2) == 144);
  CHECK(swizzled_element_offset(Swizzle::k64B, 3, 8, 2) == 192);
  CHECK(swizzled_element_offset(Swizzle::k64B, 7, 31, 2) == 7 * 64 + 0 * 16 + 14);
  // 32B: rows of 16 elements; the two chunks swap in rows 4..7 of each 8.
  CHECK(swizzled_element_offset(Swizzle::k32B, 3, 0, 2) == 96);
  CHECK(swizzled_element_offset(Swizzle::k32B, 4, 0, 2) == 144);
  CHECK(swizzled_element_offset(Swizzle::k32B, 4, 8, 2) == 128);
  CHECK(swizzled_element_offset(Swizzle::k32B, 8, 0, 2) == 256);
}

TEST_CASE("swizzle: every element of every mode lands where the XOR rule says, each byte once per repeat", "[ptx]") {
  for (Swizzle s : {Swizzle::k128B, Swizzle::k64B, Swizzle::k32B}) {
    const uint32_t width = uint32_t(s), cols = width / 2, rows = 32;
    std::set<uint32_t> seen;
    size_t wrong = 0, outside_row = 0;
    for (uint32_t row = 0; row < rows; ++row)
      for (uint32_t col = 0; col < cols; ++col) {
        const uint32_t at = swizzled_element_offset(s, row, col, 2);
        wrong += at != expected_offset(width, row, col);
        outside_row += at / width != row;  // a row stays in its own width-wide span
        seen.insert(at);
      }
    INFO(width << "B swizzle");
    CHECK(wrong == 0);
    CHECK(outside_row == 0);
    CHECK(seen.size() == size_t(rows) * cols);  // a bijection onto the tile
  }
  // No swizzle: identity.
  for (uint32_t linear : {0u, 16u, 130u, 4096u}) CHECK(swizzle_offset(Swizzle::kNone, linear) == linear);
}

// ---------------------------------------------------------------------------
// Tensor-map validation
// ---------------------------------------------------------------------------

// A valid spec: bf16 [64 rows][64 cols], one 128B-swizzled box. The address
// is never dereferenced by validation.
TensorMapSpec valid_spec() {
  TensorMapSpec spec;
  spec.data_type = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  spec.rank = 2;
  spec.global_address = reinterpret_cast<const void*>(uintptr_t(0x10000));
  spec.dims[0] = 64;
  spec.dims[1] = 64;
  spec.byte_strides[1] = 128;
  spec.box[0] = 64;
  spec.box[1] = 64;
  spec.swizzle = Swizzle::k128B;
  return spec;
}

void check_rejected(const TensorMapSpec& spec, const std::string& message_part) {
  const Status s = validate_tensor_map(spec);
  INFO("message: " << s.message);
  CHECK(s.code == StatusCode::kInvalidArgument);
  CHECK_THAT(s.message, Contains(message_part));
}

TEST_CASE("tensor map: a valid spec passes; sizes of elements and boxes", "[ptx]") {
  CHECK(validate_tensor_map(valid_spec()).ok());
  TensorMapSpec unswizzled = valid_spec();
  unswizzled.swizzle = Swizzle::kNone;
  unswizzled.dims[0] = 256;
  unswizzled.byte_strides[1] = 512;
  unswizzled.box[0] = 256;  // 512-byte rows are fine without swizzle
  CHECK(validate_tensor_map(unswizzled).ok());

  CHECK(tensor_map_element_bytes(CU_TENSOR_MAP_DATA_TYPE_BFLOAT16) == 2);
  CHECK(tensor_map_element_bytes(CU_TENSOR_MAP_DATA_TYPE_FLOAT16) == 2);
  CHECK(tensor_map_element_bytes(CU_TENSOR_MAP_DATA_TYPE_FLOAT32) == 4);
  CHECK(tensor_map_element_bytes(CU_TENSOR_MAP_DATA_TYPE_UINT8) == 1);
  CHECK(tensor_map_element_bytes(CU_TENSOR_MAP_DATA_TYPE_FLOAT64) == 0);
  CHECK(tensor_map_box_bytes(valid_spec()) == 64 * 64 * 2);

  // The paged-pool box of the prefill kernel: (64 d, 1 head, 16 slots, 1 page).
  TensorMapSpec paged = valid_spec();
  paged.rank = 4;
  const uint64_t dims[4] = {128, 8, 16, 1000};
  const uint32_t box[4] = {64, 1, 16, 1};
  for (int i = 0; i < 4; ++i) {
    paged.dims[i] = dims[i];
    paged.box[i] = box[i];
  }
  paged.byte_strides[1] = 256;
  paged.byte_strides[2] = 256 * 8;
  paged.byte_strides[3] = 256 * 8 * 16;
  CHECK(validate_tensor_map(paged).ok());
  CHECK(tensor_map_box_bytes(paged) == 2048);
}

TEST_CASE("tensor map: each broken rule gives its own error", "[ptx]") {
  TensorMapSpec spec = valid_spec();
  spec.data_type = CU_TENSOR_MAP_DATA_TYPE_FLOAT64;
  check_rejected(spec, "unsupported data type");

  spec = valid_spec();
  spec.rank = 0;
  check_rejected(spec, "rank 0 is outside 1..5");
  spec.rank = 6;
  check_rejected(spec, "rank 6 is outside 1..5");

  spec = valid_spec();
  spec.global_address = nullptr;
  check_rejected(spec, "global_address is null");

  spec = valid_spec();
  spec.global_address = reinterpret_cast<const void*>(uintptr_t(0x10008));
  check_rejected(spec, "is not 16-byte aligned");

  spec = valid_spec();
  spec.dims[1] = 0;
  check_rejected(spec, "dims[1] = 0 is outside 1..2^32");
  spec.dims[1] = (uint64_t(1) << 32) + 1;
  check_rejected(spec, "dims[1] = 4294967297 is outside 1..2^32");

  spec = valid_spec();
  spec.box[1] = 0;
  check_rejected(spec, "box[1] = 0 is outside 1..256");
  spec.box[1] = 257;
  check_rejected(spec, "box[1] = 257 is outside 1..256");

  spec = valid_spec();
  spec.byte_strides[1] = 120;
  check_rejected(spec, "byte_strides[1] = 120 is not a multiple of 16");
  spec.byte_strides[1] = uint64_t(1) << 40;
  check_rejected(spec, "byte_strides[1] = 1099511627776 is not below 2^40");

  spec = valid_spec();
  spec.box[0] = 4;  // 8 bytes
  check_rejected(spec, "inner box row of 8 bytes is not a multiple of 16");

  spec = valid_spec();
  spec.dims[0] = 128;
  spec.byte_strides[1] = 256;
  spec.box[0] = 128;  // 256 bytes
  check_rejected(spec, "inner box row of 256 bytes exceeds the 128-byte swizzle span");
  spec.box[0] = 64;
  spec.swizzle = Swizzle::k64B;
  check_rejected(spec, "inner box row of 128 bytes exceeds the 64-byte swizzle span");
  spec.swizzle = Swizzle::k32B;
  check_rejected(spec, "inner box row of 128 bytes exceeds the 32-byte swizzle span");
}

TEST_CASE("tensor map: encode validates before it touches the driver", "[ptx]") {
  CUtensorMap map;
  const Status null_out = encode_tensor_map(valid_spec(), nullptr);
  CHECK(null_out.code == StatusCode::kInvalidArgument);
  CHECK_THAT(null_out.message, Contains("output CUtensorMap pointer is null"));

  TensorMapSpec spec = valid_spec();
  spec.box[1] = 300;
  const Status bad_box = encode_tensor_map(spec, &map);
  CHECK(bad_box.code == StatusCode::kInvalidArgument);
  CHECK_THAT(bad_box.message, Contains("box[1] = 300"));
}

}  // namespace
}  // namespace ptxattn::ptx
