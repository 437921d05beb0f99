// ptxattn-fuzz: a deterministic fuzzer of ptxattn's host entry points.
//
//   ptxattn-fuzz [--seed S] [--calls N] [--start K] [--target NAME] [--verbose] [--max-reports M]
//
// Makes N calls (K, K+1, ... K+N-1; default 0..99999, seed 1). Call i draws
// its input from its own random stream, derived from (S, i) with splitmix64,
// so `--seed S --start i --calls 1 --verbose` replays call i alone and prints
// its input. Each call picks a target (--target restricts it to one; names
// below) and feeds one random input to the entry points that target covers:
// mostly valid inputs with a few values changed to edge cases (INT32_MIN/MAX,
// -1, 0, values next to every limit, huge page counts, null and misaligned
// pointers, decreasing indptr, repeated pages, NaN and infinite floats, enum
// values outside their enum, C booleans other than 0 and 1).
//
// Every answer is checked against the fuzzer's own statement of the rules
// (fuzz.hpp, class Rules): a valid input must be accepted, an invalid one
// refused with a status code and message that match a broken rule. Entry
// points that launch a kernel after validating are called too: without a GPU
// a valid call must end in no_device or cuda_error. With a GPU, valid calls
// that would launch are skipped (the tensors are made-up addresses).
//
// Output: each disagreement (the first M in full: rule, library answer, input,
// the command that replays it), then a table of entry points and one of rules
// (how often each was broken, broken alone, and broken in a disagreement).
// Exit status 0 when there was no disagreement, 1 otherwise, 2 for bad
// arguments. Under the sanitizers (build-asan/, scripts/test.sh) a sanitizer
// report stops the run; the line after it names the call to replay.
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <sstream>
#include <string>

#include "fuzz.hpp"

