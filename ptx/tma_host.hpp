// Host side of TMA: tensor-map description, validation of every encoding rule
// (listed in docs/ptx.md "Tensor-map encoding rules") as an error value, and
// encoding through the driver entry point obtained from the runtime (no link
// against libcuda).
#pragma once

#include <cuda.h>

#include <cstdint>

#include "ptxattn/ptxattn.hpp"
#include "ptx/swizzle.hpp"

namespace ptxattn::ptx {

constexpr int kTensorMapMaxRank = 5;
constexpr uint32_t kTensorMapMaxBoxDim = 256;

// A tiled tensor map over a strided tensor of 16-bit elements (bf16/fp16) or
// other element sizes. Dimensions are innermost first; dim 0 is contiguous.
struct TensorMapSpec {
  CUtensorMapDataType data_type = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  int rank = 0;
  const void* global_address = nullptr;
  uint64_t dims[kTensorMapMaxRank] = {};          // elements per dimension
  uint64_t byte_strides[kTensorMapMaxRank] = {};  // [i] = stride of dim i in bytes, i >= 1 ([0] unused)
  uint32_t box[kTensorMapMaxRank] = {};           // elements per dimension of one copy
  Swizzle swizzle = Swizzle::k128B;
};

// Bytes of one element of a tensor-map data type (0 if unsupported here).
uint32_t tensor_map_element_bytes(CUtensorMapDataType type);

// Bytes one box writes to shared memory (the expect_tx of one load).
uint64_t tensor_map_box_bytes(const TensorMapSpec& spec);

// Checks every rule; CPU only, no CUDA call. kInvalidArgument names the rule.
Status validate_tensor_map(const TensorMapSpec& spec);

// validate_tensor_map, then cuTensorMapEncodeTiled (zero out-of-bounds fill,
// 256-byte L2 promotion). kCudaError if the driver entry point is missing or
// the driver rejects the map.
Status encode_tensor_map(const TensorMapSpec& spec, CUtensorMap* out);

}  // namespace ptxattn::ptx
