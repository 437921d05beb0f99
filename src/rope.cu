// RoPE kernels: the row kernel behind apply_rope, apply_rope_with_cos_sin_cache
// and append_paged_kv_cache (rope_params.hpp says how work is cut), and the
// cos/sin cache builder.
//
// NOTES:
// - Memory bound: every byte moves once, in 16-byte vectors wherever a unit
//   is a whole aligned 8-element chunk (all the usual rotary dims); the odd
//   ones (NeoX with rotary_dim/2 % 8 != 0, partial chunks at rotary_dim) fall
//   back to 2-byte accesses for those units only.
// - A thread loads kHeadBatch rows before it stores the first, so each
//   thread has several 16-byte loads in flight.
// - cos/sin are computed once per (thread, token) and reused for every head
//   of the thread's head block. Angle: u = position · freq/pi in double,
//   reduced exactly to x = u - 2·rint(u/2) in [-1, 1], then sincospif(float(x)):
//   no large-argument reduction in float, so position 1M is as accurate as 0.
// - State: the only shared memory is the frequency table, written in full
//   before the barrier that precedes every read of it. Each element of a row
//   is read and written by one thread only, so in-place operation is safe.
#include <algorithm>
#include <cstdint>

#include "element_type.cuh"
#include "rope_params.hpp"

namespace ptxattn::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kHeadBatch = 4;        // rows a thread loads before it stores the first
// NOTES: a NeoX thread holds 2 spans x kHeadBatch rows; at 3 CTAs per SM
// (<= 80 registers) it still does not spill, and 768 threads x 128 bytes in
// flight per SM is well above what HBM needs to stream.
constexpr int kMinCtasPerSm = 3;

// 8 bf16/fp16 values; element e lives in bits [16·(e%2), 16·(e%2)+16) of w[e/2].
struct Span {
  uint32_t w[kRopeUnitElements / 2];
};

// A span is moved as one 16-byte vector when it is a whole 8-element chunk
// at a multiple of 8 (rows are 16-byte aligned: the API checks the base
// pointers and head_dim · 2 bytes is a multiple of 16), else element by element.
__device__ __forceinline__ bool is_whole_chunk(int32_t begin, int32_t count) {
  return count == kRopeUnitElements && begin % kRopeUnitElements == 0;
}

template <bool kWholeChunk>
__device__ __forceinline__ Span load_span(const uint16_t* row, int32_t begin, int32_t count) {
  Span span;
  if constexpr (kWholeChunk) {
    const uint4 v = *reinterpret_cast<const uint4*>(row + begin);
    span.w[0] = v.x, span.w[1] = v.y, span.w[2] = v.z, span.w[3] = v.w;
  } else {
#pragma unroll
    for (int i = 0; i < kRopeUnitElements / 2; ++i) {
      const uint32_t lo = 2 * i < count ? row[begin + 2 * i] : 0u;
      const uint32_t hi = 2 * i + 1 < count ? row[begin + 2 * i + 1] : 0u;
      span.w[i] = lo | (hi << 16);
    }
  }
  return span;
}

template <bool kWholeChunk>
__device__ __forceinline__ void store_span(uint16_t* row, int32_t begin, int32_t count, const Span& span) {
  if constexpr (kWholeChunk) {
    *reinterpret_cast<uint4*>(row + begin) = make_uint4(span.w[0], span.w[1], span.w[2], span.w[3]);
  } else {
#pragma unroll
    for (int i = 0; i < kRopeUnitElements / 2; ++i) {
      if (2 * i < count) row[begin + 2 * i] = uint16_t(span.w[i] & 0xFFFFu);
      if (2 * i + 1 < count) row[begin + 2 * i + 1] = uint16_t(span.w[i] >> 16);
    }
  }
}

// (a, b) -> (a·c - b·s, b·c + a·s): products b·s and a·s rounded to float,
// then one fma each (reference/rope.hpp kGpu evaluates the same).
__device__ __forceinline__ void rotate_pair(float& a, float& b, float c, float s) {
  const float a_new = __fmaf_rn(a, c, -__fmul_rn(b, s));
  const float b_new = __fmaf_rn(b, c, __fmul_rn(a, s));
  a = a_new;
  b = b_new;
}

// NeoX unit: element e of span a pairs with element e of span b, frequency e.
template <typename T>
__device__ __forceinline__ void rotate_neox(Span& a, Span& b, const float (&c)[8], const float (&s)[8]) {
#pragma unroll
  for (int i = 0; i < kRopeUnitElements / 2; ++i) {
    float2 x = ElementType<T>::unpack(a.w[i]), y = ElementType<T>::unpack(b.w[i]);
    rotate_pair(x.x, y.x, c[2 * i], s[2 * i]);
    rotate_pair(x.y, y.y, c[2 * i + 1], s[2 * i + 1]);
    a.w[i] = pack<T>(x);
    b.w[i] = pack<T>(y);
  }
}