// Set by the sanitizer runtimes; null in a build without them.
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace fuzz {

// ---------------------------------------------------------------------------
// Random values
// ---------------------------------------------------------------------------

int32_t Rng::edge_int32() {
  static constexpr int32_t kEdges[] = {
      INT32_MIN, INT32_MIN + 1, -65537, -1025, -2, -1, 0, 1, 2, 3, 7, 8, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255,
      256, 257, 1023, 1024, 1025, 65535, 65536, 65537, 1 << 20, (1 << 30) - 1, 1 << 30, (1 << 30) + 1,
      INT32_MAX / 2, INT32_MAX / 2 + 1, INT32_MAX - 1, INT32_MAX};
  if (percent(10)) return int32_t(next());
  return kEdges[below(sizeof(kEdges) / sizeof(kEdges[0]))];
}

int64_t Rng::edge_int64() {
  static constexpr int64_t kEdges[] = {INT64_MIN, INT64_MIN + 1, -(int64_t(1) << 31) - 1, -1, int64_t(1) << 31,
                                       (int64_t(1) << 32) + 1, int64_t(1) << 33, int64_t(1) << 62, INT64_MAX - 1,
                                       INT64_MAX};
  if (percent(50)) return edge_int32();
  if (percent(10)) return int64_t(next());
  return kEdges[below(sizeof(kEdges) / sizeof(kEdges[0]))];
}

float Rng::edge_float() {
  static const float kEdges[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 1e-45f, -1e-45f, 1.17549435e-38f, 3.40282347e38f,
                                 -3.40282347e38f, INFINITY, -INFINITY, NAN, -NAN, 1e4f, 5e5f, 1e-30f, 1e30f, 8.0f};
  if (percent(10)) {
    const uint32_t bits = uint32_t(next());
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }
  return kEdges[below(sizeof(kEdges) / sizeof(kEdges[0]))];
}

int32_t Rng::mostly_small(int32_t max_small) { return percent(80) ? int32_t(range(0, max_small)) : edge_int32(); }

uint64_t call_seed(uint64_t seed, uint64_t index) {
  Rng mix(seed);
  Rng per_call(mix.next() + index * 0xD1B54A32D192ED03ull);
  return per_call.next();
}

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

bool overlaps(const Span& a, const Span& b) {
  if (a.address == 0 || b.address == 0 || a.bytes <= 0 || b.bytes <= 0) return false;
  const i128 a_begin = a.address, b_begin = b.address;
  return a_begin < b_begin + b.bytes && b_begin < a_begin + a.bytes;
}

std::vector<uintptr_t> place_tensors(Rng& rng, const std::vector<i128>& bytes) {
  const size_t n = bytes.size();
  std::vector<uintptr_t> at(n);
  // Sizes as address steps: modular, like the addresses themselves.
  auto step = [&](size_t i) { return bytes[i] > 0 ? uintptr_t(uint64_t(bytes[i])) : uintptr_t(0); };
  switch (rng.below(4)) {
    case 0:  // far apart
      for (size_t i = 0; i < n; ++i) at[i] = (uintptr_t(i + 1) << 44) + 16 * uintptr_t(rng.below(1024));
      break;
    case 1: {  // back to back in a random order: each ends where the next begins
      std::vector<size_t> order(n);
      for (size_t i = 0; i < n; ++i) order[i] = i;
      for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
      uintptr_t next = uintptr_t(0x100000) * (1 + rng.below(64));
      for (size_t i : order) {
        at[i] = next;
        next += step(i);
      }
      break;
    }
    case 2:  // inside one 1 MiB block: overlaps are likely
      for (size_t i = 0; i < n; ++i) at[i] = 0x7f0000000000ull + 16 * uintptr_t(rng.below(65536));
      break;
    default:  // anywhere
      for (size_t i = 0; i < n; ++i) {
        switch (rng.below(6)) {
          case 0: at[i] = 0; break;
          case 1: at[i] = 16 * uintptr_t(1 + rng.below(1 << 20)); break;
          case 2: at[i] = 16 * uintptr_t(1 + rng.below(1 << 20)) + uintptr_t(rng.range(1, 15)); break;
          case 3: at[i] = ~uintptr_t(15) - 16 * uintptr_t(rng.below(4)); break;  // the last 16-byte slots
          case 4: at[i] = uintptr_t(rng.next()) & ~uintptr_t(15); break;
          default: at[i] = uintptr_t(rng.next()); break;
        }
      }
      break;
  }
  for (size_t i = 0; i < n; ++i)
    if (rng.percent(8)) at[i] = 0;
  if (n >= 2 && rng.percent(35)) {  // one tensor onto, into or next to another
    const size_t i = rng.below(n), j = rng.below(n);
    switch (rng.below(7)) {
      case 0: at[i] = at[j]; break;
      case 1: at[i] = at[j] + step(j); break;                       // just after j
      case 2: at[i] = at[j] + step(j) - 16; break;                  // over j's last 16 bytes
      case 3: at[i] = at[j] - step(i); break;                       // just before j
      case 4: at[i] = at[j] - step(i) + 16; break;                  // over j's first 16 bytes
      case 5: at[i] = at[j] + 16 * uintptr_t(rng.below(64)); break; // somewhere early in j
      default: at[i] += uintptr_t(rng.range(1, 15)); break;         // misaligned
    }
  }
  return at;
}

// ---------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------

std::string hex(uintptr_t address) {
  char text[24];
  std::snprintf(text, sizeof(text), "0x%" PRIxPTR, address);
  return text;
}

std::string list(const int32_t* values, int64_t count) {
  if (values == nullptr) return "null";
  std::ostringstream out;
  out << "[";
  constexpr int64_t kHead = 16, kTail = 4;
  for (int64_t i = 0; i < count; ++i) {
    if (count > kHead + kTail && i == kHead) {
      out << ", ... (" << count << " entries) ...";
      i = count - kTail;
    }
    out << (i == 0 ? "" : ", ") << values[i];
  }
  out << "]";
  return out.str();
}

std::string code_name(StatusCode code) { return ptxattn::status_code_name(code); }

Status c_status(Fuzzer& fuzzer, const char* entry, int code) {
  fuzzer.require(code >= PTXATTN_STATUS_OK && code <= PTXATTN_STATUS_NO_DEVICE, entry,
                 "the C status is a ptxattn::StatusCode (no exception reached the C boundary)",
                 [&] { return std::to_string(code) + ": " + ptxattn_last_error_message(); });
  if (code == PTXATTN_STATUS_OK) return Status::Ok();
  const std::string message = ptxattn_last_error_message();
  fuzzer.require(!message.empty(), entry, "a failed C call leaves a message", [&] { return std::to_string(code); });
  return {StatusCode(code), message};
}

void same_answer(Fuzzer& fuzzer, const char* entry, const Status& c, const Status& cpp,
                 const std::function<std::string()>& input) {
  fuzzer.require(c.code == cpp.code && (c.ok() || c.message == cpp.message), entry, "the C API answers as the C++ API",
                 [&] {
                   return input() + "\n    C: " + code_name(c.code) + " \"" + c.message + "\"; C++: " +
                          code_name(cpp.code) + " \"" + cpp.message + "\"";
                 });
}

std::string float_text(float value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.9g", double(value));
  return text;
}

// ---------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------

namespace {

// Statuses that mean "the arguments passed validation".
bool passed_validation(StatusCode code) {
  return code == StatusCode::kOk || code == StatusCode::kNoDevice || code == StatusCode::kCudaError;
}

bool names_any(const std::string& message, const char* needles) {
  std::string needle;
  for (const char* c = needles;; ++c) {
    if (*c == '|' || *c == '\0') {
      if (!needle.empty() && message.find(needle) != std::string::npos) return true;
      needle.clear();
      if (*c == '\0') return false;
    } else {
      needle += *c;
    }
  }
}

std::string describe_broken(const std::vector<Broken>& broken) {
  std::string text;
  for (const Broken& b : broken)
    text += std::string("\n    rule \"") + b.rule + "\" (a refusal says " + code_name(b.code) + " and names " +
            b.needles + ")";
  return text;
}

std::string describe_status(const Status& status) {
  return code_name(status.code) + (status.message.empty() ? "" : ": \"" + status.message + "\"");
}

}  // namespace

bool Fuzzer::may_call(const char* entry, const Rules& rules, bool launches) {
  if (have_gpu_ && launches && rules.ok()) {
    ++entries_[entry].skipped;
    return false;
  }
  return true;
}

void Fuzzer::check(const char* entry, const Status& got, const Rules& rules, WhenValid when_valid,
                   const std::function<std::string()>& input) {
  EntryStats& stats = entries_[entry];
  const std::vector<Broken>& broken = rules.broken();
  for (const Broken& b : broken) {
    RuleStats& rule = rules_[b.rule];
    ++rule.broken;
    if (broken.size() == 1) ++rule.alone;
  }
  const bool refused = !passed_validation(got.code);
  ++(refused ? stats.refused : stats.accepted);

  if (rules.ok()) {
    bool expected = false;
    switch (when_valid) {
      case WhenValid::kOk: expected = got.code == StatusCode::kOk; break;
      case WhenValid::kLaunch:
        expected = have_gpu_ ? got.code == StatusCode::kOk
                             : got.code == StatusCode::kNoDevice || got.code == StatusCode::kCudaError;
        break;
      case WhenValid::kOkOrLaunch: expected = passed_validation(got.code); break;
    }
    if (!expected) {
      RuleStats& none = rules_[refused ? "(no rule: the library refused a valid input)" : "(no rule: unexpected status)"];
      ++none.broken;
      ++none.disagreed;
      report(entry,
             "no rule of the fuzzer's is broken, but the library answered " + describe_status(got) +
                 (refused ? "\n  (a rule the fuzzer does not know, or a valid input refused)" : ""),
             input());
    }
    return;
  }
  if (!refused) {
    for (const Broken& b : broken) ++rules_[b.rule].disagreed;
    report(entry, "the library accepted (" + code_name(got.code) + ") an input that breaks" + describe_broken(broken),
           input());
    return;
  }
  for (const Broken& b : broken)
    if (b.code == got.code && names_any(got.message, b.needles)) return;
  for (const Broken& b : broken) ++rules_[b.rule].disagreed;
  report(entry,
         "the library refused with " + describe_status(got) + "\n  which matches none of the broken rules" +
             describe_broken(broken),
         input());
}

void Fuzzer::require(bool holds, const char* entry, const char* property,
                     const std::function<std::string()>& details) {
  if (holds) return;
  RuleStats& rule = rules_[std::string("(property) ") + property];
  ++rule.broken;
  ++rule.disagreed;
  report(entry, std::string("property does not hold: ") + property, details());
}

void Fuzzer::report(const char* entry, const std::string& what, const std::string& details) {
  ++mismatches_;
  ++entries_[entry].mismatches;
  if (int64_t(mismatches_) > max_reports_) {
    if (int64_t(mismatches_) == max_reports_ + 1)
      std::printf("(further disagreements are counted, not printed: --max-reports)\n");
    return;
  }
  std::printf("DISAGREEMENT #%" PRIu64 " in %s (call %" PRIu64 ", target %s):\n  %s\n  input: %s\n"
              "  replay: ptxattn-fuzz --seed %" PRIu64 " --start %" PRIu64 " --calls 1 --verbose\n",
              mismatches_, entry, call_index_, target_, what.c_str(), details.c_str(), seed_, call_index_);
  std::fflush(stdout);
}

void Fuzzer::begin_call(uint64_t index, const char* target) {
  call_index_ = index;
  target_ = target;
}

void Fuzzer::show(const std::function<std::string()>& input) const {
  if (verbose_) std::printf("call %" PRIu64 " (%s): %s\n", call_index_, target_, input().c_str());
}

void Fuzzer::print_summary() const {
  std::printf("%-40s %10s %10s %10s %12s\n", "entry point", "accepted", "refused", "skipped", "disagreements");
  for (const auto& [name, s] : std::map<std::string, EntryStats>(entries_.begin(), entries_.end()))
    std::printf("%-40s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %12" PRIu64 "\n", name.c_str(), s.accepted,
                s.refused, s.skipped, s.mismatches);
  std::printf("\n%-78s %9s %9s %9s\n", "rule", "broken", "alone", "disagreed");
  for (const auto& [name, s] : std::map<std::string, RuleStats>(rules_.begin(), rules_.end()))
    std::printf("%-78s %9" PRIu64 " %9" PRIu64 " %9" PRIu64 "\n", name.c_str(), s.broken, s.alone, s.disagreed);
}

}  // namespace fuzz

