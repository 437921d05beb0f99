// GPU unit tests of the ptx/ primitives (issue 3). Each test checks one
// hardware fact the kernels build on, element by element against the CPU:
//   - wgmma SS with TMA-loaded 128B-swizzled operands, B K-major and MN-major
//     (including the MN-major LBO/SBO question, both ways round);
//   - wgmma RS with A packed from a previous f32 accumulator (the P·V path);
//   - the f32 accumulator layout stated in ptx/wgmma.cuh;
//   - TMA 2-D swizzle placement and store; 4-D boxes over a paged pool: page
//     gather, zero fill outside the pool, and the page tail it does NOT zero;
//   - an mbarrier ring (TMA producer warp, wgmma consumer warpgroup);
//   - cp.async zero fill; ldmatrix/stmatrix fragments; mbarrier phases;
//     setmaxnreg with a named-barrier handoff; ex2.approx;
//   - griddepcontrol: a grid launched early as a programmatic dependent
//     waits for its prerequisite's writes.
// Every kernel first fills the shared memory it uses with NaN (fill_shared),
// so no test can pass on memory that happens to be clean.
//
// Build alone (compile check):
//   nvcc -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I. -Iinclude
//        -DPTXATTN_BOUNDED_WAITS=1 -c tests/gpu/test_ptx_gpu.cu
// Sanitizer run of the ring (the lead's command): see docs/ptx.md.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ptx/barrier.cuh"
#include "ptx/cp_async.cuh"
#include "ptx/cvt.cuh"
#include "ptx/griddepcontrol.cuh"
#include "ptx/ld_st.cuh"
#include "ptx/mbarrier.cuh"
#include "ptx/setmaxnreg.cuh"
#include "ptx/smem.cuh"
#include "ptx/swizzle.hpp"
#include "ptx/tma.cuh"
#include "ptx/tma_host.hpp"
#include "ptx/wgmma.cuh"
#include "tests/common/gpu_test.hpp"
#include "tests/common/smem_fill.cuh"

namespace ptxattn::testing {
namespace {

using ptx::MmaType;
using ptx::Swizzle;

// ===========================================================================
// Shared constants and device helpers
// ===========================================================================

constexpr int kWarpgroupThreads = 128;
constexpr int kTileM = 64;                    // rows of a wgmma A tile / accumulator
constexpr uint32_t kElemBytes = 2;            // bf16 and fp16
constexpr uint32_t kSliceCols = 64;           // 16-bit elements in one 128-byte swizzled row
constexpr uint32_t kRowBytes = 128;           // one 128B-swizzled row
constexpr uint32_t kSwizzleAtomBytes = 1024;  // 8 rows: the 128B swizzle repeat
constexpr uint32_t kK16StepBytes = 32;        // K-major: next k16 slice inside a 128-byte row
// NaN-filled slack after the wgmma operand tiles: a descriptor that describes
// the wrong layout (the LBO/SBO-swapped test does so on purpose) then reads
// NaN instead of running off the end of the allocation.
constexpr uint32_t kGuardBytes = 32 * 1024;

enum class BMajor { kK, kMN };  // B stored [N][K] (K contiguous) or [K][N] (N contiguous)

// Dynamic shared memory rounded up to the 1024-B swizzle repeat; the host
// allocates kSwizzleAtomBytes extra for the rounding.
__device__ __forceinline__ uint8_t* dynamic_smem_1024() {
  extern __shared__ __align__(16) uint8_t dynamic_smem[];
  const uint32_t misalignment = ptx::smem_u32(dynamic_smem) % kSwizzleAtomBytes;
  return dynamic_smem + (misalignment == 0 ? 0 : kSwizzleAtomBytes - misalignment);
}

// Block-wide copy of `bytes` (multiple of 4) from shared to global memory.
__device__ __forceinline__ void copy_shared_to_global(void* dst, const void* smem, uint32_t bytes) {
  for (uint32_t i = threadIdx.x; i < bytes / 4; i += blockDim.x)
    static_cast<uint32_t*>(dst)[i] = static_cast<const uint32_t*>(smem)[i];
}

__device__ __forceinline__ float device_nan() { return __int_as_float(0x7FC00000); }

// One thread: TMA loads of a row-major [rows][cols] matrix (2-D map, box of
// 64 columns x rows) into [cols/64][rows][64] at dst, one box per slice.
__device__ __forceinline__ void load_slices(uint8_t* dst, const CUtensorMap* map, uint64_t* bar, int cols, int rows) {
  for (int s = 0; s < cols / static_cast<int>(kSliceCols); ++s) {
    const int32_t coord[2] = {s * static_cast<int32_t>(kSliceCols), 0};
    ptx::cp_async_bulk_tensor_load<2>(dst + s * rows * kRowBytes, map, bar, coord);
  }
}

// B [K][N] in the storage order of kB (store_b): K-major tile [K/64][N][64],
// MN-major [N/64][K][64]. One thread, as load_slices.
template <BMajor kB>
__device__ __forceinline__ void load_b_slices(uint8_t* dst, const CUtensorMap* map, uint64_t* bar, int k, int n) {
  if constexpr (kB == BMajor::kK)
    load_slices(dst, map, bar, k, n);
  else
    load_slices(dst, map, bar, n, k);
}

// Every thread: fills `bytes` of shared memory at `smem` with NaN, thread 0
// initialises `full` for one arrival (the TMA issuer's expect_tx); the CTA
// barrier orders both before any thread issues or waits on a TMA load.
__device__ __forceinline__ void fill_shared_and_init_tma_barrier(void* smem, uint32_t bytes, uint64_t* full) {
  fill_shared(smem, bytes);
  if (threadIdx.x == 0) {
    ptx::mbarrier_init(full, 1);
    ptx::fence_mbarrier_init();
  }
  __syncthreads();
}

// K-major operand [rows][K] stored [K/64][rows][64] (128B swizzle): k16 step
// `k16` lies in slice k16/4, +32 B per step inside the 128-byte row; SBO =
// 1024 (8-row atoms), LBO unused (16).
__device__ __forceinline__ uint64_t k_major_desc(const uint8_t* tile, int rows, int k16) {
  const uint8_t* slice = tile + (k16 / 4) * rows * kRowBytes;
  const uint64_t desc = ptx::make_smem_descriptor(ptx::smem_u32(slice), 16, kSwizzleAtomBytes, Swizzle::k128B);
  return ptx::descriptor_advance(desc, (k16 % 4) * kK16StepBytes);
}

// MN-major B [K][N] (N contiguous) stored [N/64][K][64]: k16 step `k16`
// starts 16 rows (2048 B) further. The layout under test: LBO = distance
// between 64-wide n slices (k rows x 128 B), SBO = 1024 (8 k rows); the
// MN-major tests decide it against the swapped reading.
__host__ __device__ constexpr uint32_t mn_major_slice_bytes(int k_rows) { return uint32_t(k_rows) * kRowBytes; }

__device__ __forceinline__ uint64_t mn_major_desc(const uint8_t* tile, int k16, uint32_t lbo, uint32_t sbo) {
  return ptx::make_smem_descriptor(ptx::smem_u32(tile + k16 * 16 * kRowBytes), lbo, sbo, Swizzle::k128B);
}

// The f32 accumulator layout stated in ptx/wgmma.cuh: thread t (0..127) of
// the warpgroup, register i.
__host__ __device__ constexpr int accumulator_row(int t, int i) {
  return 16 * (t / 32) + (t % 32) / 4 + 8 * ((i / 2) & 1);
}
__host__ __device__ constexpr int accumulator_col(int t, int i) { return 8 * (i / 4) + 2 * (t % 4) + (i & 1); }

// Writes a 64xN accumulator to row-major out[64][N] through that layout.
template <int N>
__device__ __forceinline__ void store_accumulator(const float (&d)[N / 2], float* out) {
  const int t = threadIdx.x % kWarpgroupThreads;
#pragma unroll
  for (int i = 0; i < N / 2; ++i) out[accumulator_row(t, i) * N + accumulator_col(t, i)] = d[i];
}

// NaN in every register: the first wgmma (scale-d = 0) must ignore it. The
// fence pins the writes before the caller's wgmma_fence (otherwise ptxas
// serialises the wgmma, C7515).
template <int kCount>
__device__ __forceinline__ void fill_accumulator_nan(float (&d)[kCount]) {
#pragma unroll
  for (int i = 0; i < kCount; ++i) d[i] = device_nan();
  ptx::accumulator_fence(d);
}

template <MmaType kType>
__device__ __forceinline__ uint16_t device_bits(float x) {
  if constexpr (kType == MmaType::kBF16)
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
  else
    return __half_as_ushort(__float2half_rn(x));
}

// ===========================================================================
// Host helpers
// ===========================================================================

const char* type_name(MmaType t) { return t == MmaType::kBF16 ? "bf16" : "fp16"; }
const char* major_name(BMajor b) { return b == BMajor::kK ? "K-major" : "MN-major"; }

// Round to nearest even, as cvt.rn and the TMA-loaded inputs assume.
uint16_t host_bits(MmaType t, float x) {
  if (t == MmaType::kBF16) return __nv_bfloat16_raw(__float2bfloat16_rn(x)).x;
  return __half_raw(__float2half_rn(x)).x;
}

float host_value(MmaType t, uint16_t bits) {
  if (t == MmaType::kBF16) {
    __nv_bfloat16_raw raw;
    raw.x = bits;
    return __bfloat162float(__nv_bfloat16(raw));
  }
  __half_raw raw;
  raw.x = bits;
  return __half2float(__half(raw));
}

std::vector<uint16_t> to_bits(MmaType t, const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = host_bits(t, v[i]);
  return out;
}

// Multiples of 1/8 in [-2, 2]: exact in bf16 and fp16, and every product and
// every sum of up to 2^15 products is exact in f32, so SS results compare
// exactly, independent of summation order.
std::vector<float> random_eighths(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> eighths(-16, 16);
  std::vector<float> v(count);
  for (float& x : v) x = eighths(rng) / 8.0f;
  return v;
}

// Random finite, nonzero bf16 bit patterns (so a zero fill is distinguishable).
std::vector<uint16_t> random_finite_bf16_bits(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<uint32_t> magnitude(0x0080, 0x7F7F);  // normal numbers, below +Inf
  std::vector<uint16_t> v(count);
  for (uint16_t& b : v) b = static_cast<uint16_t>(magnitude(rng) | (rng() & 1u) << 15);
  return v;
}

// B math [K][N] in the storage order of `major`: K-major [N][K], MN-major [K][N].
template <typename T>
std::vector<T> store_b(const std::vector<T>& b, int k, int n, BMajor major) {
  if (major == BMajor::kMN) return b;
  std::vector<T> t(b.size());
  for (int kk = 0; kk < k; ++kk)
    for (int nn = 0; nn < n; ++nn) t[size_t(nn) * k + kk] = b[size_t(kk) * n + nn];
  return t;
}

CUtensorMapDataType tma_type(MmaType t) {
  return t == MmaType::kBF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
}

// 2-D map over a row-major [rows][cols] matrix of 16-bit elements.
CUtensorMap make_map_2d(CUtensorMapDataType type, const void* base, uint32_t cols, uint32_t rows, uint32_t box_cols,
                        uint32_t box_rows, Swizzle swizzle) {
  ptx::TensorMapSpec spec;
  spec.data_type = type;
  spec.rank = 2;
  spec.global_address = base;
  spec.dims[0] = cols;
  spec.dims[1] = rows;
  spec.byte_strides[1] = uint64_t(cols) * kElemBytes;
  spec.box[0] = box_cols;
  spec.box[1] = box_rows;
  spec.swizzle = swizzle;
  CUtensorMap map;
  const Status s = ptx::encode_tensor_map(spec, &map);
  INFO(s.message);
  REQUIRE(s.ok());
  return map;
}

// Operand map for wgmma tiles: one box = one 64-column slice of all rows.
CUtensorMap make_operand_map(MmaType t, const DeviceBuffer& buf, int cols, int rows) {
  return make_map_2d(tma_type(t), buf.get(), cols, rows, kSliceCols, rows, Swizzle::k128B);
}

// Operand map for B [K][N] stored as store_b(..., major) lays it out.
CUtensorMap make_b_operand_map(MmaType t, const DeviceBuffer& buf, int k, int n, BMajor major) {
  return major == BMajor::kK ? make_operand_map(t, buf, k, n) : make_operand_map(t, buf, n, k);
}

template <typename Kernel>
void allow_dynamic_smem(Kernel kernel, size_t bytes) {
  PTXATTN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

void finish_launch() {
  PTXATTN_CUDA_CHECK(cudaGetLastError());
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
}

// Element-wise comparison of a row-major result; keeps the first bad element.
struct Comparison {
  size_t bad = 0;
  double max_error = 0;
  std::string first_bad = "none";
};

Comparison compare(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& tolerance,
                   int cols) {
  Comparison c;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - want[i]);
    if (err <= tolerance[i]) {
      c.max_error = std::max(c.max_error, err);
      continue;
    }
    if (c.bad++ == 0) {
      std::ostringstream s;
      s << "(row " << i / cols << ", col " << i % cols << "): got " << got[i] << ", want " << want[i] << ", tolerance "
        << tolerance[i];
      c.first_bad = s.str();
    }
  }
  return c;
}

// D[64][n] = A[64][k] * B[k][n] in double.
std::vector<double> cpu_product(const std::vector<float>& a, const std::vector<float>& b, int k, int n,
                                std::vector<double>* abs_product = nullptr) {
  std::vector<double> d(size_t(kTileM) * n, 0.0);
  if (abs_product) abs_product->assign(d.size(), 0.0);
  for (int m = 0; m < kTileM; ++m)
    for (int kk = 0; kk < k; ++kk)
      for (int nn = 0; nn < n; ++nn) {
        const double p = double(a[size_t(m) * k + kk]) * b[size_t(kk) * n + nn];
        d[size_t(m) * n + nn] += p;
        if (abs_product) (*abs_product)[size_t(m) * n + nn] += std::fabs(p);
      }
  return d;
}

// ===========================================================================
// wgmma SS: D(64xN) = A(64xK) * B(KxN), operands by TMA, 128B swizzle
// ===========================================================================

// K is a template parameter: a runtime trip count makes ptxas copy the
// accumulator at the loop's back edge and inject a wgmma fence (C7519).
template <int N, int k, MmaType kType, BMajor kB>
__global__ void __launch_bounds__(kWarpgroupThreads)
    wgmma_ss_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                    uint32_t b_lbo, uint32_t b_sbo, float* d_out) {
  __shared__ uint64_t full;
  uint8_t* a_tile = dynamic_smem_1024();               // [k/64][64][64]
  uint8_t* b_tile = a_tile + kTileM * k * kElemBytes;  // K-major [k/64][N][64], MN-major [N/64][k][64]
  const uint32_t tile_bytes = (kTileM + N) * k * kElemBytes;
  fill_shared_and_init_tma_barrier(a_tile, tile_bytes + kGuardBytes, &full);
  if (threadIdx.x == 0) {
    ptx::mbarrier_arrive_expect_tx(&full, tile_bytes);
    load_slices(a_tile, &map_a, &full, k, kTileM);
    load_b_slices<kB>(b_tile, &map_b, &full, k, N);
  }
  ptx::mbarrier_wait_parity(&full, 0);

  float d[N / 2];
  fill_accumulator_nan(d);
  ptx::wgmma_fence();
#pragma unroll
  for (int k16 = 0; k16 < k / 16; ++k16) {
    const uint64_t desc_b = kB == BMajor::kK ? k_major_desc(b_tile, N, k16) : mn_major_desc(b_tile, k16, b_lbo, b_sbo);
    ptx::wgmma_ss<N, kType, 0, kB == BMajor::kMN ? 1 : 0>(d, k_major_desc(a_tile, kTileM, k16), desc_b, k16 > 0);
  }
  ptx::wgmma_commit_group();
  ptx::wgmma_wait_group<0>();
  ptx::accumulator_fence(d);
  store_accumulator<N>(d, d_out);
}