// GPT-J unit: the two halves of word i are a pair, frequency i.
template <typename T>
__device__ __forceinline__ void rotate_gptj(Span& a, const float (&c)[8], const float (&s)[8]) {
#pragma unroll
  for (int i = 0; i < kRopeUnitElements / 2; ++i) {
    float2 x = ElementType<T>::unpack(a.w[i]);
    rotate_pair(x.x, x.y, c[i], s[i]);
    a.w[i] = pack<T>(x);
  }
}

// cos/sin of position · freq, freq = pi · half_turns (see the file NOTES).
__device__ __forceinline__ void gpu_cos_sin(int64_t position, double half_turns, float* c, float* s) {
  const double u = double(position) * half_turns;
  const double x = u - 2.0 * rint(0.5 * u);  // exact: |x| <= 1
  sincospif(float(x), s, c);
}

// Copies the frequency table into shared memory: threads index it with
// per-thread offsets, which the parameter space would serialise.
__device__ __forceinline__ void load_half_turns(const RopeParams& p, double* half_turns) {
  for (int32_t i = threadIdx.x; i < p.rotary_dim / 2; i += blockDim.x) half_turns[i] = p.half_turns[i];
  __syncthreads();  // the whole table is written before any thread reads it
}

__device__ __forceinline__ int64_t token_position(const RopeParams& p, int64_t token) {
  if (p.pos_ids != nullptr) return p.pos_ids[token];
  // The last request b with indptr[b] <= token (empty requests before it are
  // skipped because they share its indptr). Reads indptr[0, num_requests) only.
  int32_t lo = 0, hi = p.num_requests - 1;
  while (lo < hi) {
    const int32_t mid = lo + (hi - lo + 1) / 2;
    if (p.indptr[mid] <= token)
      lo = mid;
    else
      hi = mid - 1;
  }
  return int64_t(p.offsets[lo]) + (token - p.indptr[lo]);
}

// cos/sin of the unit's pairs; entries past them are 0 and never used.
template <bool kInterleave, bool kFromCache>
__device__ __forceinline__ void unit_cos_sin(const RopeParams& p, const double* half_turns, int64_t position,
                                             const RopeUnit& unit, float (&c)[8], float (&s)[8]) {
  const int32_t pairs = kInterleave ? unit.count / 2 : unit.count;
  const bool in_cache = position >= 0 && position < p.max_position;
#pragma unroll
  for (int k = 0; k < kRopeUnitElements; ++k) {
    c[k] = 0.0f;
    s[k] = 0.0f;
    if (k >= pairs) continue;
    const int32_t freq = unit.first_freq + k;
    if constexpr (kFromCache) {
      // An out-of-range position reads nothing: NaN marks the token (API contract).
      c[k] = s[k] = __int_as_float(0x7FC00000);
      if (in_cache) {
        const float* row = p.cos_sin_cache + position * p.rotary_dim;
        c[k] = row[freq];
        s[k] = row[p.rotary_dim / 2 + freq];
      }
    } else {
      gpu_cos_sin(position, half_turns[freq], &c[k], &s[k]);
    }
  }
}

__device__ __forceinline__ uint16_t* output_row(const RopeParams& p, const RopeRowGroup& group, int64_t token,
                                                int64_t position, int32_t head) {
  uint16_t* out = static_cast<uint16_t*>(group.out);
  if (!group.paged) return out + (token * group.heads + head) * p.head_dim;
  const int64_t page = p.token_page[token];
  const int32_t slot = int32_t(position) % p.page_size;  // paged positions are int32 and >= 0 (plan)
  return out + page * p.page_stride + slot * p.slot_stride + head * p.head_stride;
}

// Moves the unit's elements of rows [head_begin, head_end) of one token from
// group.in to group.out, rotating them when the unit is rotary.
template <typename T, bool kInterleave, bool kWholeChunks>
__device__ __forceinline__ void move_rows(const RopeParams& p, const RopeRowGroup& group, const RopeUnit& unit,
                                          int64_t token, int64_t position, int32_t head_begin, int32_t head_end,
                                          const float (&c)[8], const float (&s)[8]) {
  const bool neox_pair = unit.rotary && !kInterleave;
  const uint16_t* in = static_cast<const uint16_t*>(group.in) + token * group.heads * p.head_dim;
  for (int32_t h0 = head_begin; h0 < head_end; h0 += kHeadBatch) {
    Span a[kHeadBatch] = {}, b[kHeadBatch] = {};
#pragma unroll
    for (int i = 0; i < kHeadBatch; ++i) {
      if (h0 + i >= head_end) break;
      const uint16_t* row = in + int64_t(h0 + i) * p.head_dim;
      a[i] = load_span<kWholeChunks>(row, unit.a_begin, unit.count);
      if (neox_pair) b[i] = load_span<kWholeChunks>(row, unit.b_begin, unit.count);
    }
#pragma unroll
    for (int i = 0; i < kHeadBatch; ++i) {
      if (h0 + i >= head_end) break;
      if (unit.rotary) {
        if constexpr (kInterleave)
          rotate_gptj<T>(a[i], c, s);
        else
          rotate_neox<T>(a[i], b[i], c, s);
      }
      uint16_t* row = output_row(p, group, token, position, h0 + i);
      store_span<kWholeChunks>(row, unit.a_begin, unit.count, a[i]);
      if (neox_pair) store_span<kWholeChunks>(row, unit.b_begin, unit.count, b[i]);
    }
  }
}

