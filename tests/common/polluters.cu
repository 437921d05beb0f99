// See polluters.hpp. Each polluter synchronises before it returns, so the
// kernel under test starts on exactly the state it left.
//
// NOTES: the polluters' large buffers (register sink, L2 flush buffer, RoPE
// cache, previous prefills) are made on first use and live until the process
// exits, never destroyed, so no cudaFree runs after the CUDA runtime has shut
// down and no polluter pays for an allocation on every call.
#include "tests/common/polluters.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <memory>
#include <random>
#include <stdexcept>

#include "ptx/setmaxnreg.cuh"
#include "reference/rope.hpp"
#include "src/prefill_traits.cuh"

namespace ptxattn::testing {

namespace {

constexpr uint32_t kHalfPosInf = 0x7C007C00u;   // fp16 +Inf pairs
constexpr uint32_t kHalfNegInf = 0xFC00FC00u;   // fp16 -Inf pairs
constexpr uint32_t kFloatNegInf = 0xFF800000u;  // f32 -Inf (as bf16: -Inf and 0)
constexpr uint32_t kFloatPosInf = 0x7F800000u;
constexpr uint32_t kFloatQuietNaN = 0x7FC00000u;

struct PolluterInfo {
  Polluter polluter;
  const char* name;
};
constexpr PolluterInfo kPolluters[] = {
    {Polluter::kSmem, "smem"},
    {Polluter::kRegs, "regs"},
    {Polluter::kOutputs, "outputs"},
    {Polluter::kCacheSlots, "cache-slots"},
    {Polluter::kL2, "l2"},
    {Polluter::kSeed, "seed"},
    {Polluter::kPrevious, "previous"},
};

// An attribute of the current device (cheap, unlike cudaGetDeviceProperties).
int device_attribute(cudaDeviceAttr attribute) {
  int device = 0, value = 0;
  PTXATTN_CUDA_CHECK(cudaGetDevice(&device));
  PTXATTN_CUDA_CHECK(cudaDeviceGetAttribute(&value, attribute, device));
  return value;
}

// ---------------------------------------------------------------------------
// regs
// ---------------------------------------------------------------------------
// NOTES: ptxas sees through copies of one value, so every register gets its
// own ld.volatile (never merged, duplicated or re-issued) and keeps it until
// its st.volatile; volatile accesses stay in program order, so all loads
// precede all stores and every value is live at once. The stores write the
// registers out, so nothing can be dropped.

// Registers each thread leaves for addresses and indices.
constexpr int kRegisterReserve = 8;
constexpr int kPlainThreads = 1024;  // 64 registers each: the whole 64K register file
constexpr int kPlainFill = 65536 / kPlainThreads - kRegisterReserve;

// The prefill kernels' warpgroup split and setmaxnreg budgets, which depend
// on the load path only.
template <detail::LoadPath kPath>
using PrefillBudget = detail::PrefillTraits<128, ptx::MmaType::kBF16, kPath>;
template <detail::LoadPath kPath>
constexpr bool kSameBudgetForEveryHeadDim =
    detail::PrefillTraits<64, ptx::MmaType::kBF16, kPath>::kConsumerRegs ==
    PrefillBudget<kPath>::kConsumerRegs&& detail::PrefillTraits<256, ptx::MmaType::kBF16, kPath>::kConsumerRegs ==
    PrefillBudget<kPath>::kConsumerRegs&& detail::PrefillTraits<64, ptx::MmaType::kBF16, kPath>::kProducerRegs ==
    PrefillBudget<kPath>::kProducerRegs&& detail::PrefillTraits<256, ptx::MmaType::kBF16, kPath>::kProducerRegs ==
    PrefillBudget<kPath>::kProducerRegs;
static_assert(kSameBudgetForEveryHeadDim<detail::LoadPath::kTma> &&
                  kSameBudgetForEveryHeadDim<detail::LoadPath::kGather>,
              "register budgets now depend on the head dim: run the split polluter for each");
constexpr int kSplitThreads = PrefillBudget<detail::LoadPath::kTma>::kThreads;
template <detail::LoadPath kPath>
constexpr int kProducerFill = int(PrefillBudget<kPath>::kProducerRegs) - kRegisterReserve;
template <detail::LoadPath kPath>
constexpr int kConsumerFill = int(PrefillBudget<kPath>::kConsumerRegs) - 2 * kRegisterReserve;

constexpr int kMaxFill =
    std::max({kPlainFill, kConsumerFill<detail::LoadPath::kTma>, kConsumerFill<detail::LoadPath::kGather>});
// Words one SM's CTA writes out (the largest of the kernels).
constexpr size_t kSinkWordsPerSm = std::max(size_t(kPlainFill) * kPlainThreads, size_t(kMaxFill) * kSplitThreads);

template <int kCount>
__device__ __forceinline__ void fill_registers(const uint32_t* source, uint32_t* sink, size_t slot, size_t slots) {
  uint32_t r[kCount];
#pragma unroll
  for (int i = 0; i < kCount; ++i) asm volatile("ld.volatile.global.u32 %0, [%1];" : "=r"(r[i]) : "l"(source + i));
#pragma unroll
  for (int i = 0; i < kCount; ++i)
    asm volatile("st.volatile.global.u32 [%0], %1;" ::"l"(sink + i * slots + slot), "r"(r[i]) : "memory");
}

__device__ __forceinline__ void record_sm(unsigned* sm_of_block) {
  if (threadIdx.x == 0) {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    sm_of_block[blockIdx.x] = smid;
  }
}

// Every thread holds as many registers as the launch bound allows.
__global__ void __launch_bounds__(kPlainThreads, 1)
    fill_registers_plain_kernel(const uint32_t* source, uint32_t* sink, unsigned* sm_of_block) {
  record_sm(sm_of_block);
  const size_t slots = size_t(gridDim.x) * blockDim.x;
  fill_registers<kPlainFill>(source, sink, blockIdx.x * size_t(blockDim.x) + threadIdx.x, slots);
}

// The prefill kernels' split: the producer warpgroup gives registers away,
// the consumers take them, then each fills what it holds.
template <detail::LoadPath kPath>
__global__ void __launch_bounds__(kSplitThreads, 1)
    fill_registers_split_kernel(const uint32_t* source, uint32_t* sink, unsigned* sm_of_block) {
  record_sm(sm_of_block);
  const size_t slots = size_t(gridDim.x) * blockDim.x;
  const size_t slot = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  if (threadIdx.x / 128 == 0) {
    ptx::setmaxnreg_dec<PrefillBudget<kPath>::kProducerRegs>();
    fill_registers<kProducerFill<kPath>>(source, sink, slot, slots);
  } else {
    ptx::setmaxnreg_inc<PrefillBudget<kPath>::kConsumerRegs>();
    fill_registers<kConsumerFill<kPath>>(source, sink, slot, slots);
  }
}

// Launches `kernel` with one CTA on every SM (all the shared memory a block
// may have keeps a second CTA off) and checks that it really ran so.
void launch_on_every_sm(const void* kernel, int threads, const DeviceBuffer& source, const char* who) {
  const int smem_bytes = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  PTXATTN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
  int blocks_per_sm = 0;
  PTXATTN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, kernel, threads, smem_bytes));
  if (blocks_per_sm != 1)
    throw std::runtime_error(std::string(who) + ": expected exactly one CTA per SM, occupancy says " +
                             std::to_string(blocks_per_sm));
  const int blocks = device_attribute(cudaDevAttrMultiProcessorCount);
  static DeviceBuffer& sink = *new DeviceBuffer(kSinkWordsPerSm * blocks * sizeof(uint32_t));
  DeviceBuffer sms(sizeof(unsigned) * blocks);
  const uint32_t* source_ptr = source.as<uint32_t>();
  uint32_t* sink_ptr = sink.as<uint32_t>();
  unsigned* sms_ptr = sms.as<unsigned>();
  void* args[] = {&source_ptr, &sink_ptr, &sms_ptr};
  PTXATTN_CUDA_CHECK(cudaLaunchKernel(kernel, dim3(blocks), dim3(threads), args, smem_bytes, nullptr));
  PTXATTN_CUDA_CHECK(cudaGetLastError());
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
  require_one_block_per_sm(sms, blocks, who);
}