// Runs one SS case with the given B descriptor offsets (MN-major only) and
// compares exactly with the CPU product.
template <int N, int k, MmaType kType, BMajor kB>
Comparison run_wgmma_ss(uint32_t b_lbo, uint32_t b_sbo) {
  const std::vector<float> a = random_eighths(size_t(kTileM) * k, 11u + k);
  const std::vector<float> b = random_eighths(size_t(k) * N, 23u + k + N);  // math [k][N]
  DeviceBuffer a_dev = upload_vector(to_bits(kType, a));
  DeviceBuffer b_dev = upload_vector(to_bits(kType, store_b(b, k, N, kB)));
  const CUtensorMap map_a = make_operand_map(kType, a_dev, k, kTileM);
  const CUtensorMap map_b = make_b_operand_map(kType, b_dev, k, N, kB);
  DeviceBuffer d_dev(sizeof(float) * kTileM * N);
  d_dev.fill_u32(pattern::kQuietNaN);

  const size_t smem = (kTileM + N) * k * kElemBytes + kGuardBytes + kSwizzleAtomBytes;
  allow_dynamic_smem(wgmma_ss_kernel<N, k, kType, kB>, smem);
  wgmma_ss_kernel<N, k, kType, kB><<<1, kWarpgroupThreads, smem>>>(map_a, map_b, b_lbo, b_sbo, d_dev.as<float>());
  finish_launch();

  const std::vector<double> want = cpu_product(a, b, k, N);
  return compare(download_vector<float>(d_dev, want.size()), want, std::vector<double>(want.size(), 0.0), N);
}

template <int k, MmaType kType, BMajor kB>
void check_ss_each_n() {
  const uint32_t lbo = kB == BMajor::kK ? 16 : mn_major_slice_bytes(k), sbo = kSwizzleAtomBytes;
  const auto check = [&](int n, const Comparison& c) {
    INFO(type_name(kType) << " N=" << n << " K=" << k << " B " << major_name(kB) << " LBO=" << lbo << " SBO=" << sbo
                          << ": " << c.bad << " bad elements, first " << c.first_bad);
    CHECK(c.bad == 0);
  };
  check(64, run_wgmma_ss<64, k, kType, kB>(lbo, sbo));
  check(128, run_wgmma_ss<128, k, kType, kB>(lbo, sbo));
  // N = 176: the prefill kernel's wide KV block (S = Q K^T, K-major K only).
  if constexpr (kB == BMajor::kK) check(176, run_wgmma_ss<176, k, kType, kB>(lbo, sbo));
  check(256, run_wgmma_ss<256, k, kType, kB>(lbo, sbo));
}