namespace {

struct Target {
  const char* name;
  void (*run)(fuzz::Rng&, fuzz::Fuzzer&);
  int weight;
};

constexpr Target kTargets[] = {
    {"prefill", fuzz::fuzz_prefill, 30},
    {"prefill_tensors", fuzz::fuzz_prefill_tensors, 12},
    {"workspace", fuzz::fuzz_workspace, 6},
    {"prefill_c_api", fuzz::fuzz_prefill_c_api, 10},
    {"kv_block_range", fuzz::fuzz_kv_block_range, 4},
    {"rope", fuzz::fuzz_rope, 16},
    {"rope_c_api", fuzz::fuzz_rope_c_api, 8},
    {"append", fuzz::fuzz_append, 16},
    {"rope_work_split", fuzz::fuzz_rope_work_split, 3},
    {"merge", fuzz::fuzz_merge, 10},
    {"misc", fuzz::fuzz_misc, 1},
};

// What the death callback prints: the call a sanitizer stopped.
uint64_t g_seed = 0, g_call = 0;
const char* g_target = "";

// GCC links ASan and UBSan as two libraries, each with its own death
// callback; the weak symbol reaches the first, dlsym the other.
void set_death_callbacks(void (*callback)(void)) {
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(callback);
  if (void* ubsan = dlopen("libubsan.so.1", RTLD_LAZY | RTLD_NOLOAD)) {
    if (void* set = dlsym(ubsan, "__sanitizer_set_death_callback"))
      reinterpret_cast<void (*)(void (*)(void))>(set)(callback);
    dlclose(ubsan);
  }
}

void on_sanitizer_death() {
  std::fprintf(stderr,
               "ptxattn-fuzz: a sanitizer stopped call %" PRIu64 " (target %s); replay it with: "
               "ptxattn-fuzz --seed %" PRIu64 " --start %" PRIu64 " --calls 1 --verbose\n",
               g_call, g_target, g_seed, g_call);
}

bool parse_u64(const char* text, uint64_t* value) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long parsed = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-') return false;
  *value = parsed;
  return true;
}