void pollute_registers(const FillPattern& pattern, uint64_t seed) {
  std::vector<uint32_t> words(kMaxFill, pattern.word);
  if (pattern.random) {
    std::mt19937_64 rng(seed);
    for (uint32_t& w : words) w = uint32_t(rng());
  }
  const DeviceBuffer source = upload_vector(words);
  launch_on_every_sm(reinterpret_cast<const void*>(fill_registers_plain_kernel), kPlainThreads, source,
                     "regs polluter (plain)");
  launch_on_every_sm(reinterpret_cast<const void*>(fill_registers_split_kernel<detail::LoadPath::kTma>), kSplitThreads,
                     source, "regs polluter (TMA kernels' setmaxnreg split)");
  launch_on_every_sm(reinterpret_cast<const void*>(fill_registers_split_kernel<detail::LoadPath::kGather>),
                     kSplitThreads, source, "regs polluter (gather kernels' setmaxnreg split)");
}

// ---------------------------------------------------------------------------
// l2, seed, previous
// ---------------------------------------------------------------------------

void flush_l2() {
  static DeviceBuffer& buffer =
      *new DeviceBuffer(2 * size_t(std::max(device_attribute(cudaDevAttrL2CacheSize), 1 << 20)));
  buffer.fill_u32(pattern::kQuietNaN);
}