TEST_CASE("wgmma SS 64xNxK, TMA 128B-swizzled operands, B K-major: exact vs CPU (N 64/128/176/256, bf16+fp16)",
          "[gpu][ptx][wgmma]") {
  check_ss_each_n<64, MmaType::kBF16, BMajor::kK>();
  check_ss_each_n<128, MmaType::kBF16, BMajor::kK>();
  check_ss_each_n<64, MmaType::kFP16, BMajor::kK>();
  check_ss_each_n<128, MmaType::kFP16, BMajor::kK>();
}

TEST_CASE(
    "wgmma SS 64xNxK, B MN-major [n-slice][k][64]: LBO = n-slice bytes (k*128), SBO = 1024, +2048 B per k16 "
    "is exact vs CPU",
    "[gpu][ptx][wgmma][mn-major]") {
  check_ss_each_n<64, MmaType::kBF16, BMajor::kMN>();
  check_ss_each_n<128, MmaType::kBF16, BMajor::kMN>();
  check_ss_each_n<64, MmaType::kFP16, BMajor::kMN>();
  check_ss_each_n<128, MmaType::kFP16, BMajor::kMN>();
}

// The other reading of the descriptor fields. If this case FAILS (swapped
// values match the CPU) while the one above fails too, LBO and SBO are the
// other way round for MN-major operands and ptx/wgmma.cuh must say so.
template <int k>
void check_mn_major_swapped_fails() {
  const uint32_t lbo = kSwizzleAtomBytes, sbo = mn_major_slice_bytes(k);
  const auto check = [&](int n, const Comparison& c) {
    INFO("bf16 N=" << n << " K=" << k << ": swapped LBO/SBO matched the CPU product in all but " << c.bad
                   << " elements -- the MN-major LBO/SBO hypothesis is backwards");
    CHECK(c.bad > 0);
  };
  check(64, run_wgmma_ss<64, k, MmaType::kBF16, BMajor::kMN>(lbo, sbo));
  check(128, run_wgmma_ss<128, k, MmaType::kBF16, BMajor::kMN>(lbo, sbo));
  check(256, run_wgmma_ss<256, k, MmaType::kBF16, BMajor::kMN>(lbo, sbo));
}

TEST_CASE("wgmma SS, B MN-major with LBO/SBO swapped (LBO = 1024, SBO = n-slice bytes) gives WRONG results",
          "[gpu][ptx][wgmma][mn-major]") {
  check_mn_major_swapped_fails<64>();
  check_mn_major_swapped_fails<128>();
}

// ===========================================================================
// wgmma RS: D1 = A1 * B1 (SS), P = pack(D1), D2 = P * B2 (RS) -- the P·V path
// ===========================================================================

constexpr int kRsK1 = 128;  // K of the first product: two 64-column slices

template <int N1, int N2, MmaType kType, BMajor kB2>
__global__ void __launch_bounds__(kWarpgroupThreads)
    wgmma_rs_kernel(const __grid_constant__ CUtensorMap map_a1, const __grid_constant__ CUtensorMap map_b1,
                    const __grid_constant__ CUtensorMap map_b2, float* d1_out, float* d2_out) {
  constexpr int k1 = kRsK1;
  constexpr int kK2 = N1;  // P is 64 x N1, so the second product runs over N1
  __shared__ uint64_t full;
  uint8_t* a1_tile = dynamic_smem_1024();                 // [k1/64][64][64]
  uint8_t* b1_tile = a1_tile + kTileM * k1 * kElemBytes;  // K-major [k1/64][N1][64]
  uint8_t* b2_tile = b1_tile + N1 * k1 * kElemBytes;      // K-major [K2/64][N2][64], MN-major [N2/64][K2][64]
  const uint32_t tile_bytes = (kTileM + N1) * k1 * kElemBytes + kK2 * N2 * kElemBytes;
  fill_shared_and_init_tma_barrier(a1_tile, tile_bytes + kGuardBytes, &full);
  if (threadIdx.x == 0) {
    ptx::mbarrier_arrive_expect_tx(&full, tile_bytes);
    load_slices(a1_tile, &map_a1, &full, k1, kTileM);
    load_slices(b1_tile, &map_b1, &full, k1, N1);
    load_b_slices<kB2>(b2_tile, &map_b2, &full, kK2, N2);
  }
  ptx::mbarrier_wait_parity(&full, 0);

  float d1[N1 / 2];
  fill_accumulator_nan(d1);
  ptx::wgmma_fence();
#pragma unroll
  for (int k16 = 0; k16 < k1 / 16; ++k16)
    ptx::wgmma_ss<N1, kType, 0, 0>(d1, k_major_desc(a1_tile, kTileM, k16), k_major_desc(b1_tile, N1, k16), k16 > 0);
  ptx::wgmma_commit_group();
  ptx::wgmma_wait_group<0>();
  ptx::accumulator_fence(d1);
  store_accumulator<N1>(d1, d1_out);

  // A-fragment of k16 slice j: pack(d[8j+2q], d[8j+2q+1]) for q = 0..3 (ptx/wgmma.cuh).
  uint32_t p[N1 / 16][4];
#pragma unroll
  for (int j = 0; j < N1 / 16; ++j)
#pragma unroll
    for (int q = 0; q < 4; ++q) p[j][q] = ptx::cvt_pack_f32x2<kType>(d1[8 * j + 2 * q], d1[8 * j + 2 * q + 1]);
#pragma unroll
  for (int j = 0; j < N1 / 16; ++j) ptx::accumulator_fence(p[j]);  // the packs happen before the fence below

  float d2[N2 / 2];
  fill_accumulator_nan(d2);
  ptx::wgmma_fence();  // the A-fragment registers were just written
#pragma unroll
  for (int j = 0; j < N1 / 16; ++j) {
    const uint64_t desc_b2 = kB2 == BMajor::kK
                                 ? k_major_desc(b2_tile, N2, j)
                                 : mn_major_desc(b2_tile, j, mn_major_slice_bytes(kK2), kSwizzleAtomBytes);
    ptx::wgmma_rs<N2, kType, kB2 == BMajor::kMN ? 1 : 0>(d2, p[j], desc_b2, j > 0);
  }
  ptx::wgmma_commit_group();
  ptx::wgmma_wait_group<0>();
  ptx::accumulator_fence(d2);
  store_accumulator<N2>(d2, d2_out);
}

template <int N1, int N2, MmaType kType, BMajor kB2>
void check_rs() {
  constexpr int kK1 = kRsK1, kK2 = N1;
  const std::vector<float> a1 = random_eighths(size_t(kTileM) * kK1, 31u + N1);
  const std::vector<float> b1 = random_eighths(size_t(kK1) * N1, 37u + N1);  // math [K1][N1]
  const std::vector<float> b2 = random_eighths(size_t(kK2) * N2, 41u + N2);  // math [K2][N2]
  DeviceBuffer a1_dev = upload_vector(to_bits(kType, a1));
  DeviceBuffer b1_dev = upload_vector(to_bits(kType, store_b(b1, kK1, N1, BMajor::kK)));
  DeviceBuffer b2_dev = upload_vector(to_bits(kType, store_b(b2, kK2, N2, kB2)));
  const CUtensorMap map_a1 = make_operand_map(kType, a1_dev, kK1, kTileM);
  const CUtensorMap map_b1 = make_operand_map(kType, b1_dev, kK1, N1);
  const CUtensorMap map_b2 = make_b_operand_map(kType, b2_dev, kK2, N2, kB2);
  DeviceBuffer d1_dev(sizeof(float) * kTileM * N1), d2_dev(sizeof(float) * kTileM * N2);
  d1_dev.fill_u32(pattern::kQuietNaN);
  d2_dev.fill_u32(pattern::kQuietNaN);

  const size_t smem = ((kTileM + N1) * kK1 + kK2 * N2) * kElemBytes + kGuardBytes + kSwizzleAtomBytes;
  allow_dynamic_smem(wgmma_rs_kernel<N1, N2, kType, kB2>, smem);
  wgmma_rs_kernel<N1, N2, kType, kB2>
      <<<1, kWarpgroupThreads, smem>>>(map_a1, map_b1, map_b2, d1_dev.as<float>(), d2_dev.as<float>());
  finish_launch();

  // D1 is exact (see random_eighths); P is D1 rounded to the input type as
  // cvt.rn does (round to nearest even), so CPU and GPU use the same P.
  const std::vector<double> d1_want = cpu_product(a1, b1, kK1, N1);
  std::vector<float> p(d1_want.size());
  size_t rounded = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    p[i] = host_value(kType, host_bits(kType, float(d1_want[i])));
    rounded += double(p[i]) != d1_want[i];
  }
  std::vector<double> abs_product;
  const std::vector<double> d2_want = cpu_product(p, b2, kK2, N2, &abs_product);
  // Products of 16-bit inputs are exact in f32; K2 f32 additions err by at
  // most (K2 - 1) * 2^-24 * sum|p*v|, bounded here by K2 * FLT_EPSILON * sum|p*v|.
  std::vector<double> tolerance(abs_product.size());
  for (size_t i = 0; i < tolerance.size(); ++i) tolerance[i] = kK2 * double(FLT_EPSILON) * abs_product[i];

  const Comparison c1 =
      compare(download_vector<float>(d1_dev, d1_want.size()), d1_want, std::vector<double>(d1_want.size(), 0.0), N1);
  const Comparison c2 = compare(download_vector<float>(d2_dev, d2_want.size()), d2_want, tolerance, N2);
  INFO(type_name(kType) << " N1=" << N1 << " N2=" << N2 << " B2 " << major_name(kB2) << ": D1 " << c1.bad
                        << " bad (first " << c1.first_bad << "); D2 " << c2.bad << " bad (first " << c2.first_bad
                        << "), max error " << c2.max_error << "; " << rounded << " elements of D1 changed by rounding");
  CHECK(rounded > 0);  // the data must exercise the rounding, or P·V would not test cvt.rn
  CHECK(c1.bad == 0);
  CHECK(c2.bad == 0);
}

