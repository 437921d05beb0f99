// ptxattn-fuzz: shared pieces of the host-API fuzzer (tests/fuzz/fuzz_main.cpp
// says what it does and how to run it).
//
// Each fuzz target makes one random input, states the rules that input must
// satisfy (Rules, written here in wide integer arithmetic from README
// "Validation" and the API comments, never with the library's helpers), calls
// the library and hands both to Fuzzer::check, which reports any disagreement:
//   - the library accepted an input that breaks a rule;
//   - the library refused an input that breaks no rule;
//   - the library refused a bad input with a status code, or a message, that
//     matches none of the broken rules (the wrong argument blamed).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

#include "ptxattn/ptxattn.hpp"

namespace fuzz {

using ptxattn::Status;
using ptxattn::StatusCode;
using ptxattn::DType;

using i128 = __int128;

inline constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
inline constexpr int64_t kInt32Min = std::numeric_limits<int32_t>::min();
// The documented limit on per-request lengths and batch token counts (README "Validation").
inline constexpr int64_t kMaxTokens = int64_t(1) << 30;

// value modulo 2^32 as an int32, as a careless caller's arithmetic would wrap.
inline int32_t wrap32(int64_t value) { return int32_t(uint32_t(uint64_t(value))); }

// splitmix64: tiny, fast, and the same sequence on every platform, so a seed
// and a call index name one input for good.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); n > 0. The bias of the modulo is irrelevant here.
  uint64_t below(uint64_t n) { return next() % n; }
  // Uniform in [lo, hi].
  int64_t range(int64_t lo, int64_t hi) { return lo + int64_t(below(uint64_t(hi - lo) + 1)); }
  bool percent(int p) { return below(100) < uint64_t(p); }
  template <typename T>
  T pick(std::initializer_list<T> values) {
    return values.begin()[below(values.size())];
  }

  // Values where limits and off-by-one mistakes live.
  int32_t edge_int32();
  int64_t edge_int64();
  float edge_float();
  // An int32 that is usually small and sometimes an edge value.
  int32_t mostly_small(int32_t max_small);

 private:
  uint64_t state_;
};

// The seed of call `index` of a run seeded with `seed`: every call can be
// replayed alone (--start index --calls 1).
uint64_t call_seed(uint64_t seed, uint64_t index);

// One broken rule: its name (printed in reports), the status code a refusal
// for it must carry, and the argument names a refusal's message must mention
// one of ('|' separates them).
struct Broken {
  const char* rule;
  StatusCode code;
  const char* needles;
};

// The rules one input is held to. expect() records a rule as broken unless it holds.
class Rules {
 public:
  void expect(bool holds, const char* rule, StatusCode code, const char* needles) {
    if (!holds) broken_.push_back({rule, code, needles});
  }
  void invalid(bool holds, const char* rule, const char* needles) {
    expect(holds, rule, StatusCode::kInvalidArgument, needles);
  }
  bool ok() const { return broken_.empty(); }
  const std::vector<Broken>& broken() const { return broken_; }
  void append(const Rules& other) { broken_.insert(broken_.end(), other.broken_.begin(), other.broken_.end()); }

 private:
  std::vector<Broken> broken_;
};

// A struct_size as a C caller sets it: the struct's own mostly, another
// layout's sometimes; and the rule the C API holds it to (a struct of
// another layout is refused before anything else of it is read).
template <typename T>
uint32_t random_struct_size(Rng& rng) {
  return rng.percent(97) ? uint32_t(sizeof(T))
                         : rng.pick<uint32_t>({0, uint32_t(sizeof(T) - 4), uint32_t(sizeof(T) + 8), UINT32_MAX});
}
template <typename T>
void struct_size_rule(Rules& r, const T* arg, const char* rule) {
  r.invalid(arg == nullptr || arg->struct_size == sizeof(T), rule, "struct_size");
}

// Whether this build compiled a dtype (meson option dtypes): the defines the
// library sees, not its helpers; and a random one of those.
inline bool dtype_built(int dtype) {
#ifdef PTXATTN_ENABLE_BF16
  if (dtype == int(DType::kBF16)) return true;
#endif
#ifdef PTXATTN_ENABLE_FP16
  if (dtype == int(DType::kFP16)) return true;
#endif
  return false;
}
inline DType random_built_dtype(Rng& rng) {
  if (dtype_built(0) && dtype_built(1)) return DType(rng.below(2));
  return dtype_built(0) ? DType::kBF16 : DType::kFP16;
}

// Holds one indptr array to its three rules (not null, starts at 0, never
// decreasing); returns whether it is well formed, so its entries can be used
// as offsets. Shared by the prefill and append rule statements.
inline bool indptr_rules(const int32_t* indptr, int32_t n, Rules& r, const char* null_rule, const char* start_rule,
                         const char* order_rule, const char* needle) {
  r.invalid(indptr != nullptr, null_rule, needle);
  if (indptr == nullptr) return false;
  r.invalid(indptr[0] == 0, start_rule, needle);
  bool increasing = true;
  for (int32_t b = 0; b < n; ++b) increasing = increasing && indptr[b + 1] >= indptr[b];
  r.invalid(increasing, order_rule, needle);
  return indptr[0] == 0 && increasing;
}