// FlashInfer #1018: the cos/sin cache of a 64K-position, rotary_dim 128 RoPE
// was built right before the prefill that then returned NaN.
constexpr int32_t kSeedMaxPosition = 65536;
constexpr int32_t kSeedRotaryDim = 128;

void build_seed_rope_cache() {
  static DeviceBuffer& cache = *new DeviceBuffer(size_t(kSeedMaxPosition) * kSeedRotaryDim * sizeof(float));
  RopeConfig rope;
  rope.rotary_dim = kSeedRotaryDim;
  const Status s = build_rope_cos_sin_cache(cache.as<float>(), kSeedMaxPosition, kSeedRotaryDim, rope, nullptr);
  if (!s.ok()) throw std::runtime_error("seed polluter: build_rope_cos_sin_cache failed: " + s.message);
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
}

// Other prefills: other head dims, dtypes, page sizes, layouts and masks, so
// they leave their own tiles, barriers and register contents behind.
struct PreviousPrefill {
  const char* name;
  CaseSpec spec;
};

const std::vector<PreviousPrefill>& previous_prefills() {
  static const std::vector<PreviousPrefill> prefills = [] {
    const DType bf16 = DType::kBF16, fp16 = DType::kFP16;
    const KvLayout nhd = KvLayout::kNHD, hnd = KvLayout::kHND;
    return std::vector<PreviousPrefill>{
        {"hd256-page7-hnd-causal-window",
         CaseSpecBuilder(9001, bf16, 256, 4, 2).paged(hnd, 7).lengths({100, 33}, {300, 90}).causal().window(50)},
        {"hd64-fp16-ragged-softcap",
         CaseSpecBuilder(9002, fp16, 64, 8, 2).ragged().lengths({250, 3}, {400, 5}).soft_cap(30.0f)},
        {"hd128-page64-peaked",
         CaseSpecBuilder(9003, bf16, 128, 4, 4).paged(nhd, 64).lengths({129, 1}, {700, 65}).peaked()},
        {"hd128-fp16-page1-causal",
         CaseSpecBuilder(9004, fp16, 128, 2, 1).paged(nhd, 1).lengths({60, 200}, {61, 333}).causal()},
    };
  }();
  return prefills;
}

