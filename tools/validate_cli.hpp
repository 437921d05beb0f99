// ptxattn-validate: what to run. The command line (hand-parsed, every error
// names the flag and the value), the presets, and the way back from a case
// to the flags that reproduce it alone (the re-run line of a failure).
// docs/validator.md documents every flag.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/testdata.hpp"
#include "tests/common/polluters.hpp"

namespace ptxattn::validator {

enum class RopeMode { kNone, kNeox, kInterleave };

// The RoPE accuracy contract (ptxattn.hpp) covers angles below 2^24 radians:
// positions below 2^24 at the highest frequency (1 radian per position).
inline constexpr int32_t kMaxRopePosition = 1 << 24;

// The RoPE check of a case (validate_rope.hpp): rotates the case's queries
// and keys generated for the same tokens, at the tokens' positions.
struct RopeSpec {
  RopeMode mode = RopeMode::kNone;
  bool use_cache = false;          // build_rope_cos_sin_cache + apply_rope_with_cos_sin_cache
  int32_t rotary_dim = 0;          // 0: head_dim
  float theta = 1e4f;
  float scale = 1.0f;              // rope_scale (the Llama factor with llama31)
  bool llama31 = false;            // Llama-3.1 smoothing with its published factors (1, 4, 8192)
  int32_t position_offset = 0;     // added to every token's position, <= 2^24
};

// One case: the attention data, its optional RoPE check, and polluters the
// case always runs (the seed preset's RoPE cache build) besides --pollute.
struct ValidateCase {
  testing::CaseSpec spec;
  RopeSpec rope;
  std::vector<testing::Polluter> forced_polluters;
};

// Which load paths each case runs through.
enum class PathChoice { kEach, kAuto, kTma, kGather };

// Which work schedules each case runs under (WorkSchedule).
enum class ScheduleSelection { kAll, kAuto, kOneItemPerCta, kPersistent, kDynamic };

struct Options {
  bool help = false;
  bool list = false;           // print the cases as flags, run nothing
  std::string preset;          // "" with a single case from flags
  ValidateCase single;         // the single case (when preset is empty)
  PathChoice path = PathChoice::kEach;
  ScheduleSelection schedule = ScheduleSelection::kAll;
  int32_t max_ctas = 0;        // config.max_ctas of the persistent, dynamic and auto runs (0: one CTA per SM)
  int32_t kv_splits = 0;       // config.kv_splits of every prefill run (0: the plan's rule)
  GqaPacking gqa_packing = GqaPacking::kAuto;  // config.gqa_packing of every prefill run
  int32_t kv_stages = 0;       // config.kv_stages of every prefill run (0: the head dim's ring)
  std::vector<testing::Polluter> polluters;
  uint64_t pollute_seed = 0;   // pattern choice of the first run; presets add the case index
  int32_t repeat = 1;
  uint64_t seed = 1;           // single case: data seed; presets: base of every case's seed
  std::string json_path;
  int32_t threads = 0;         // CPU reference threads; 0: all
  bool only_failures = false;  // table: print failing rows only
  bool no_progress = false;    // presets: no progress line on stderr
};

// Parses argv[1..argc). Returns "" or an error naming the flag and value.
std::string parse_options(int argc, char** argv, Options* options);

// The complete --help text.
std::string usage_text(const char* program);

const std::vector<std::string>& preset_names();
// The cases of `options.preset` (or the single case). Head dims and dtypes
// this library was not built with are left out of the presets' random
// cases; `notes` says what was left out.
std::vector<ValidateCase> make_cases(const Options& options, std::string* notes);

// Flags that make `ptxattn-validate` build exactly this case alone
// (without --path/--schedule/--max-ctas/--kv-splits/--gqa-packing/--kv-stages/--pollute/--repeat,
// which the caller adds).
std::string case_flags(const ValidateCase& c);

const char* rope_mode_name(RopeMode mode);
const char* path_choice_name(PathChoice path);
// The --schedule value: "all", "auto", "one-item-per-cta", "persistent" or "dynamic".
const char* schedule_selection_name(ScheduleSelection schedule);
// The --gqa-packing value: "auto", "off" or "on".
const char* gqa_packing_name(GqaPacking packing);
// " --kv-splits=N --gqa-packing=X --kv-stages=S" for the plan options that
// are not the default ("" when none is).
std::string plan_option_flags(const Options& options);

}  // namespace ptxattn::validator