int usage(const char* message) {
  std::fprintf(stderr, "ptxattn-fuzz: %s\nusage: ptxattn-fuzz [--seed S] [--calls N] [--start K] [--target NAME] "
                       "[--verbose] [--max-reports M]\ntargets:", message);
  for (const Target& t : kTargets) std::fprintf(stderr, " %s", t.name);
  std::fprintf(stderr, "\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = 1, calls = 100000, start = 0, max_reports = 20;
  bool verbose = false;
  const Target* only = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--verbose") {
      verbose = true;
    } else if (arg == "--target" && has_value) {
      const char* name = argv[++i];
      for (const Target& t : kTargets)
        if (std::strcmp(t.name, name) == 0) only = &t;
      if (only == nullptr) return usage("unknown target");
    } else if ((arg == "--seed" || arg == "--calls" || arg == "--start" || arg == "--max-reports") && has_value) {
      uint64_t value = 0;
      if (!parse_u64(argv[++i], &value)) return usage(("bad number for " + arg).c_str());
      (arg == "--seed" ? seed : arg == "--calls" ? calls : arg == "--start" ? start : max_reports) = value;
    } else {
      return usage(("unknown argument " + arg).c_str());
    }
  }

  if (calls == 0) return usage("--calls must be at least 1");

  int devices = 0;
  const bool have_gpu = cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
  std::printf("ptxattn-fuzz: seed %" PRIu64 ", calls %" PRIu64 "..%" PRIu64 ", %s\n", seed, start, start + calls - 1,
              have_gpu ? "a CUDA GPU is present: valid calls that would launch a kernel are skipped"
                       : "no CUDA GPU: valid calls that launch a kernel must fail with no_device or cuda_error");
  std::fflush(stdout);
  g_seed = seed;
  set_death_callbacks(on_sanitizer_death);

  int total_weight = 0;
  for (const Target& t : kTargets) total_weight += t.weight;
  fuzz::Fuzzer fuzzer(seed, have_gpu, verbose, int(max_reports));
  const auto begin = std::chrono::steady_clock::now();
  for (uint64_t index = start; index < start + calls; ++index) {
    fuzz::Rng rng(fuzz::call_seed(seed, index));
    // The ticket is drawn even with --target, so that the rest of the stream is the same.
    int64_t ticket = int64_t(rng.below(uint64_t(total_weight)));
    const Target* target = only;
    for (const Target& t : kTargets) {
      if (target != nullptr) break;
      if (ticket < t.weight) target = &t;
      ticket -= t.weight;
    }
    g_call = index;
    g_target = target->name;
    fuzzer.begin_call(index, target->name);
    try {
      target->run(rng, fuzzer);
    } catch (const std::exception& e) {
      fuzzer.require(false, target->name, "no exception escapes the API", [&] { return std::string(e.what()); });
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();

  std::printf("\n");
  fuzzer.print_summary();
  std::printf("\nptxattn-fuzz: %" PRIu64 " calls in %.1f s, %" PRIu64 " disagreements\n", calls, seconds,
              fuzzer.mismatches());
  return fuzzer.mismatches() == 0 ? 0 : 1;
}