// The generated cases and their device copies, made on first use.
struct PreviousCases {
  const std::vector<PreviousPrefill>& list = previous_prefills();
  std::vector<HostCase> hosts;
  std::vector<std::unique_ptr<DevicePrefillCase>> devices;

  PreviousCases() {
    hosts.reserve(list.size());  // DevicePrefillCase keeps a reference to its HostCase
    for (const PreviousPrefill& p : list) {
      hosts.push_back(make_case(p.spec));
      devices.push_back(std::make_unique<DevicePrefillCase>(hosts.back()));
    }
  }
};

PreviousCases& previous_cases() {
  static PreviousCases& cases = *new PreviousCases();
  return cases;
}

// Runs the prefill `seed` picks, or the next one this build has kernels for.
void run_previous_prefill(uint64_t seed) {
  PreviousCases& cases = previous_cases();
  const size_t n = cases.list.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (seed + k) % n;
    const PrefillRun run = cases.devices[i]->run(KvLoadPath::kAuto);
    if (run.status.ok()) return;
    if (run.status.code != StatusCode::kUnsupported)
      throw std::runtime_error(std::string("previous polluter: prefill ") + cases.list[i].name +
                               " failed: " + run.status.message);
  }
  throw std::runtime_error("previous polluter: this build has kernels for none of its prefills");
}

// ---------------------------------------------------------------------------
// cache-slots
// ---------------------------------------------------------------------------

void poison_unused_slots(DevicePrefillCase& device, uint64_t seed) {
  const HostCase& c = device.host();
  const std::vector<bool> unused = unused_kv_elements(c);
  std::vector<uint16_t> k = c.k, v = c.v;
  for (size_t i = 0; i < unused.size(); ++i) {
    if (!unused[i]) continue;
    k[i] = cache_slot_poison(c.config.dtype, int64_t(i), seed);
    v[i] = cache_slot_poison(c.config.dtype, int64_t(i), seed + 1);  // V gets another poison than K
  }
  if (!k.empty()) device.k().upload(k.data(), k.size() * sizeof(uint16_t));
  if (!v.empty()) device.v().upload(v.data(), v.size() * sizeof(uint16_t));
}

}  // namespace

// ---------------------------------------------------------------------------
// Public
// ---------------------------------------------------------------------------

const std::vector<Polluter>& all_polluters() {
  static const std::vector<Polluter> all = [] {
    std::vector<Polluter> list;
    for (const PolluterInfo& info : kPolluters) list.push_back(info.polluter);
    return list;
  }();
  return all;
}

const char* polluter_name(Polluter p) {
  for (const PolluterInfo& info : kPolluters)
    if (info.polluter == p) return info.name;
  return "unknown";
}

bool parse_polluter_list(const std::string& text, std::vector<Polluter>* out, std::string* error) {
  std::vector<Polluter> result;
  if (text == "all") {
    result = all_polluters();
  } else {
    size_t begin = 0;
    while (true) {
      const size_t end = std::min(text.find(',', begin), text.size());
      const std::string name = text.substr(begin, end - begin);
      const PolluterInfo* found = nullptr;
      for (const PolluterInfo& info : kPolluters)
        if (name == info.name) found = &info;
      if (found == nullptr) {
        if (error) {
          *error = "unknown polluter '" + name + "' in '" + text + "' (expected 'all' or a comma-separated list of";
          for (const PolluterInfo& info : kPolluters) *error += std::string(" ") + info.name;
          *error += ")";
        }
        return false;
      }
      if (std::find(result.begin(), result.end(), found->polluter) == result.end()) result.push_back(found->polluter);
      if (end == text.size()) break;
      begin = end + 1;
    }
  }
  *out = std::move(result);
  return true;
}