template <typename T, bool kInterleave, bool kFromCache>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm) rope_rows_kernel(const __grid_constant__ RopeParams p) {
  __shared__ double half_turns[kRopeMaxFrequencies];  // [rotary_dim / 2]
  if constexpr (!kFromCache) load_half_turns(p, half_turns);

  const int32_t cta_items = rope_cta_items(p, blockIdx.x);
  for (int32_t item_index = threadIdx.x; item_index < cta_items; item_index += blockDim.x) {
    const RopeItem item = rope_item(p, blockIdx.x, item_index);
    const int64_t token = item.token;
    const RopeRowGroup group = p.groups[item.group];
    const RopeUnit unit = rope_unit(item.unit, group.rotate ? p.rotary_dim : 0, kInterleave);
    const bool dense_in_place = !group.paged && group.out == group.in;
    if (!unit.rotary && dense_in_place) continue;  // pass-through in place: nothing to move
    const bool neox_pair = unit.rotary && !kInterleave;

    const int64_t position = (unit.rotary || group.paged) ? token_position(p, token) : 0;
    float c[kRopeUnitElements], s[kRopeUnitElements];
    if (unit.rotary) unit_cos_sin<kInterleave, kFromCache>(p, half_turns, position, unit, c, s);

    const bool whole_chunks =
        is_whole_chunk(unit.a_begin, unit.count) && (!neox_pair || is_whole_chunk(unit.b_begin, unit.count));
    if (whole_chunks)
      move_rows<T, kInterleave, true>(p, group, unit, token, position, item.head_begin, item.head_end, c, s);
    else
      move_rows<T, kInterleave, false>(p, group, unit, token, position, item.head_begin, item.head_end, c, s);
  }
}

__global__ void __launch_bounds__(kThreads) build_cos_sin_cache_kernel(float* cache,
                                                                       const __grid_constant__ RopeParams p) {
  __shared__ double half_turns[kRopeMaxFrequencies];  // [rotary_dim / 2]
  load_half_turns(p, half_turns);
  // One (position, frequency) per thread: cos at [position][freq], sin at
  // [position][rotary_dim/2 + freq]; a warp writes two contiguous runs. This
  // CTA covers positions_per_cta rows, indexed in 32 bits.
  const int32_t half = p.rotary_dim / 2;
  const int32_t positions_per_cta = max(1, int32_t(blockDim.x) / half);
  const int32_t first_position = blockIdx.x * positions_per_cta;
  const int32_t cta_items = min(positions_per_cta, p.max_position - first_position) * half;
  for (int32_t item = threadIdx.x; item < cta_items; item += blockDim.x) {
    const int32_t position = first_position + item / half;
    const int32_t freq = item % half;
    float c, s;
    gpu_cos_sin(position, half_turns[freq], &c, &s);
    float* row = cache + int64_t(position) * p.rotary_dim;
    row[freq] = c;
    row[half + freq] = s;
  }
}

using RowKernel = void (*)(const RopeParams);

template <typename T>
RowKernel row_kernel(bool interleave, bool from_cache) {
  if (interleave) return from_cache ? rope_rows_kernel<T, true, true> : rope_rows_kernel<T, true, false>;
  return from_cache ? rope_rows_kernel<T, false, true> : rope_rows_kernel<T, false, false>;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

cudaError_t launch_rope_rows(RopeParams& p, DType dtype, cudaStream_t stream) {
  RowKernel kernel = nullptr;
#if defined(PTXATTN_ENABLE_BF16)
  if (dtype == DType::kBF16) kernel = row_kernel<__nv_bfloat16>(p.interleave, p.cos_sin_cache != nullptr);
#endif
#if defined(PTXATTN_ENABLE_FP16)
  if (dtype == DType::kFP16) kernel = row_kernel<__half>(p.interleave, p.cos_sin_cache != nullptr);
#endif
  if (kernel == nullptr) return cudaErrorNotSupported;  // unreachable: the API rejects dtypes not built

  int device = 0, num_sms = 0, threads_per_sm = 0;
  if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return err;
  if (cudaError_t err = cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device); err != cudaSuccess)
    return err;
  if (cudaError_t err = cudaDeviceGetAttribute(&threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device);
      err != cudaSuccess)
    return err;
  split_rope_work(p, int64_t(num_sms) * threads_per_sm, kThreads);
  if (p.num_tokens == 0 || p.items_per_token == 0) return cudaSuccess;
  kernel<<<unsigned(rope_num_ctas(p)), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_build_cos_sin_cache(float* cache, const RopeParams& p, cudaStream_t stream) {
  if (p.max_position == 0) return cudaSuccess;
  const int32_t positions_per_cta = std::max(1, kThreads / (p.rotary_dim / 2));  // as the kernel computes it
  build_cos_sin_cache_kernel<<<unsigned(ceil_div(p.max_position, positions_per_cta)), kThreads, 0, stream>>>(cache,
                                                                                                           p);
  return cudaGetLastError();
}

}  // namespace ptxattn::detail
