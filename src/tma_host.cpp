// See ptx/tma_host.hpp.
#include "ptx/tma_host.hpp"

#include <cuda_runtime_api.h>

#include <string>

#include "status.hpp"

namespace ptxattn::ptx {
namespace {

Status invalid(std::string message) { return {StatusCode::kInvalidArgument, "tensor map: " + std::move(message)}; }

std::string dim_name(const char* what, int i) { return std::string(what) + "[" + std::to_string(i) + "]"; }

}  // namespace

uint32_t tensor_map_element_bytes(CUtensorMapDataType type) {
  switch (type) {
    case CU_TENSOR_MAP_DATA_TYPE_UINT8: return 1;
    case CU_TENSOR_MAP_DATA_TYPE_UINT16:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT16:
    case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16: return 2;
    case CU_TENSOR_MAP_DATA_TYPE_UINT32:
    case CU_TENSOR_MAP_DATA_TYPE_INT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32: return 4;
    default: return 0;
  }
}

uint64_t tensor_map_box_bytes(const TensorMapSpec& spec) {
  uint64_t bytes = tensor_map_element_bytes(spec.data_type);
  for (int i = 0; i < spec.rank && i < kTensorMapMaxRank; ++i) bytes *= spec.box[i];
  return bytes;
}

Status validate_tensor_map(const TensorMapSpec& spec) {
  const uint32_t elem = tensor_map_element_bytes(spec.data_type);
  if (elem == 0) return invalid("unsupported data type " + std::to_string(int(spec.data_type)));
  if (spec.rank < 1 || spec.rank > kTensorMapMaxRank)
    return invalid("rank " + std::to_string(spec.rank) + " is outside 1..5");
  if (spec.global_address == nullptr) return invalid("global_address is null");
  const auto address = reinterpret_cast<uintptr_t>(spec.global_address);
  if (address % 16 != 0) return invalid("global_address " + std::to_string(address) + " is not 16-byte aligned");
  for (int i = 0; i < spec.rank; ++i) {
    if (spec.dims[i] == 0 || spec.dims[i] > (uint64_t(1) << 32))
      return invalid(dim_name("dims", i) + " = " + std::to_string(spec.dims[i]) + " is outside 1..2^32");
    if (spec.box[i] == 0 || spec.box[i] > kTensorMapMaxBoxDim)
      return invalid(dim_name("box", i) + " = " + std::to_string(spec.box[i]) + " is outside 1..256");
    if (i >= 1) {
      const uint64_t stride = spec.byte_strides[i];
      if (stride % 16 != 0)
        return invalid(dim_name("byte_strides", i) + " = " + std::to_string(stride) + " is not a multiple of 16");
      if (stride >= (uint64_t(1) << 40))
        return invalid(dim_name("byte_strides", i) + " = " + std::to_string(stride) + " is not below 2^40");
    }
  }
  const uint64_t inner_box_bytes = uint64_t(spec.box[0]) * elem;
  if (inner_box_bytes % 16 != 0)
    return invalid("inner box row of " + std::to_string(inner_box_bytes) + " bytes is not a multiple of 16");
  if (spec.swizzle != Swizzle::kNone && inner_box_bytes > static_cast<uint32_t>(spec.swizzle))
    return invalid("inner box row of " + std::to_string(inner_box_bytes) + " bytes exceeds the " +
                   std::to_string(static_cast<uint32_t>(spec.swizzle)) + "-byte swizzle span");
  return Status::Ok();
}

Status encode_tensor_map(const TensorMapSpec& spec, CUtensorMap* out) {
  if (out == nullptr) return invalid("output CUtensorMap pointer is null");
  if (Status s = validate_tensor_map(spec); !s.ok()) return s;

  using EncodeFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
  // Looked up once; CUDA 13 deprecates the unversioned entry-point query.
  struct Lookup {
    EncodeFn fn = nullptr;
    cudaError_t err = cudaSuccess;
  };
  static const Lookup lookup = [] {
    Lookup result;
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult query{};
    result.err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &query);
    if (result.err == cudaSuccess && query == cudaDriverEntryPointSuccess) result.fn = reinterpret_cast<EncodeFn>(fn);
    return result;
  }();
  // No driver (no GPU) is kNoDevice with the plain message every entry point gives.
  if (lookup.err != cudaSuccess)
    return detail::cuda_error(lookup.err, "cudaGetDriverEntryPointByVersion(cuTensorMapEncodeTiled)", __FILE__,
                              __LINE__);
  if (lookup.fn == nullptr)
    return {StatusCode::kCudaError, "tensor map: cuTensorMapEncodeTiled is not available from the CUDA driver"};
  const EncodeFn encode = lookup.fn;

  cuuint64_t dims[kTensorMapMaxRank], strides[kTensorMapMaxRank];
  cuuint32_t box[kTensorMapMaxRank], element_strides[kTensorMapMaxRank];
  for (int i = 0; i < spec.rank; ++i) {
    dims[i] = spec.dims[i];
    box[i] = spec.box[i];
    element_strides[i] = 1;
    if (i >= 1) strides[i - 1] = spec.byte_strides[i];
  }
  const CUtensorMapSwizzle swizzle = spec.swizzle == Swizzle::k128B  ? CU_TENSOR_MAP_SWIZZLE_128B
                                     : spec.swizzle == Swizzle::k64B ? CU_TENSOR_MAP_SWIZZLE_64B
                                     : spec.swizzle == Swizzle::k32B ? CU_TENSOR_MAP_SWIZZLE_32B
                                                                     : CU_TENSOR_MAP_SWIZZLE_NONE;
  const CUresult r = encode(out, spec.data_type, static_cast<cuuint32_t>(spec.rank),
                            const_cast<void*>(spec.global_address), dims, strides, box, element_strides,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return {StatusCode::kCudaError, "tensor map: cuTensorMapEncodeTiled failed with CUresult " + std::to_string(int(r))};
  return Status::Ok();
}

}  // namespace ptxattn::ptx