template <MmaType kType, BMajor kB2>
void check_rs_each_shape() {
  check_rs<64, 64, kType, kB2>();
  check_rs<64, 128, kType, kB2>();
  check_rs<64, 256, kType, kB2>();
  check_rs<128, 64, kType, kB2>();
  check_rs<128, 128, kType, kB2>();
  check_rs<128, 256, kType, kB2>();
}

TEST_CASE(
    "wgmma RS: A packed (cvt.rn) from a previous f32 accumulator, the PV path: vs CPU product of the rounded "
    "accumulator",
    "[gpu][ptx][wgmma]") {
  SECTION("B2 MN-major (V stored [token][d])") {
    check_rs_each_shape<MmaType::kBF16, BMajor::kMN>();
    check_rs_each_shape<MmaType::kFP16, BMajor::kMN>();
  }
  SECTION("B2 K-major") {
    check_rs_each_shape<MmaType::kBF16, BMajor::kK>();
    check_rs_each_shape<MmaType::kFP16, BMajor::kK>();
  }
}

// ===========================================================================
// Accumulator layout: D[r][n] = 256 r + n, each register checked against the
// (row, col) the header formula gives it
// ===========================================================================

template <int N, MmaType kType>
__global__ void __launch_bounds__(kWarpgroupThreads) accumulator_layout_kernel(float* regs_out) {
  uint8_t* a_tile = dynamic_smem_1024();          // [64][64]: one K-major slice
  uint8_t* b_tile = a_tile + kTileM * kRowBytes;  // [N][64]
  fill_shared(a_tile, (kTileM + N) * kRowBytes);
  // A[r][0] = r, A[r][1] = 1; B[0][n] = 256, B[1][n] = n; everything else 0.
  // Written with plain stores through swizzled_element_offset.
  for (int e = threadIdx.x; e < (kTileM + N) * int(kSliceCols); e += blockDim.x) {
    const int row = e / kSliceCols, col = e % kSliceCols;
    const bool in_a = row < kTileM;
    const int tile_row = in_a ? row : row - kTileM;
    const float first = in_a ? float(tile_row) : 256.0f, second = in_a ? 1.0f : float(tile_row);
    const float value = col == 0 ? first : col == 1 ? second : 0.0f;
    uint8_t* tile = in_a ? a_tile : b_tile;
    *reinterpret_cast<uint16_t*>(tile + ptx::swizzled_element_offset(Swizzle::k128B, tile_row, col, kElemBytes)) =
        device_bits<kType>(value);
  }
  ptx::fence_proxy_async_shared_cta();  // plain stores -> wgmma operand reads
  __syncthreads();

  float d[N / 2];
  fill_accumulator_nan(d);
  ptx::wgmma_fence();
#pragma unroll
  for (int k16 = 0; k16 < int(kSliceCols) / 16; ++k16)
    ptx::wgmma_ss<N, kType, 0, 0>(d, k_major_desc(a_tile, kTileM, k16), k_major_desc(b_tile, N, k16), k16 > 0);
  ptx::wgmma_commit_group();
  ptx::wgmma_wait_group<0>();
  ptx::accumulator_fence(d);
#pragma unroll
  for (int i = 0; i < N / 2; ++i) regs_out[threadIdx.x * (N / 2) + i] = d[i];
}

template <int N, MmaType kType>
void check_accumulator_layout() {
  DeviceBuffer regs_dev(sizeof(float) * kWarpgroupThreads * (N / 2));
  regs_dev.fill_u32(pattern::kQuietNaN);
  const size_t smem = (kTileM + N) * kRowBytes + kSwizzleAtomBytes;
  allow_dynamic_smem(accumulator_layout_kernel<N, kType>, smem);
  accumulator_layout_kernel<N, kType><<<1, kWarpgroupThreads, smem>>>(regs_dev.as<float>());
  finish_launch();
  const std::vector<float> regs = download_vector<float>(regs_dev, size_t(kWarpgroupThreads) * (N / 2));

  size_t bad = 0;
  std::string first_bad = "none";
  std::vector<int> hits(size_t(kTileM) * N, 0);  // the formula must cover each (row, col) once
  for (int t = 0; t < kWarpgroupThreads; ++t)
    for (int i = 0; i < N / 2; ++i) {
      const int row = accumulator_row(t, i), col = accumulator_col(t, i);
      ++hits[size_t(row) * N + col];
      const float got = regs[size_t(t) * (N / 2) + i];
      if (got == float(256 * row + col)) continue;
      if (bad++ == 0) {
        std::ostringstream s;
        s << "thread " << t << " register " << i << ": header says (row " << row << ", col " << col
          << "), register holds " << got;
        if (std::isfinite(got)) s << " = (row " << int(got) / 256 << ", col " << int(got) % 256 << ")";
        first_bad = s.str();
      }
    }
  size_t coverage_errors = 0;
  for (int h : hits) coverage_errors += h != 1;
  INFO(type_name(kType) << " N=" << N << ": " << bad << " registers off the stated layout, first: " << first_bad);
  CHECK(bad == 0);
  CHECK(coverage_errors == 0);
}

TEST_CASE("wgmma accumulator layout: register i of thread t holds (row, col) as stated in ptx/wgmma.cuh",
          "[gpu][ptx][wgmma]") {
  check_accumulator_layout<64, MmaType::kBF16>();
  check_accumulator_layout<128, MmaType::kBF16>();
  check_accumulator_layout<256, MmaType::kBF16>();
  check_accumulator_layout<64, MmaType::kFP16>();
  check_accumulator_layout<128, MmaType::kFP16>();
  check_accumulator_layout<256, MmaType::kFP16>();
}

// ===========================================================================
// TMA 2-D: where each element of a swizzled box lands, and the store back
// ===========================================================================

__global__ void tma_swizzle_roundtrip_kernel(const __grid_constant__ CUtensorMap map_in,
                                             const __grid_constant__ CUtensorMap map_out, int32_t col0, int32_t row0,
                                             uint32_t box_bytes, uint8_t* raw_out) {
  __shared__ uint64_t full;
  uint8_t* tile = dynamic_smem_1024();
  fill_shared_and_init_tma_barrier(tile, box_bytes, &full);
  const int32_t coord[2] = {col0, row0};
  if (threadIdx.x == 0) {
    ptx::prefetch_tensormap(&map_in);
    ptx::mbarrier_arrive_expect_tx(&full, box_bytes);
    ptx::cp_async_bulk_tensor_load<2>(tile, &map_in, &full, coord);
  }
  ptx::mbarrier_wait_parity(&full, 0);
  copy_shared_to_global(raw_out, tile, box_bytes);
  if (threadIdx.x == 0) {
    ptx::cp_async_bulk_tensor_store<2>(&map_out, tile, coord);
    ptx::cp_async_bulk_commit_group();
    ptx::cp_async_bulk_wait_group_read<0>();  // the tile must stay valid until the store has read it
  }
}