// What an entry point must return for an input that breaks no rule.
enum class WhenValid {
  kOk,         // a check only, or a call with nothing to launch
  kLaunch,     // it launches a kernel: without a GPU, no_device or cuda_error
  kOkOrLaunch, // a plan: uploads when there is something to upload (ok with a GPU)
};

// Runs the calls and keeps the books.
class Fuzzer {
 public:
  Fuzzer(uint64_t seed, bool have_gpu, bool verbose, int max_reports)
      : seed_(seed), have_gpu_(have_gpu), verbose_(verbose), max_reports_(max_reports) {}

  // With a GPU, a call that the rules accept and that would launch a kernel is
  // not made: the fuzzer's tensors are made-up addresses. Returns whether to
  // make the call (and counts it as skipped otherwise).
  bool may_call(const char* entry, const Rules& rules, bool launches);

  // Compares the library's answer with the rules; `input` describes the
  // input, for reports (called only when one is printed).
  void check(const char* entry, const Status& got, const Rules& rules, WhenValid when_valid,
             const std::function<std::string()>& input);
  // A property that must hold whatever the rules say (a plan's reported
  // counts, a C message, the C and C++ answers agreeing).
  void require(bool holds, const char* entry, const char* property, const std::function<std::string()>& details);

  void begin_call(uint64_t index, const char* target);
  // Prints the input of this call before it is made (--verbose).
  void show(const std::function<std::string()>& input) const;

  bool have_gpu() const { return have_gpu_; }
  uint64_t mismatches() const { return mismatches_; }
  void print_summary() const;

 private:
  struct EntryStats {
    uint64_t accepted = 0, refused = 0, skipped = 0, mismatches = 0;
  };
  struct RuleStats {
    uint64_t broken = 0;     // inputs that broke it
    uint64_t alone = 0;      // ... and no other rule: the library's check of it was tested by itself
    uint64_t disagreed = 0;  // disagreements in which it was broken
  };
  void report(const char* entry, const std::string& what, const std::string& details);

  uint64_t seed_;
  bool have_gpu_, verbose_;
  int max_reports_;
  uint64_t call_index_ = 0, mismatches_ = 0;
  const char* target_ = "";
  std::unordered_map<std::string, EntryStats> entries_;
  std::unordered_map<std::string, RuleStats> rules_;
};

// ---- Made-up device addresses (never dereferenced) ----

// A tensor's place for the aliasing and alignment rules: [address, address + bytes).
struct Span {
  uintptr_t address;
  i128 bytes;
};

// Whether two byte ranges share a byte: empty or null ranges share none.
// Exact for any address and size (no wrap-around at the top of the space).
bool overlaps(const Span& a, const Span& b);

// Places `count` tensors of the given sizes: apart, back to back (touching,
// not overlapping), all inside one block of memory, or anywhere (null,
// misaligned, near the top of the address space); then, sometimes, moves one
// onto, into or next to another. Returns the addresses.
std::vector<uintptr_t> place_tensors(Rng& rng, const std::vector<i128>& bytes);

inline const void* as_pointer(uintptr_t address) { return reinterpret_cast<const void*>(address); }
inline void* as_mutable_pointer(uintptr_t address) { return reinterpret_cast<void*>(address); }

// ---- Printing inputs ----
std::string hex(uintptr_t address);
std::string list(const int32_t* values, int64_t count);  // "null" or "[a, b, ...]" (long lists cut short)
std::string code_name(StatusCode code);
std::string float_text(float value);

// ---- C answers ----
// The C answer as a Status: the code, and this thread's message after a
// failure (which must be there, as the code must be a StatusCode).
Status c_status(Fuzzer& fuzzer, const char* entry, int code);
// The C call answered as its C++ twin: the same code, and the same message on a failure.
void same_answer(Fuzzer& fuzzer, const char* entry, const Status& c, const Status& cpp,
                 const std::function<std::string()>& input);

// ---- Targets (fuzz_prefill.cpp, fuzz_rope.cpp, fuzz_merge.cpp) ----
// Every target makes one input from `rng`, calls the entry points it covers and checks them.
void fuzz_prefill(Rng& rng, Fuzzer& fuzzer);         // validate_*, plan_prefill, run_prefill (C++)
void fuzz_prefill_tensors(Rng& rng, Fuzzer& fuzzer); // validate_prefill_tensors
void fuzz_workspace(Rng& rng, Fuzzer& fuzzer);       // prefill_workspace_size, and batches within a capacity
void fuzz_prefill_c_api(Rng& rng, Fuzzer& fuzzer);   // ptxattn_plan_prefill, ptxattn_run_prefill
void fuzz_kv_block_range(Rng& rng, Fuzzer& fuzzer);  // the plan's per-tile key range
void fuzz_rope(Rng& rng, Fuzzer& fuzzer);            // validate_rope_config, apply_rope, the cache functions
void fuzz_rope_c_api(Rng& rng, Fuzzer& fuzzer);      // their C mirrors
void fuzz_append(Rng& rng, Fuzzer& fuzzer);          // validate_append_indices, plan_append_paged_kv, append
void fuzz_rope_work_split(Rng& rng, Fuzzer& fuzzer); // how a RoPE launch splits its work
void fuzz_merge(Rng& rng, Fuzzer& fuzzer);           // merge_states, merge_state and their C mirrors
void fuzz_misc(Rng& rng, Fuzzer& fuzzer);            // status names, C init/create/destroy with NULL

}  // namespace fuzz
