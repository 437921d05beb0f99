// The state polluters of the pollution matrix (docs/validation.md "Pollution
// matrix"): each leaves the GPU in a state a correct kernel must not notice,
// and runs right before the kernel under test. Shared by the matrix test
// (tests/gpu/test_pollution_gpu.cu) and the validator CLI (--pollute).
//
//   smem         every SM's whole shared memory filled with one pattern
//   regs         every SM's register file filled with one pattern, also under
//                the prefill kernels' setmaxnreg split
//   outputs      o and lse filled with a pattern other than the runner's NaN
//   cache-slots  a new poison in every K/V slot the case does not own
//   l2           L2 flushed by writing a buffer larger than it
//   seed         the FlashInfer #1018 scenario: the RoPE cos/sin cache build
//   previous     a different real prefill run just before
//
// A polluter with several patterns picks one by `seed` (seed % variants), so
// running seeds 0 .. polluter_variants(p) - 1 uses every pattern once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/testdata.hpp"
#include "tests/common/gpu_test.hpp"
#include "tests/common/prefill_runner.hpp"

namespace ptxattn::testing {

enum class Polluter { kSmem, kRegs, kOutputs, kCacheSlots, kL2, kSeed, kPrevious };

const std::vector<Polluter>& all_polluters();
// "smem", "regs", "outputs", "cache-slots", "l2", "seed", "previous".
const char* polluter_name(Polluter p);

// "all", or a comma-separated list of polluter names (duplicates kept once,
// in the order given). On failure returns false and names the bad entry.
bool parse_polluter_list(const std::string& text, std::vector<Polluter>* out, std::string* error);

// Runs `p` right before the kernel under test: inside DevicePrefillCase::run's
// before_run, after its NaN poisoning of o and lse. kOutputs rewrites the
// case's o and lse; kCacheSlots rewrites its unused K/V slots and leaves them
// so (restore_case_kv undoes it); the others do not touch the case.
// Synchronises; throws std::runtime_error on a CUDA failure.
void run_polluter(Polluter p, DevicePrefillCase& device, uint64_t seed);

// The polluters that need no case (smem, regs, l2, seed, previous): runs `p`
// and returns true. Returns false, doing nothing, for outputs and cache-slots
// (the caller owns those buffers: RoPE cases use the patterns below).
bool run_state_polluter(Polluter p, uint64_t seed);

// How many distinct patterns `p` has (1 for those without a choice).
int polluter_variants(Polluter p);
// "smem/sNaN", "outputs/-Inf", "l2": the polluter and the pattern `seed` picks.
std::string polluter_variant_name(Polluter p, uint64_t seed);

// A fill pattern: one 32-bit word repeated, or (random) bits from a hash of
// the seed and the position.
struct FillPattern {
  const char* name;
  uint32_t word;
  bool random;
};
const std::vector<FillPattern>& smem_patterns();    // qNaN, sNaN, ±Inf (bf16 and fp16), 0xFFFF, random
const std::vector<FillPattern>& output_patterns();  // ±Inf (bf16, fp16, f32), 0xFFFF
const FillPattern& smem_pattern(uint64_t seed);
const FillPattern& output_pattern(uint64_t seed);

// The cache-slots poison of element `index` of a 16-bit tensor: all-ones,
// signalling NaN, -Inf and +Inf of `dtype` in turn, starting where `seed`
// says (a different layout from the generator's, reference/testdata.cpp).
uint16_t cache_slot_poison(DType dtype, int64_t index, uint64_t seed);

// Marks the elements of the case's K/V storage that no request owns: unused
// pool pages, the tail slots of each last page (paged), the padding rows
// after the last request (ragged). One flag per element of HostCase::k.
std::vector<bool> unused_kv_elements(const HostCase& c);

// The same for a float32 tensor (the RoPE cos/sin cache): qNaN, all-ones,
// -Inf, +Inf in turn.
uint32_t float_slot_poison(int64_t index, uint64_t seed);

// Uploads the case's K and V again (undoes kCacheSlots).
void restore_case_kv(DevicePrefillCase& device);

// The clean baseline: zeros over every SM's shared memory and register file
// (the smem and regs polluters' kernels with a zero word), so a clean run
// never inherits the dirt of an earlier polluter.
void scrub_gpu_state();

// A CaseSpec in one expression, e.g.
//   CaseSpecBuilder(7, DType::kBF16, 128, 4, 1).paged(KvLayout::kHND, 7).lengths({1, 150}, {20, 1000}).causal()
// Starts from CaseSpec's defaults (paged NHD, page 16, unused slots poisoned).
class CaseSpecBuilder {
 public:
  CaseSpecBuilder(uint64_t seed, DType dtype, int32_t head_dim, int32_t qo_heads, int32_t kv_heads);
  CaseSpecBuilder& paged(KvLayout layout, int32_t page_size);
  CaseSpecBuilder& ragged();
  CaseSpecBuilder& lengths(std::vector<int32_t> qo_lens, std::vector<int32_t> kv_lens);
  CaseSpecBuilder& causal();
  CaseSpecBuilder& window(int32_t window_left);
  CaseSpecBuilder& soft_cap(float cap);
  CaseSpecBuilder& sm_scale(float scale);
  CaseSpecBuilder& peaked();               // q_amplitude 8: sharp softmax rows
  CaseSpecBuilder& unused_slots_finite();  // random finite values where poison would go
  const CaseSpec& spec() const { return spec_; }
  operator const CaseSpec&() const { return spec_; }

 private:
  CaseSpec spec_;
};

}  // namespace ptxattn::testing