void check_tma_swizzle(Swizzle swizzle) {
  constexpr int kCols = 128, kRows = 64, kBoxRows = 32, kRow0 = 8;
  const uint32_t box_cols = uint32_t(swizzle) / kElemBytes;  // one box row = one swizzle row
  const int col0 = int(box_cols);
  const uint32_t box_bytes = box_cols * kBoxRows * kElemBytes;
  const std::vector<uint16_t> src = random_finite_bf16_bits(size_t(kRows) * kCols, 5u + uint32_t(swizzle));
  DeviceBuffer src_dev = upload_vector(src);
  DeviceBuffer dst_dev(src.size() * kElemBytes), raw_dev(box_bytes);
  dst_dev.fill_bytes(0);
  const CUtensorMap map_in =
      make_map_2d(CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, src_dev.get(), kCols, kRows, box_cols, kBoxRows, swizzle);
  const CUtensorMap map_out =
      make_map_2d(CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, dst_dev.get(), kCols, kRows, box_cols, kBoxRows, swizzle);
  const size_t smem = box_bytes + kSwizzleAtomBytes;
  allow_dynamic_smem(tma_swizzle_roundtrip_kernel, smem);
  tma_swizzle_roundtrip_kernel<<<1, kWarpgroupThreads, smem>>>(map_in, map_out, col0, kRow0, box_bytes,
                                                               raw_dev.as<uint8_t>());
  finish_launch();
  const std::vector<uint16_t> raw = download_vector<uint16_t>(raw_dev, box_bytes / kElemBytes);
  const std::vector<uint16_t> dst = download_vector<uint16_t>(dst_dev, src.size());

  size_t misplaced = 0, store_errors = 0;
  for (int r = 0; r < kBoxRows; ++r)
    for (uint32_t c = 0; c < box_cols; ++c) {
      const uint32_t at = ptx::swizzled_element_offset(swizzle, r, c, kElemBytes) / kElemBytes;
      misplaced += raw[at] != src[size_t(kRow0 + r) * kCols + col0 + c];
    }
  for (int r = 0; r < kRows; ++r)
    for (int c = 0; c < kCols; ++c) {
      const bool in_box = r >= kRow0 && r < kRow0 + kBoxRows && c >= col0 && c < col0 + int(box_cols);
      const size_t i = size_t(r) * kCols + c;
      store_errors += dst[i] != (in_box ? src[i] : uint16_t(0));
    }
  INFO(uint32_t(swizzle) << "B swizzle: " << misplaced << " elements not at swizzled_element_offset, " << store_errors
                         << " wrong after the TMA store");
  CHECK(misplaced == 0);
  CHECK(store_errors == 0);
}

TEST_CASE("TMA 2-D load puts (row, col) at swizzled_element_offset (128B/64B/32B swizzle); TMA store undoes it",
          "[gpu][ptx][tma]") {
  SECTION("128B") { check_tma_swizzle(Swizzle::k128B); }
  SECTION("64B") { check_tma_swizzle(Swizzle::k64B); }
  SECTION("32B") { check_tma_swizzle(Swizzle::k32B); }
}

// ===========================================================================
// TMA 4-D boxes over a paged pool, NHD: [page][slot][head][d]
// ===========================================================================

constexpr int kPoolHeadDim = 128, kPoolHeads = 2, kPoolPageSize = 16, kPoolPages = 6;
constexpr uint32_t kPoolBoxBytes = kSliceCols * kPoolPageSize * kElemBytes;  // box (64, 1, page, 1)
constexpr int kMaxBoxes = 16;

struct BoxList {
  int32_t coord[kMaxBoxes][4];  // (d, head, slot, page), innermost first
  int count;
};

__global__ void tma_box_list_kernel(const __grid_constant__ CUtensorMap map, const BoxList boxes, uint8_t* raw_out) {
  __shared__ uint64_t full;
  uint8_t* smem = dynamic_smem_1024();  // box b at b * kPoolBoxBytes: [boxes][page slots][64], 128B swizzle
  const uint32_t bytes = boxes.count * kPoolBoxBytes;
  fill_shared_and_init_tma_barrier(smem, bytes, &full);
  if (threadIdx.x == 0) {
    // The whole box counts, out-of-bounds parts included.
    ptx::mbarrier_arrive_expect_tx(&full, bytes);
    for (int b = 0; b < boxes.count; ++b)
      ptx::cp_async_bulk_tensor_load<4>(smem + b * kPoolBoxBytes, &map, &full, boxes.coord[b]);
  }
  ptx::mbarrier_wait_parity(&full, 0);
  copy_shared_to_global(raw_out, smem, bytes);
}

struct PagedPool {
  std::vector<uint16_t> bits;  // [page][slot][head][d]

  static bool inside(int d, int h, int slot, int page) {
    return d >= 0 && d < kPoolHeadDim && h >= 0 && h < kPoolHeads && slot >= 0 && slot < kPoolPageSize && page >= 0 &&
           page < kPoolPages;
  }
  static size_t index(int d, int h, int slot, int page) {
    return ((size_t(page) * kPoolPageSize + slot) * kPoolHeads + h) * kPoolHeadDim + d;
  }
};

PagedPool make_pool() {
  return {random_finite_bf16_bits(size_t(kPoolPages) * kPoolPageSize * kPoolHeads * kPoolHeadDim, 77u)};
}

// Loads the boxes; returns the raw shared memory, box after box.
std::vector<uint16_t> load_boxes(const PagedPool& pool, const std::vector<std::array<int32_t, 4>>& boxes) {
  REQUIRE(boxes.size() <= size_t(kMaxBoxes));
  DeviceBuffer pool_dev = upload_vector(pool.bits);
  ptx::TensorMapSpec spec;
  spec.data_type = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  spec.rank = 4;
  spec.global_address = pool_dev.get();
  const uint64_t dims[4] = {kPoolHeadDim, kPoolHeads, kPoolPageSize, kPoolPages};
  const uint32_t box[4] = {kSliceCols, 1, kPoolPageSize, 1};
  for (int i = 0; i < 4; ++i) {
    spec.dims[i] = dims[i];
    spec.box[i] = box[i];
  }
  spec.byte_strides[1] = uint64_t(kPoolHeadDim) * kElemBytes;
  spec.byte_strides[2] = spec.byte_strides[1] * kPoolHeads;
  spec.byte_strides[3] = spec.byte_strides[2] * kPoolPageSize;
  spec.swizzle = Swizzle::k128B;
  CUtensorMap map;
  const Status s = ptx::encode_tensor_map(spec, &map);
  INFO(s.message);
  REQUIRE(s.ok());
  REQUIRE(ptx::tensor_map_box_bytes(spec) == kPoolBoxBytes);

  BoxList list{};
  list.count = int(boxes.size());
  for (size_t b = 0; b < boxes.size(); ++b)
    for (int i = 0; i < 4; ++i) list.coord[b][i] = boxes[b][i];
  const uint32_t bytes = list.count * kPoolBoxBytes;
  DeviceBuffer raw_dev(bytes);
  raw_dev.fill_u32(pattern::kQuietNaN);
  const size_t smem = bytes + kSwizzleAtomBytes;
  allow_dynamic_smem(tma_box_list_kernel, smem);
  tma_box_list_kernel<<<1, kWarpgroupThreads, smem>>>(map, list, raw_dev.as<uint8_t>());
  finish_launch();
  return download_vector<uint16_t>(raw_dev, bytes / kElemBytes);
}

// Element (slot i, column d) of box b in the raw shared memory.
uint16_t box_element(const std::vector<uint16_t>& raw, int b, int i, int d) {
  return raw[(b * kPoolBoxBytes + ptx::swizzled_element_offset(Swizzle::k128B, i, d, kElemBytes)) / kElemBytes];
}

// Every element of every box must be the pool element at its coordinates, or
// zero where the coordinates fall outside the pool. Returns how many were outside.
size_t check_boxes(const PagedPool& pool, const std::vector<std::array<int32_t, 4>>& boxes,
                   const std::vector<uint16_t>& raw) {
  size_t bad = 0, outside = 0;
  std::string first_bad = "none";
  for (size_t b = 0; b < boxes.size(); ++b)
    for (int i = 0; i < kPoolPageSize; ++i)
      for (int d = 0; d < int(kSliceCols); ++d) {
        const int gd = boxes[b][0] + d, h = boxes[b][1], slot = boxes[b][2] + i, page = boxes[b][3];
        const bool in = PagedPool::inside(gd, h, slot, page);
        outside += !in;
        const uint16_t want = in ? pool.bits[PagedPool::index(gd, h, slot, page)] : uint16_t(0);
        const uint16_t got = box_element(raw, int(b), i, d);
        if (got == want) continue;
        if (bad++ == 0) {
          std::ostringstream s;
          s << "box " << b << " element (slot " << i << ", d " << d << ") = pool (d " << gd << ", head " << h
            << ", slot " << slot << ", page " << page << ")" << (in ? "" : " [outside]") << ": got 0x" << std::hex
            << got << ", want 0x" << want;
          first_bad = s.str();
        }
      }
  INFO(bad << " wrong elements, first: " << first_bad);
  CHECK(bad == 0);
  return outside;
}

TEST_CASE("TMA 4-D box over a paged pool (d, head, slot, page) gathers pages in a permuted order", "[gpu][ptx][tma]") {
  PagedPool pool = make_pool();
  // Head 1, pages in this order, both 64-column halves of head_dim 128: the
  // boxes form a K-major tile [d half][5 pages x 16 slots][64].
  const int pages[] = {4, 1, 5, 0, 2};
  std::vector<std::array<int32_t, 4>> boxes;
  for (int half = 0; half < kPoolHeadDim / int(kSliceCols); ++half)
    for (int page : pages) boxes.push_back({half * int(kSliceCols), 1, 0, page});
  CHECK(check_boxes(pool, boxes, load_boxes(pool, boxes)) == 0);
}