const std::vector<FillPattern>& smem_patterns() {
  static const std::vector<FillPattern> patterns = {
      {"qNaN", pattern::kQuietNaN, false},  {"sNaN", pattern::kSignalingNaN, false},
      {"+Inf", pattern::kPosInf, false},    {"-Inf", pattern::kNegInf, false},
      {"fp16+Inf", kHalfPosInf, false},     {"fp16-Inf", kHalfNegInf, false},
      {"0xFFFF", pattern::kAllOnes, false}, {"random", 0, true},
  };
  return patterns;
}

const std::vector<FillPattern>& output_patterns() {
  static const std::vector<FillPattern> patterns = {
      {"+Inf", pattern::kPosInf, false},    {"-Inf", pattern::kNegInf, false}, {"fp16+Inf", kHalfPosInf, false},
      {"0xFFFF", pattern::kAllOnes, false}, {"f32-Inf", kFloatNegInf, false},
  };
  return patterns;
}

const FillPattern& smem_pattern(uint64_t seed) { return smem_patterns()[seed % smem_patterns().size()]; }
const FillPattern& output_pattern(uint64_t seed) { return output_patterns()[seed % output_patterns().size()]; }

uint16_t cache_slot_poison(DType dtype, int64_t index, uint64_t seed) {
  //                                        all-ones  sNaN    -Inf    +Inf
  static constexpr uint16_t kBf16[4] = {0xFFFF, 0x7F81, 0xFF80, 0x7F80};
  static constexpr uint16_t kFp16[4] = {0xFFFF, 0x7C01, 0xFC00, 0x7C00};
  const size_t i = size_t((uint64_t(index) + seed) % 4);
  return dtype == DType::kBF16 ? kBf16[i] : kFp16[i];
}

std::vector<bool> unused_kv_elements(const HostCase& c) {
  const PrefillConfig& cfg = c.config;
  const int64_t row_elements = int64_t(cfg.num_kv_heads) * cfg.head_dim;
  std::vector<bool> unused(c.k.size(), true);
  auto mark_used = [&](int64_t offset, int64_t count) {
    std::fill(unused.begin() + offset, unused.begin() + offset + count, false);
  };
  for (int32_t b = 0; b < c.num_requests(); ++b) {
    if (cfg.kv_format == KvFormat::kRagged) {
      mark_used(int64_t(c.kv_indptr[b]) * row_elements, int64_t(c.kv_indptr[b + 1] - c.kv_indptr[b]) * row_elements);
      continue;
    }
    const int32_t pages = c.kv_indptr[b + 1] - c.kv_indptr[b];
    for (int32_t j = 0; j < pages; ++j) {
      const int32_t page = c.kv_indices[c.kv_indptr[b] + j];
      const int32_t slots = j == pages - 1 ? c.kv_last_page_len[b] : cfg.page_size;
      for (int32_t slot = 0; slot < slots; ++slot)
        for (int32_t h = 0; h < cfg.num_kv_heads; ++h)
          mark_used(ref::paged_row_offset(cfg.kv_layout, cfg.page_size, cfg.num_kv_heads, cfg.head_dim, page, slot, h),
                    cfg.head_dim);
    }
  }
  return unused;
}

uint32_t float_slot_poison(int64_t index, uint64_t seed) {
  static constexpr uint32_t kPoison[4] = {kFloatQuietNaN, pattern::kAllOnes, kFloatNegInf, kFloatPosInf};
  return kPoison[(uint64_t(index) + seed) % 4];
}

void scrub_gpu_state() {
  pollute_shared_memory(0);
  pollute_registers({"zero", 0, false}, 0);
}

CaseSpecBuilder::CaseSpecBuilder(uint64_t seed, DType dtype, int32_t head_dim, int32_t qo_heads, int32_t kv_heads) {
  spec_.seed = seed;
  spec_.dtype = dtype;
  spec_.head_dim = head_dim;
  spec_.num_qo_heads = qo_heads;
  spec_.num_kv_heads = kv_heads;
}

CaseSpecBuilder& CaseSpecBuilder::paged(KvLayout layout, int32_t page_size) {
  spec_.format = KvFormat::kPaged;
  spec_.layout = layout;
  spec_.page_size = page_size;
  return *this;
}

