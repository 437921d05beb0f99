// Dispatch of one head dim's kernels by dtype and load path; included only by
// the prefill_hd<N>.cu translation units.
#pragma once

#include "prefill_kernel.cuh"
#include "prefill_launch.hpp"

namespace ptxattn::detail {

template <class T>
cudaError_t launch_prefill_kernel(const PrefillLaunch& l, cudaStream_t stream) {
  constexpr size_t kSmemBytes = prefill_smem_bytes<T>();
  static_assert(kSmemBytes <= 227 * 1024, "shared memory per block is 227 KB on SM90");
  // The plan's KV ranges are in blocks of l.block_kv; the kernel walks T::kBlockKV.
  if (l.block_kv != T::kBlockKV) return cudaErrorInvalidValue;
  const auto kernel = prefill_kernel<T>;
  if (cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmemBytes));
      err != cudaSuccess)
    return err;
  // The dynamic kernels overlap the kernel ahead of them, which zeroes their
  // claim counter (prefill_run.cpp); they wait for it before their first claim.
  if constexpr (T::kDynamic)
    return ptx::launch_dependent(kernel, dim3(l.num_ctas), dim3(T::kThreads), kSmemBytes, stream, l.params, l.q_map,
                                 l.k_map, l.v_map);
  kernel<<<l.num_ctas, T::kThreads, kSmemBytes, stream>>>(l.params, l.q_map, l.k_map, l.v_map);
  return cudaGetLastError();
}

template <int kHeadDim, ptx::MmaType kType>
cudaError_t launch_prefill_for_type(const PrefillLaunch& l, cudaStream_t stream) {
  constexpr int kBlock = prefill_block_kv(kHeadDim, false);
  const bool dynamic = l.params.work_counter != nullptr;  // the dynamic schedule's kernels: the standard block only
  if constexpr (kHeadDim == 128)
    if (l.kv_stages == kDeepKvStages) {  // the deep ring: the gather path only (prefill_plan.cpp)
      if (l.tma) return cudaErrorInvalidValue;
      if (dynamic)
        return launch_prefill_kernel<PrefillTraits<kHeadDim, kType, LoadPath::kGather, kBlock, true, kDeepKvStages>>(
            l, stream);
      return launch_prefill_kernel<PrefillTraits<kHeadDim, kType, LoadPath::kGather, kBlock, false, kDeepKvStages>>(
          l, stream);
    }
  if (l.kv_stages != default_kv_stages(kHeadDim)) return cudaErrorInvalidValue;
  if (dynamic) {
    if (!l.tma) return launch_prefill_kernel<PrefillTraits<kHeadDim, kType, LoadPath::kGather, kBlock, true>>(l, stream);
    return launch_prefill_kernel<PrefillTraits<kHeadDim, kType, LoadPath::kTma, kBlock, true>>(l, stream);
  }
  if (!l.tma) return launch_prefill_kernel<PrefillTraits<kHeadDim, kType, LoadPath::kGather>>(l, stream);
  if constexpr (kHeadDim == 128)
    if (l.block_kv == kWideBlockKV)
      return launch_prefill_kernel<PrefillTraits<kHeadDim, kType, LoadPath::kTma, kWideBlockKV>>(l, stream);
  return launch_prefill_kernel<PrefillTraits<kHeadDim, kType, LoadPath::kTma>>(l, stream);
}

template <int kHeadDim>
cudaError_t launch_prefill_for_head_dim(const PrefillLaunch& l, cudaStream_t stream) {
#if defined(PTXATTN_ENABLE_BF16)
  if (l.dtype == DType::kBF16) return launch_prefill_for_type<kHeadDim, ptx::MmaType::kBF16>(l, stream);
#endif
#if defined(PTXATTN_ENABLE_FP16)
  if (l.dtype == DType::kFP16) return launch_prefill_for_type<kHeadDim, ptx::MmaType::kFP16>(l, stream);
#endif
  return cudaErrorNotSupported;  // unreachable: the plan rejects dtypes this build leaves out
}

}  // namespace ptxattn::detail

// Defines launch_prefill<N> for one translation unit.
#define PTXATTN_DEFINE_PREFILL_LAUNCH(N)                                                           \
  namespace ptxattn::detail {                                                                      \
  template <>                                                                                      \
  cudaError_t launch_prefill<N>(const PrefillLaunch& launch, cudaStream_t stream) {                \
    return launch_prefill_for_head_dim<N>(launch, stream);                                         \
  }                                                                                                \
  }