TEST_CASE("TMA 4-D box: every element outside the pool's bounds is zero-filled, per dimension", "[gpu][ptx][tma]") {
  PagedPool pool = make_pool();
  const std::vector<std::array<int32_t, 4>> boxes = {
      {0, 0, 0, kPoolPages},       // past the last page: all zero
      {64, 1, 0, -1},              // before the first page: all zero
      {0, 1, 8, 2},                // slots 8..15 of page 2, then 8 slots past the page (NOT page 3's memory)
      {0, 0, -8, 4},               // 8 slots before page 4 (NOT page 3's memory), then its slots 0..7
      {96, 0, 0, kPoolPages - 1},  // d 96..127, then d 128..159 (NOT head 1's memory) of the last page
  };
  // Elements outside: two whole boxes, 8 slots in each of the next two, 32 columns of the last.
  constexpr size_t kOutside = 2 * kPoolPageSize * kSliceCols + 2 * 8 * kSliceCols + kPoolPageSize * 32;
  CHECK(check_boxes(pool, boxes, load_boxes(pool, boxes)) == kOutside);
}

TEST_CASE("TMA 4-D box: the unused tail of a page INSIDE the pool is copied as is, NOT zero-filled",
          "[gpu][ptx][tma]") {
  // The last page of a sequence holds 5 valid tokens; its other slots hold
  // NaN (what a previous request left there). A box over the whole page is
  // inside the pool, so TMA copies the NaN: this is why explicit zeroing of
  // rows >= kv_len exists (rule 1 of docs/kernels.md "State rules").
  constexpr int kPage = 3, kValidSlots = 5;
  constexpr uint16_t kStaleNaN = 0x7FA5;  // a bf16 NaN
  PagedPool pool = make_pool();
  for (int slot = kValidSlots; slot < kPoolPageSize; ++slot)
    for (int h = 0; h < kPoolHeads; ++h)
      for (int d = 0; d < kPoolHeadDim; ++d) pool.bits[PagedPool::index(d, h, slot, kPage)] = kStaleNaN;
  const std::vector<std::array<int32_t, 4>> boxes = {{0, 1, 0, kPage}, {64, 1, 0, kPage}};
  const std::vector<uint16_t> raw = load_boxes(pool, boxes);
  CHECK(check_boxes(pool, boxes, raw) == 0);
  size_t stale = 0;
  for (int b = 0; b < 2; ++b)
    for (int i = kValidSlots; i < kPoolPageSize; ++i)
      for (int d = 0; d < int(kSliceCols); ++d) stale += box_element(raw, b, i, d) == kStaleNaN;
  CHECK(stale == size_t(2) * (kPoolPageSize - kValidSlots) * kSliceCols);
}

// ===========================================================================
// mbarrier ring: one TMA producer thread, one wgmma consumer warpgroup
// ===========================================================================

constexpr int kRingThreads = kWarpgroupThreads + 32;  // consumer warpgroup + producer warp
constexpr int kRingN = 128;
constexpr int kRingIterations = 131;  // > 100 and not a multiple of 2 or 3 stages

struct RingPosition {
  int stage;
  uint32_t phase;
};

template <int kStages>
__device__ __forceinline__ RingPosition ring_position(int iteration) {
  return {iteration % kStages, uint32_t(iteration / kStages) & 1u};
}

// D = sum over iterations i of A_i (64x64) * B_i (64xN, K-major), A_i and B_i
// streamed through a kStages-deep ring of shared-memory stages.
template <int kStages>
__global__ void __launch_bounds__(kRingThreads)
    mbarrier_ring_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                         int iterations, float* d_out) {
  constexpr uint32_t kABytes = kTileM * kRowBytes, kBBytes = kRingN * kRowBytes, kStageBytes = kABytes + kBBytes;
  __shared__ uint64_t full[kStages], empty[kStages];
  uint8_t* stages = dynamic_smem_1024();  // stage s: A [64][64] then B [N][64]
  fill_shared(stages, kStages * kStageBytes);
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      ptx::mbarrier_init(&full[s], 1);                   // the producer's expect_tx arrival
      ptx::mbarrier_init(&empty[s], kWarpgroupThreads);  // every consumer thread releases
    }
    ptx::fence_mbarrier_init();
  }
  __syncthreads();

  if (threadIdx.x >= kWarpgroupThreads) {  // producer warp; one thread issues
    if (threadIdx.x == kWarpgroupThreads) {
      ptx::prefetch_tensormap(&map_a);
      ptx::prefetch_tensormap(&map_b);
      for (int it = 0; it < iterations; ++it) {
        const RingPosition pos = ring_position<kStages>(it);
        ptx::mbarrier_wait_parity(&empty[pos.stage], pos.phase ^ 1u);  // fresh barrier: parity 1 passes at once
        uint8_t* stage = stages + pos.stage * kStageBytes;
        const int32_t a_coord[2] = {0, it * kTileM}, b_coord[2] = {0, it * kRingN};
        ptx::mbarrier_arrive_expect_tx(&full[pos.stage], kStageBytes);
        ptx::cp_async_bulk_tensor_load<2>(stage, &map_a, &full[pos.stage], a_coord);
        ptx::cp_async_bulk_tensor_load<2>(stage + kABytes, &map_b, &full[pos.stage], b_coord);
      }
    }
    return;
  }

  float d[kRingN / 2];
  fill_accumulator_nan(d);
  for (int it = 0; it < iterations; ++it) {
    const RingPosition pos = ring_position<kStages>(it);
    ptx::mbarrier_wait_parity(&full[pos.stage], pos.phase);
    const uint8_t* stage = stages + pos.stage * kStageBytes;
    ptx::wgmma_fence();
#pragma unroll
    for (int k16 = 0; k16 < int(kSliceCols) / 16; ++k16)
      ptx::wgmma_ss<kRingN, MmaType::kBF16, 0, 0>(d, k_major_desc(stage, kTileM, k16),
                                                  k_major_desc(stage + kABytes, kRingN, k16), it > 0 || k16 > 0);
    ptx::wgmma_commit_group();
    ptx::wgmma_wait_group<0>();  // the stage may be overwritten only after the wgmma reading it retired
    ptx::mbarrier_arrive(&empty[pos.stage]);
  }
  ptx::accumulator_fence(d);
  store_accumulator<kRingN>(d, d_out);
}

template <int kStages>
void check_ring() {
  const std::vector<float> a = random_eighths(size_t(kRingIterations) * kTileM * kSliceCols, 101u);  // [it*64][64]
  const std::vector<float> b = random_eighths(size_t(kRingIterations) * kRingN * kSliceCols, 103u);  // [it*N][64]
  DeviceBuffer a_dev = upload_vector(to_bits(MmaType::kBF16, a));
  DeviceBuffer b_dev = upload_vector(to_bits(MmaType::kBF16, b));
  const CUtensorMap map_a = make_map_2d(CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, a_dev.get(), kSliceCols,
                                        kRingIterations * kTileM, kSliceCols, kTileM, Swizzle::k128B);
  const CUtensorMap map_b = make_map_2d(CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, b_dev.get(), kSliceCols,
                                        kRingIterations * kRingN, kSliceCols, kRingN, Swizzle::k128B);
  DeviceBuffer d_dev(sizeof(float) * kTileM * kRingN);
  d_dev.fill_u32(pattern::kQuietNaN);
  const size_t smem = kStages * (kTileM + kRingN) * kRowBytes + kSwizzleAtomBytes;
  allow_dynamic_smem(mbarrier_ring_kernel<kStages>, smem);
  mbarrier_ring_kernel<kStages><<<1, kRingThreads, smem>>>(map_a, map_b, kRingIterations, d_dev.as<float>());
  finish_launch();

  // Exact: 131 * 64 products, each a multiple of 1/64 below 4 in magnitude.
  std::vector<double> want(size_t(kTileM) * kRingN, 0.0);
  for (int it = 0; it < kRingIterations; ++it)
    for (int m = 0; m < kTileM; ++m)
      for (int n = 0; n < kRingN; ++n)
        for (int k = 0; k < int(kSliceCols); ++k)
          want[size_t(m) * kRingN + n] +=
              double(a[(size_t(it) * kTileM + m) * kSliceCols + k]) * b[(size_t(it) * kRingN + n) * kSliceCols + k];
  const Comparison c =
      compare(download_vector<float>(d_dev, want.size()), want, std::vector<double>(want.size(), 0.0), kRingN);
  INFO(kStages << " stages, " << kRingIterations << " iterations: " << c.bad << " bad, first " << c.first_bad);
  CHECK(c.bad == 0);
}

TEST_CASE("mbarrier ring: TMA producer + wgmma consumer", "[gpu][ptx][ring]") {
  SECTION("2 stages") { check_ring<2>(); }
  SECTION("3 stages") { check_ring<3>(); }
}

// ===========================================================================
// cp.async zero fill
// ===========================================================================

constexpr int kZfillRows = 64, kZfillValidRows = 37;
constexpr uint32_t kZfillChunksPerRow = kRowBytes / 16;