CaseSpecBuilder& CaseSpecBuilder::ragged() {
  spec_.format = KvFormat::kRagged;
  return *this;
}

CaseSpecBuilder& CaseSpecBuilder::lengths(std::vector<int32_t> qo_lens, std::vector<int32_t> kv_lens) {
  spec_.qo_lens = std::move(qo_lens);
  spec_.kv_lens = std::move(kv_lens);
  return *this;
}

CaseSpecBuilder& CaseSpecBuilder::causal() {
  spec_.options.causal = true;
  return *this;
}

CaseSpecBuilder& CaseSpecBuilder::window(int32_t window_left) {
  spec_.options.window_left = window_left;
  return *this;
}

CaseSpecBuilder& CaseSpecBuilder::soft_cap(float cap) {
  spec_.options.logits_soft_cap = cap;
  return *this;
}

CaseSpecBuilder& CaseSpecBuilder::sm_scale(float scale) {
  spec_.options.sm_scale = scale;
  return *this;
}

CaseSpecBuilder& CaseSpecBuilder::peaked() {
  spec_.q_amplitude = 8.0f;
  return *this;
}

CaseSpecBuilder& CaseSpecBuilder::unused_slots_finite() {
  spec_.poison_unused = false;
  return *this;
}

void restore_case_kv(DevicePrefillCase& device) {
  const HostCase& c = device.host();
  if (!c.k.empty()) device.k().upload(c.k.data(), c.k.size() * sizeof(uint16_t));
  if (!c.v.empty()) device.v().upload(c.v.data(), c.v.size() * sizeof(uint16_t));
}

int polluter_variants(Polluter p) {
  switch (p) {
    case Polluter::kSmem:
    case Polluter::kRegs:
      return int(smem_patterns().size());
    case Polluter::kOutputs:
      return int(output_patterns().size());
    case Polluter::kCacheSlots:
      return 4;  // where the cycle of cache_slot_poison starts
    case Polluter::kPrevious:
      return int(previous_prefills().size());
    case Polluter::kL2:
    case Polluter::kSeed:
      return 1;
  }
  return 1;
}

std::string polluter_variant_name(Polluter p, uint64_t seed) {
  const std::string name = polluter_name(p);
  switch (p) {
    case Polluter::kSmem:
    case Polluter::kRegs:
      return name + "/" + smem_pattern(seed).name;
    case Polluter::kOutputs:
      return name + "/" + output_pattern(seed).name;
    case Polluter::kCacheSlots:
      return name + "/" + std::to_string(seed % 4);
    case Polluter::kPrevious:
      return name + "/" + previous_prefills()[seed % previous_prefills().size()].name;
    case Polluter::kL2:
    case Polluter::kSeed:
      return name;
  }
  return name;
}

bool run_state_polluter(Polluter p, uint64_t seed) {
  switch (p) {
    case Polluter::kSmem: {
      const FillPattern& fill = smem_pattern(seed);
      if (fill.random)
        pollute_shared_memory_random(seed);
      else
        pollute_shared_memory(fill.word);
      return true;
    }
    case Polluter::kRegs:
      pollute_registers(smem_pattern(seed), seed);
      return true;
    case Polluter::kL2:
      flush_l2();
      return true;
    case Polluter::kSeed:
      build_seed_rope_cache();
      return true;
    case Polluter::kPrevious:
      run_previous_prefill(seed);
      return true;
    case Polluter::kOutputs:
    case Polluter::kCacheSlots:
      return false;
  }
  return false;
}

void run_polluter(Polluter p, DevicePrefillCase& device, uint64_t seed) {
  if (run_state_polluter(p, seed)) return;
  if (p == Polluter::kOutputs) {
    const uint32_t word = output_pattern(seed).word;
    device.out().fill_u32(word);
    device.lse().fill_u32(word);
  } else if (p == Polluter::kCacheSlots) {
    poison_unused_slots(device, seed);
  }
  PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace ptxattn::testing