// Copies a [64][64] bf16 tile whose rows >= valid_rows are past the end: they
// exist in global memory (holding NaN) but are requested with src-size 0.
template <bool kCompleteOnMbarrier>
__global__ void cp_async_zfill_kernel(const uint16_t* src, int valid_rows, uint16_t* out) {
  __shared__ uint64_t copied;
  uint8_t* tile = dynamic_smem_1024();
  fill_shared(tile, kZfillRows * kRowBytes);
  if constexpr (kCompleteOnMbarrier) {
    if (threadIdx.x == 0) {
      ptx::mbarrier_init(&copied, blockDim.x);  // one noinc arrival per thread
      ptx::fence_mbarrier_init();
    }
    __syncthreads();
  }
  for (uint32_t c = threadIdx.x; c < kZfillRows * kZfillChunksPerRow; c += blockDim.x) {
    const int row = c / kZfillChunksPerRow;
    ptx::cp_async_cg_16_zfill(tile + c * 16, src + c * 8, row < valid_rows);
  }
  if constexpr (kCompleteOnMbarrier) {
    ptx::cp_async_mbarrier_arrive_noinc(&copied);
    ptx::mbarrier_wait_parity(&copied, 0);
  } else {
    ptx::cp_async_commit_group();
    ptx::cp_async_wait_group<0>();
    __syncthreads();
  }
  copy_shared_to_global(out, tile, kZfillRows * kRowBytes);
}

template <bool kCompleteOnMbarrier>
void check_cp_async_zfill() {
  std::vector<uint16_t> src = random_finite_bf16_bits(size_t(kZfillRows) * kSliceCols, 13u);
  for (size_t i = size_t(kZfillValidRows) * kSliceCols; i < src.size(); ++i) src[i] = 0x7FC0;  // bf16 NaN
  DeviceBuffer src_dev = upload_vector(src), out_dev(src.size() * kElemBytes);
  out_dev.fill_u32(pattern::kQuietNaN);
  const size_t smem = kZfillRows * kRowBytes + kSwizzleAtomBytes;
  allow_dynamic_smem(cp_async_zfill_kernel<kCompleteOnMbarrier>, smem);
  cp_async_zfill_kernel<kCompleteOnMbarrier>
      <<<1, kWarpgroupThreads, smem>>>(src_dev.as<uint16_t>(), kZfillValidRows, out_dev.as<uint16_t>());
  finish_launch();
  const std::vector<uint16_t> out = download_vector<uint16_t>(out_dev, src.size());
  size_t copy_errors = 0, nonzero_past_end = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (i < size_t(kZfillValidRows) * kSliceCols)
      copy_errors += out[i] != src[i];
    else
      nonzero_past_end += out[i] != 0;
  }
  INFO(copy_errors << " valid elements wrong, " << nonzero_past_end << " elements past the end not exact +0");
  CHECK(copy_errors == 0);
  CHECK(nonzero_past_end == 0);
}

TEST_CASE("cp.async zero-fill: rows past the end read back as exact zeros over NaN-filled shared memory",
          "[gpu][ptx][cp_async]") {
  SECTION("completion by cp.async.wait_group") { check_cp_async_zfill<false>(); }
  SECTION("completion by cp.async.mbarrier.arrive.noinc") { check_cp_async_zfill<true>(); }
}

// ===========================================================================
// ldmatrix / stmatrix: four 8x8 b16 matrices, rows [32][8], matrix j = rows 8j..8j+7
// ===========================================================================

constexpr int kMatrixRows = 32, kMatrixCols = 8;

// Fragment of matrix j in lane l, half h (0 = low 16 bits) -> (row, col) of
// the matrix in memory, per ptx/ld_st.cuh.
int fragment_row(int lane, int half, bool trans) { return trans ? 2 * (lane % 4) + half : lane / 4; }
int fragment_col(int lane, int half, bool trans) { return trans ? lane / 4 : 2 * (lane % 4) + half; }

// Row address of this lane: row lane%8 of matrix lane/8 (wrapping for x1/x2).
template <int kCount>
__device__ __forceinline__ uint16_t* lane_row(uint16_t* tile) {
  return tile + (threadIdx.x % (8 * kCount)) * kMatrixCols;
}

template <int kCount, bool kTrans>
__global__ void ldmatrix_kernel(const uint16_t* src, uint32_t* regs_out) {
  __shared__ __align__(16) uint16_t tile[kMatrixRows * kMatrixCols];
  fill_shared(tile, sizeof(tile));
  for (int i = threadIdx.x; i < kMatrixRows * kMatrixCols; i += blockDim.x) tile[i] = src[i];
  __syncwarp();
  uint32_t r[kCount];
  if constexpr (kCount == 1)
    ptx::ldmatrix_x1<kTrans>(r[0], lane_row<kCount>(tile));
  else if constexpr (kCount == 2)
    ptx::ldmatrix_x2<kTrans>(r, lane_row<kCount>(tile));
  else
    ptx::ldmatrix_x4<kTrans>(r, lane_row<kCount>(tile));
  for (int j = 0; j < kCount; ++j) regs_out[threadIdx.x * kCount + j] = r[j];
}

// Lane l stores stored_value(j, l, h) in half h of register j.
__host__ __device__ constexpr uint16_t stored_value(int j, int lane, int half) {
  return uint16_t(0x1000 + 64 * j + 2 * lane + half);
}

template <int kCount, bool kTrans>
__global__ void stmatrix_kernel(uint16_t* tile_out) {
  __shared__ __align__(16) uint16_t tile[kMatrixRows * kMatrixCols];
  fill_shared(tile, sizeof(tile));
  uint32_t r[kCount];
  for (int j = 0; j < kCount; ++j)
    r[j] = uint32_t(stored_value(j, threadIdx.x, 0)) | uint32_t(stored_value(j, threadIdx.x, 1)) << 16;
  if constexpr (kCount == 1)
    ptx::stmatrix_x1<kTrans>(lane_row<kCount>(tile), r[0]);
  else if constexpr (kCount == 2)
    ptx::stmatrix_x2<kTrans>(lane_row<kCount>(tile), r);
  else
    ptx::stmatrix_x4<kTrans>(lane_row<kCount>(tile), r);
  __syncwarp();
  copy_shared_to_global(tile_out, tile, sizeof(tile));
}

template <int kCount, bool kTrans>
void check_ldmatrix() {
  std::vector<uint16_t> src(kMatrixRows * kMatrixCols);
  for (size_t i = 0; i < src.size(); ++i) src[i] = uint16_t(i + 1);
  DeviceBuffer src_dev = upload_vector(src), regs_dev(sizeof(uint32_t) * 32 * kCount);
  ldmatrix_kernel<kCount, kTrans><<<1, 32>>>(src_dev.as<uint16_t>(), regs_dev.as<uint32_t>());
  finish_launch();
  const std::vector<uint32_t> regs = download_vector<uint32_t>(regs_dev, 32 * kCount);
  size_t bad = 0;
  for (int lane = 0; lane < 32; ++lane)
    for (int j = 0; j < kCount; ++j)
      for (int half = 0; half < 2; ++half) {
        const int row = 8 * j + fragment_row(lane, half, kTrans), col = fragment_col(lane, half, kTrans);
        bad += uint16_t(regs[lane * kCount + j] >> (16 * half)) != src[row * kMatrixCols + col];
      }
  INFO("ldmatrix x" << kCount << (kTrans ? ".trans" : "") << ": " << bad << " fragment elements wrong");
  CHECK(bad == 0);
}

template <int kCount, bool kTrans>
void check_stmatrix() {
  DeviceBuffer tile_dev(sizeof(uint16_t) * kMatrixRows * kMatrixCols);
  stmatrix_kernel<kCount, kTrans><<<1, 32>>>(tile_dev.as<uint16_t>());
  finish_launch();
  const std::vector<uint16_t> tile = download_vector<uint16_t>(tile_dev, kMatrixRows * kMatrixCols);
  std::vector<uint16_t> want(tile.size(), uint16_t(pattern::kQuietNaN));  // untouched rows keep the poison
  for (int lane = 0; lane < 32; ++lane)
    for (int j = 0; j < kCount; ++j)
      for (int half = 0; half < 2; ++half)
        want[(8 * j + fragment_row(lane, half, kTrans)) * kMatrixCols + fragment_col(lane, half, kTrans)] =
            stored_value(j, lane, half);
  size_t bad = 0;
  for (size_t i = 0; i < tile.size(); ++i) bad += tile[i] != want[i];
  INFO("stmatrix x" << kCount << (kTrans ? ".trans" : "") << ": " << bad << " shared-memory elements wrong");
  CHECK(bad == 0);
}

TEST_CASE("ldmatrix x1/x2/x4 (+.trans) fills the fragment layout of ptx/ld_st.cuh", "[gpu][ptx][ld_st]") {
  check_ldmatrix<1, false>();
  check_ldmatrix<2, false>();
  check_ldmatrix<4, false>();
  check_ldmatrix<1, true>();
  check_ldmatrix<2, true>();
  check_ldmatrix<4, true>();
}

TEST_CASE("stmatrix x1/x2/x4 (+.trans) writes the fragment layout of ptx/ld_st.cuh and nothing else",
          "[gpu][ptx][ld_st]") {
  check_stmatrix<1, false>();
  check_stmatrix<2, false>();
  check_stmatrix<4, false>();
  check_stmatrix<1, true>();
  check_stmatrix<2, true>();
  check_stmatrix<4, true>();
}

// ===========================================================================
// mbarrier phase parity
// ===========================================================================

__global__ void mbarrier_phase_kernel(int* flags) {
  __shared__ uint64_t bar;
  fill_shared(&bar, sizeof(bar));
  ptx::mbarrier_init(&bar, 2);
  ptx::fence_mbarrier_init();
  flags[0] = ptx::mbarrier_try_wait_parity(&bar, 1);  // fresh: "phase -1" (parity 1) counts as complete
  flags[1] = ptx::mbarrier_try_wait_parity(&bar, 0);  // phase 0 still pending
  ptx::mbarrier_arrive(&bar);
  flags[2] = ptx::mbarrier_try_wait_parity(&bar, 0);  // 1 of 2 arrivals
  ptx::mbarrier_arrive(&bar);
  flags[3] = ptx::mbarrier_try_wait_parity(&bar, 0);  // phase 0 complete
  flags[4] = ptx::mbarrier_try_wait_parity(&bar, 1);  // phase 1 now pending
  ptx::mbarrier_arrive(&bar);
  ptx::mbarrier_arrive(&bar);
  flags[5] = ptx::mbarrier_try_wait_parity(&bar, 1);  // phase 1 complete
  ptx::mbarrier_inval(&bar);
  ptx::mbarrier_init(&bar, 1);  // re-initialised: phase 0 again
  flags[6] = ptx::mbarrier_try_wait_parity(&bar, 0);
  ptx::mbarrier_arrive(&bar);
  flags[7] = ptx::mbarrier_try_wait_parity(&bar, 0);
}

TEST_CASE("mbarrier phase parity: fresh barrier passes parity 1, phase 0 completes after its arrivals, inval + re-init",
          "[gpu][ptx][mbarrier]") {
  DeviceBuffer flags_dev(sizeof(int) * 8);
  flags_dev.fill_u32(0xFFFFFFFFu);
  mbarrier_phase_kernel<<<1, 1>>>(flags_dev.as<int>());
  finish_launch();
  const std::vector<int> flags = download_vector<int>(flags_dev, 8);
  const std::vector<int> want = {1, 0, 0, 1, 0, 1, 0, 1};
  for (int i = 0; i < 8; ++i) {
    INFO("flag " << i);
    CHECK(flags[i] == want[i]);
  }
}

// ===========================================================================
// setmaxnreg with a named-barrier handoff (the warp-specialised kernel shape)
// ===========================================================================

constexpr int kRolesThreads = 3 * kWarpgroupThreads;  // producer + two consumer warpgroups
constexpr int kRolesValues = 2 * kWarpgroupThreads;
enum class RolesBarrier : uint32_t { kDataReady = 1 };  // 0 is __syncthreads

// 384 threads at one CTA per SM start at 168 registers: the producer gives
// 168 - 24 to the pool and each consumer takes 240 - 168 (24 + 2 * 240 = 3 * 168).
__global__ void __launch_bounds__(kRolesThreads, 1) roles_kernel(float* out) {
  __shared__ float values[kRolesValues];
  fill_shared(values, sizeof(values));
  if (threadIdx.x < kWarpgroupThreads) {
    ptx::setmaxnreg_dec<24>();
    for (int i = threadIdx.x; i < kRolesValues; i += kWarpgroupThreads) values[i] = float(i);
    ptx::named_barrier_arrive(uint32_t(RolesBarrier::kDataReady), kRolesThreads);
  } else {
    ptx::setmaxnreg_inc<240>();
    ptx::named_barrier_sync(uint32_t(RolesBarrier::kDataReady), kRolesThreads);
    const int t = threadIdx.x - kWarpgroupThreads;
    out[t] = values[t] + 2.0f * values[kRolesValues - 1 - t];  // NaN if the handoff raced
  }
}

TEST_CASE("setmaxnreg dec/inc across warpgroups with a named-barrier handoff of shared memory",
          "[gpu][ptx][setmaxnreg]") {
  DeviceBuffer out_dev(sizeof(float) * kRolesValues);
  out_dev.fill_u32(pattern::kQuietNaN);
  roles_kernel<<<1, kRolesThreads>>>(out_dev.as<float>());
  finish_launch();
  const std::vector<float> out = download_vector<float>(out_dev, kRolesValues);
  size_t bad = 0;
  for (int t = 0; t < kRolesValues; ++t) bad += out[t] != float(t + 2 * (kRolesValues - 1 - t));
  INFO(bad << " consumer results wrong");
  CHECK(bad == 0);
}

// ===========================================================================
// ex2.approx
// ===========================================================================

__global__ void ex2_kernel(const float* x, float* y, int count) {
  for (int i = threadIdx.x; i < count; i += blockDim.x) y[i] = ptx::ex2_approx(x[i]);
}

TEST_CASE("ex2.approx: 2^-inf = +0, 2^+inf = +inf, relative error within 2^-21", "[gpu][ptx][cvt]") {
  std::vector<float> x = {-INFINITY, INFINITY};
  for (int e = -20; e <= 20; ++e) x.push_back(float(e));
  for (int i = -400; i <= 400; ++i) x.push_back(i / 16.0f + 1.0f / 7.0f);
  DeviceBuffer x_dev = upload_vector(x), y_dev(sizeof(float) * x.size());
  y_dev.fill_u32(pattern::kQuietNaN);  // an element the kernel does not write fails below
  ex2_kernel<<<1, kWarpgroupThreads>>>(x_dev.as<float>(), y_dev.as<float>(), int(x.size()));
  finish_launch();
  const std::vector<float> y = download_vector<float>(y_dev, x.size());
  CHECK(y[0] == 0.0f);  // masked scores: exp of -inf must be +0, never NaN
  CHECK_FALSE(std::signbit(y[0]));
  CHECK(y[1] == INFINITY);
  size_t bad = 0;
  for (size_t i = 2; i < x.size(); ++i) {
    const double want = std::exp2(double(x[i]));
    bad += !(std::fabs(y[i] - want) <= std::ldexp(want, -21));  // negated: a NaN (unwritten) is bad
  }
  CHECK(bad == 0);
}

// ===========================================================================
// griddepcontrol (programmatic dependent launch)
// ===========================================================================

constexpr int kPdlValues = 4096;
constexpr long long kPdlWriterCycles = 1 << 24;  // about 9 ms: the dependent starts well before the end

// The prerequisite: lets its dependent be scheduled at once, keeps it
// waiting, then writes the values and, last, the done flag.
__global__ void pdl_writer(uint32_t* values, uint32_t* done) {
  ptx::griddepcontrol_launch_dependents();
  const long long start = clock64();
  while (clock64() - start < kPdlWriterCycles) {
  }
  for (int i = threadIdx.x; i < kPdlValues; i += blockDim.x) values[i] = uint32_t(i) + 1u;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    *reinterpret_cast<volatile uint32_t*>(done) = 1u;
  }
}

// The dependent: notes whether the writer was still running when it started
// (else the wait below is not put to the test), then waits and copies.
__global__ void pdl_reader(const uint32_t* values, const uint32_t* done, uint32_t* copy, uint32_t* started_early) {
  if (threadIdx.x == 0) *started_early = *reinterpret_cast<const volatile uint32_t*>(done) == 0u ? 1u : 0u;
  ptx::griddepcontrol_wait();
  for (int i = threadIdx.x; i < kPdlValues; i += blockDim.x) copy[i] = values[i];
}

TEST_CASE("griddepcontrol: a dependent launched while its prerequisite runs waits for the prerequisite's writes",
          "[gpu][ptx][griddepcontrol]") {
  DeviceBuffer values(sizeof(uint32_t) * kPdlValues), done(sizeof(uint32_t)), copy(sizeof(uint32_t) * kPdlValues),
      started_early(sizeof(uint32_t));
  values.fill_u32(0);
  done.fill_u32(0);
  cudaStream_t stream;
  PTXATTN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  // Both kernels run once before: under lazy module loading, the first
  // launch of a kernel loads it, and that waits for the kernels running on
  // the device (measured: the reader then never started before the writer
  // ended).
  pdl_writer<<<1, kWarpgroupThreads, 0, stream>>>(copy.as<uint32_t>(), started_early.as<uint32_t>());
  pdl_reader<<<1, kWarpgroupThreads, 0, stream>>>(values.as<uint32_t>(), done.as<uint32_t>(), copy.as<uint32_t>(),
                                                  started_early.as<uint32_t>());
  PTXATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
  copy.fill_u32(pattern::kQuietNaN);
  started_early.fill_u32(7);  // neither answer: the reader must write it
  pdl_writer<<<1, kWarpgroupThreads, 0, stream>>>(values.as<uint32_t>(), done.as<uint32_t>());
  PTXATTN_CUDA_CHECK(cudaGetLastError());
  PTXATTN_CUDA_CHECK(ptx::launch_dependent(pdl_reader, dim3(1), dim3(kWarpgroupThreads), 0, stream,
                                           values.as<uint32_t>(), done.as<uint32_t>(), copy.as<uint32_t>(),
                                           started_early.as<uint32_t>()));
  PTXATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
  PTXATTN_CUDA_CHECK(cudaStreamDestroy(stream));
  CHECK(download_vector<uint32_t>(started_early, 1)[0] == 1u);
  const std::vector<uint32_t> got = download_vector<uint32_t>(copy, kPdlValues);
  size_t bad = 0;
  for (int i = 0; i < kPdlValues; ++i) bad += got[i] != uint32_t(i) + 1u;
  INFO(bad << " values read before the writer's");
  CHECK(bad == 0);
}

}  // namespace
}  // namespace ptxattn::testing
