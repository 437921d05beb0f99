// ptxattn-validate command line and presets (see validate_cli.hpp).
#include "tools/validate_cli.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>

#include "prefill_params.hpp"  // kMaxKvSplits

namespace ptxattn::validator {
namespace {

using testing::CaseSpec;
using testing::Polluter;
using testing::RandomLimits;

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

std::string bad_value(const std::string& flag, const std::string& text, const std::string& expected) {
  return flag + ": '" + text + "' is not " + expected;
}

std::string parse_int64(const std::string& flag, const std::string& text, int64_t lo, int64_t hi, int64_t* out) {
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || value < lo || value > hi)
    return bad_value(flag, text, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  *out = value;
  return "";
}

std::string parse_int32(const std::string& flag, const std::string& text, int32_t lo, int32_t hi, int32_t* out) {
  int64_t value = 0;
  std::string error = parse_int64(flag, text, lo, hi, &value);
  *out = int32_t(value);
  return error;
}

std::string parse_uint64(const std::string& flag, const std::string& text, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || text[0] == '-' || *end != '\0' || errno == ERANGE)
    return bad_value(flag, text, "an unsigned 64-bit integer");
  *out = value;
  return "";
}

// A finite float >= lo (strict when `strict`).
std::string parse_float(const std::string& flag, const std::string& text, float lo, bool strict, float* out) {
  char* end = nullptr;
  errno = 0;
  const float value = std::strtof(text.c_str(), &end);
  const bool in_range = strict ? value > lo : value >= lo;
  if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(value) || !in_range)
    return bad_value(flag, text, std::string("a finite number ") + (strict ? "> " : ">= ") + std::to_string(lo));
  *out = value;
  return "";
}

// "128,7,0": lengths >= 0.
std::string parse_lengths(const std::string& flag, const std::string& text, std::vector<int32_t>* out) {
  out->clear();
  size_t begin = 0;
  while (true) {
    const size_t end = std::min(text.find(',', begin), text.size());
    int32_t length = 0;
    const std::string item = text.substr(begin, end - begin);
    if (!parse_int32(flag, item, 0, INT32_MAX, &length).empty())
      return bad_value(flag, text, "a comma-separated list of lengths >= 0 ('" + item + "' is not one)");
    out->push_back(length);
    if (end == text.size()) return "";
    begin = end + 1;
  }
}

// "8/2" (qo/kv) or "8" (as many kv heads as qo heads).
std::string parse_heads(const std::string& flag, const std::string& text, CaseSpec* spec) {
  const size_t slash = text.find('/');
  const std::string expected = "QO/KV head counts (e.g. 8/2), QO a positive multiple of KV";
  int32_t qo = 0, kv = 0;
  if (!parse_int32(flag, text.substr(0, slash), 1, 4096, &qo).empty()) return bad_value(flag, text, expected);
  kv = qo;
  if (slash != std::string::npos && !parse_int32(flag, text.substr(slash + 1), 1, 4096, &kv).empty())
    return bad_value(flag, text, expected);
  if (qo % kv != 0) return bad_value(flag, text, expected);
  spec->num_qo_heads = qo;
  spec->num_kv_heads = kv;
  return "";
}

// One of `choices`; *index is its position.
std::string parse_choice(const std::string& flag, const std::string& text, const std::vector<std::string>& choices,
                         size_t* index) {
  std::string listed;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (text == choices[i]) {
      *index = i;
      return "";
    }
    listed += (i ? "|" : "") + choices[i];
  }
  return bad_value(flag, text, "one of " + listed);
}

// For the flags without a value.
std::string set_true(bool* flag) {
  *flag = true;
  return "";
}

// The shortest decimal that reads back as the same float (9 digits always do).
std::string format_float(float value) {
  char text[32];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(text, sizeof(text), "%.*g", digits, double(value));
    if (std::strtof(text, nullptr) == value) break;
  }
  return text;
}

std::string join(const std::vector<int32_t>& values) {
  std::string text;
  for (int32_t v : values) text += (text.empty() ? "" : ",") + std::to_string(v);
  return text;
}

// ---------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------

// What parsing has seen so far, for the checks that involve several flags.
struct ParseState {
  explicit ParseState(Options* o) : options(o) {}

  Options* options;
  std::string first_case_flag;  // a single-case flag, for the --preset conflict message
  std::string first_rope_flag;  // a --rope-* flag, which needs --rope
  bool qo_lens_given = false;
  bool kv_lens_given = false;
  bool page_size_given = false;
  bool seed_given = false;

  CaseSpec& spec() { return options->single.spec; }
  RopeSpec& rope() { return options->single.rope; }
};

enum class FlagKind {
  kRun,   // how to run (any case selection)
  kCase,  // defines the single case
  kRope,  // RoPE detail of the single case (needs --rope)
};

struct Flag {
  const char* name;
  bool takes_value;
  FlagKind kind;
  std::function<std::string(const std::string& flag, const std::string& value, ParseState& s)> apply;
};

const std::vector<Flag>& flags() {
  using S = ParseState;
  using Str = const std::string&;
  static const std::vector<Flag> table = {
      {"--help", false, FlagKind::kRun, [](Str, Str, S& s) { return set_true(&s.options->help); }},
      {"-h", false, FlagKind::kRun, [](Str, Str, S& s) { return set_true(&s.options->help); }},
      {"--list", false, FlagKind::kRun, [](Str, Str, S& s) { return set_true(&s.options->list); }},
      {"--preset", true, FlagKind::kRun,
       [](Str f, Str v, S& s) {
         size_t i = 0;
         std::string error = parse_choice(f, v, preset_names(), &i);
         if (error.empty()) s.options->preset = v;
         return error;
       }},
      {"--path", true, FlagKind::kRun,
       [](Str f, Str v, S& s) {
         size_t i = 0;
         std::string error = parse_choice(f, v, {"each", "auto", "tma", "gather"}, &i);
         s.options->path = PathChoice(i);
         return error;
       }},
      {"--schedule", true, FlagKind::kRun,
       [](Str f, Str v, S& s) {
         size_t i = 0;
         std::string error = parse_choice(f, v, {"all", "auto", "one-item-per-cta", "persistent", "dynamic"}, &i);
         s.options->schedule = ScheduleSelection(i);
         return error;
       }},
      {"--max-ctas", true, FlagKind::kRun,
       [](Str f, Str v, S& s) { return parse_int32(f, v, 0, INT32_MAX, &s.options->max_ctas); }},
      {"--kv-splits", true, FlagKind::kRun,
       [](Str f, Str v, S& s) { return parse_int32(f, v, 0, detail::kMaxKvSplits, &s.options->kv_splits); }},
      {"--gqa-packing", true, FlagKind::kRun,
       [](Str f, Str v, S& s) {
         size_t i = 0;
         std::string error = parse_choice(f, v, {"auto", "off", "on"}, &i);
         s.options->gqa_packing = GqaPacking(i);
         return error;
       }},
      {"--kv-stages", true, FlagKind::kRun,
       [](Str f, Str v, S& s) { return parse_int32(f, v, 0, 4, &s.options->kv_stages); }},
      {"--pollute", true, FlagKind::kRun,
       [](Str f, Str v, S& s) {
         std::string error;
         if (!testing::parse_polluter_list(v, &s.options->polluters, &error)) return f + ": " + error;
         return std::string();
       }},
      {"--pollute-seed", true, FlagKind::kRun,
       [](Str f, Str v, S& s) { return parse_uint64(f, v, &s.options->pollute_seed); }},
      {"--repeat", true, FlagKind::kRun,
       [](Str f, Str v, S& s) { return parse_int32(f, v, 1, 1000, &s.options->repeat); }},
      {"--seed", true, FlagKind::kRun,
       [](Str f, Str v, S& s) {
         s.seed_given = true;
         return parse_uint64(f, v, &s.options->seed);
       }},
      {"--json", true, FlagKind::kRun,
       [](Str f, Str v, S& s) {
         s.options->json_path = v;
         return v.empty() ? f + ": needs a file name" : std::string();
       }},
      {"--threads", true, FlagKind::kRun,
       [](Str f, Str v, S& s) { return parse_int32(f, v, 0, 4096, &s.options->threads); }},
      {"--only-failures", false, FlagKind::kRun,
       [](Str, Str, S& s) { return set_true(&s.options->only_failures); }},
      {"--no-progress", false, FlagKind::kRun, [](Str, Str, S& s) { return set_true(&s.options->no_progress); }},

      {"--qo-lens", true, FlagKind::kCase,
       [](Str f, Str v, S& s) {
         s.qo_lens_given = true;
         return parse_lengths(f, v, &s.spec().qo_lens);
       }},
      {"--kv-lens", true, FlagKind::kCase,
       [](Str f, Str v, S& s) {
         s.kv_lens_given = true;
         return parse_lengths(f, v, &s.spec().kv_lens);
       }},
      {"--heads", true, FlagKind::kCase, [](Str f, Str v, S& s) { return parse_heads(f, v, &s.spec()); }},
      {"--head-dim", true, FlagKind::kCase,
       [](Str f, Str v, S& s) {
         size_t i = 0;
         std::string error = parse_choice(f, v, {"64", "128", "256"}, &i);
         s.spec().head_dim = 64 << i;
         return error;
       }},
      {"--dtype", true, FlagKind::kCase,
       [](Str f, Str v, S& s) {
         size_t i = 0;
         std::string error = parse_choice(f, v, {"bf16", "fp16"}, &i);
         s.spec().dtype = i == 0 ? DType::kBF16 : DType::kFP16;
         return error;
       }},
      {"--layout", true, FlagKind::kCase,
       [](Str f, Str v, S& s) {
         size_t i = 0;
         std::string error = parse_choice(f, v, {"nhd", "hnd", "ragged"}, &i);
         s.spec().format = i == 2 ? KvFormat::kRagged : KvFormat::kPaged;
         s.spec().layout = i == 1 ? KvLayout::kHND : KvLayout::kNHD;
         return error;
       }},
      {"--page-size", true, FlagKind::kCase,
       [](Str f, Str v, S& s) {
         s.page_size_given = true;
         return parse_int32(f, v, 1, 1024, &s.spec().page_size);
       }},
      {"--causal", false, FlagKind::kCase,
       [](Str, Str, S& s) { return set_true(&s.spec().options.causal); }},
      {"--window", true, FlagKind::kCase,
       [](Str f, Str v, S& s) { return parse_int32(f, v, -1, INT32_MAX, &s.spec().options.window_left); }},
      {"--soft-cap", true, FlagKind::kCase,
       [](Str f, Str v, S& s) { return parse_float(f, v, 0.0f, false, &s.spec().options.logits_soft_cap); }},
      {"--sm-scale", true, FlagKind::kCase,
       [](Str f, Str v, S& s) { return parse_float(f, v, 0.0f, false, &s.spec().options.sm_scale); }},
      {"--q-amplitude", true, FlagKind::kCase,
       [](Str f, Str v, S& s) { return parse_float(f, v, 0.0f, true, &s.spec().q_amplitude); }},
      {"--rope", true, FlagKind::kCase,
       [](Str f, Str v, S& s) {
         size_t i = 0;
         std::string error = parse_choice(f, v, {"none", "neox", "interleave"}, &i);
         s.rope().mode = RopeMode(i);
         return error;
       }},

      {"--rope-cache", false, FlagKind::kRope,
       [](Str, Str, S& s) { return set_true(&s.rope().use_cache); }},
      {"--rotary-dim", true, FlagKind::kRope,
       [](Str f, Str v, S& s) { return parse_int32(f, v, 2, 256, &s.rope().rotary_dim); }},
      {"--rope-theta", true, FlagKind::kRope,
       [](Str f, Str v, S& s) { return parse_float(f, v, 0.0f, true, &s.rope().theta); }},
      {"--rope-scale", true, FlagKind::kRope,
       [](Str f, Str v, S& s) { return parse_float(f, v, 0.0f, true, &s.rope().scale); }},
      {"--llama31", false, FlagKind::kRope, [](Str, Str, S& s) { return set_true(&s.rope().llama31); }},
      {"--rope-offset", true, FlagKind::kRope,
       [](Str f, Str v, S& s) { return parse_int32(f, v, 0, kMaxRopePosition, &s.rope().position_offset); }},
  };
  return table;
}

// Rules between flags, checked after all of them were read.
std::string check_combination(ParseState& s) {
  Options& o = *s.options;
  CaseSpec& spec = s.spec();
  if (!o.preset.empty() && !s.first_case_flag.empty())
    return "--preset=" + o.preset + " and " + s.first_case_flag +
           " cannot be combined (a preset brings its own cases; the single-case flags define one)";
  if (!s.first_rope_flag.empty() && o.single.rope.mode == RopeMode::kNone)
    return s.first_rope_flag + " needs --rope=neox or --rope=interleave";
  if (o.max_ctas > 0 && o.schedule == ScheduleSelection::kOneItemPerCta)
    return "--max-ctas=" + std::to_string(o.max_ctas) +
           " limits the persistent and dynamic schedules, but --schedule=one-item-per-cta has none (use persistent, "
           "dynamic, auto or all)";
  if (o.preset.empty() && s.first_case_flag.empty()) {
    o.preset = "quick";  // no case selected: the quick preset
    return "";
  }
  if (o.preset.empty()) {
    if (!s.qo_lens_given) return "a single case needs --qo-lens (or choose a --preset)";
    if (!s.kv_lens_given) spec.kv_lens = spec.qo_lens;
    if (spec.kv_lens.size() != spec.qo_lens.size())
      return "--qo-lens has " + std::to_string(spec.qo_lens.size()) + " entries but --kv-lens has " +
             std::to_string(spec.kv_lens.size());
    if (s.page_size_given && spec.format == KvFormat::kRagged)
      return "--page-size applies to the paged layouts (nhd, hnd), not to --layout=ragged";
    if (o.single.rope.rotary_dim % 2 != 0 || o.single.rope.rotary_dim > spec.head_dim)
      return "--rotary-dim: " + std::to_string(o.single.rope.rotary_dim) + " must be even and at most --head-dim (" +
             std::to_string(spec.head_dim) + ")";
    if (s.seed_given) spec.seed = o.seed;
  }
  return "";
}

// ---------------------------------------------------------------------------
// Presets
// ---------------------------------------------------------------------------

// Whether this library has kernels for (dtype, head_dim): the public
// validation reports kUnsupported for configurations it was built without.
bool is_built(DType dtype, int32_t head_dim) {
  PrefillConfig config;
  config.dtype = dtype;
  config.num_qo_heads = config.num_kv_heads = 1;
  config.head_dim = head_dim;
  config.page_size = 16;
  return validate_prefill_config(config).code != StatusCode::kUnsupported;
}

struct Built {
  std::vector<int32_t> head_dims;
  std::vector<DType> dtypes;
  std::string left_out;  // what the presets skip, for the notes
};

// Head dims and dtypes are independent meson options: every built head dim
// is built for every built dtype.
Built built_configurations() {
  Built built;
  for (int32_t d : {64, 128, 256}) {
    if (is_built(DType::kBF16, d) || is_built(DType::kFP16, d)) {
      built.head_dims.push_back(d);
    } else {
      built.left_out += " head_dim " + std::to_string(d);
    }
  }
  for (DType t : {DType::kBF16, DType::kFP16}) {
    bool any = false;
    for (int32_t d : built.head_dims) any = any || is_built(t, d);
    if (any) {
      built.dtypes.push_back(t);
    } else {
      built.left_out += " " + testing::to_string(t);
    }
  }
  return built;
}

bool case_is_built(const Built& built, const CaseSpec& spec) {
  return std::find(built.head_dims.begin(), built.head_dims.end(), spec.head_dim) != built.head_dims.end() &&
         std::find(built.dtypes.begin(), built.dtypes.end(), spec.dtype) != built.dtypes.end();
}

// Preset case k's data seed, from the base seed (--seed).
uint64_t preset_seed(uint64_t base, int k) { return base * 100000 + uint64_t(k); }

CaseSpec make_spec(DType dtype, int32_t head_dim, int32_t qo_heads, int32_t kv_heads, KvFormat format,
                   KvLayout layout, int32_t page_size, std::vector<int32_t> qo_lens, std::vector<int32_t> kv_lens,
                   bool causal) {
  CaseSpec spec;
  spec.dtype = dtype;
  spec.head_dim = head_dim;
  spec.num_qo_heads = qo_heads;
  spec.num_kv_heads = kv_heads;
  spec.format = format;
  spec.layout = layout;
  spec.page_size = page_size;
  spec.qo_lens = std::move(qo_lens);
  spec.kv_lens = std::move(kv_lens);
  spec.options.causal = causal;
  return spec;
}

// The edge cases every preset of random cases starts with.
std::vector<CaseSpec> edge_specs() {
  const DType bf16 = DType::kBF16, fp16 = DType::kFP16;
  const KvFormat paged = KvFormat::kPaged, ragged = KvFormat::kRagged;
  const KvLayout nhd = KvLayout::kNHD, hnd = KvLayout::kHND;
  std::vector<CaseSpec> specs = {
      // FA3's TMA-path failure (docs/kernels.md "State rules"): NaN in the tail of the last page of
      // 128/256-token pages, causal.
      make_spec(bf16, 128, 2, 1, paged, nhd, 128, {1000, 37}, {1000, 501}, true),
      // FlashInfer #1018 shapes: partial last pages of 16 tokens, causal.
      make_spec(bf16, 128, 4, 4, paged, nhd, 16, {7, 300, 129}, {21, 333, 1000}, true),
      // Empty requests and queries without keys (fully masked rows: o = 0, lse = -inf).
      make_spec(fp16, 64, 8, 2, ragged, nhd, 0, {0, 5, 17, 3}, {9, 0, 40, 0}, false),
      // Sliding window and soft cap, HND pages of 64.
      make_spec(bf16, 256, 4, 2, paged, hnd, 64, {200, 1}, {333, 64}, true),
      // One token per page.
      make_spec(fp16, 128, 4, 1, paged, nhd, 1, {33, 64}, {100, 64}, true),
      // 256-token HND pages, one key into the second page, custom scale.
      make_spec(bf16, 64, 2, 2, paged, hnd, 256, {129, 300}, {257, 300}, false),
  };
  specs[3].options.window_left = 31;
  specs[3].options.logits_soft_cap = 30.0f;
  specs[5].options.sm_scale = 0.3f;
  return specs;
}

// Six RoPE variants, cycled through by the presets: both pairings, the cache
// variant, partial rotary dims, Llama-3.1 frequencies and large positions.
RopeSpec rope_variant(int k, int32_t head_dim) {
  RopeSpec rope;
  rope.mode = k % 2 == 0 ? RopeMode::kNeox : RopeMode::kInterleave;
  switch (k % 6) {
    case 0:
      break;
    case 1:
      rope.use_cache = true;
      break;
    case 2:
      rope.rotary_dim = head_dim / 2;
      rope.theta = 5e5f, rope.scale = 8.0f, rope.llama31 = true;
      rope.position_offset = 1000000;
      break;
    case 3:
      rope.rotary_dim = head_dim / 2;
      rope.use_cache = true;
      rope.theta = 5e5f;
      rope.position_offset = 4096;
      break;
    case 4:
      rope.use_cache = true;
      rope.scale = 2.0f;
      rope.position_offset = 60000;
      break;
    default:
      rope.rotary_dim = 32;
      rope.theta = 5e5f, rope.scale = 8.0f, rope.llama31 = true;
      rope.position_offset = 131072;
      break;
  }
  return rope;
}

// Sizes of the random cases of one preset.
struct RandomPlan {
  int count;
  RandomLimits limits;
  RandomLimits long_limits;  // every `long_every`-th case (0: none)
  int long_every;
  int rope_every;            // every `rope_every`-th case gets a RoPE check (> 0)
};

// Random cases; head dim, dtype and page size are cycled (not drawn) so that
// every built combination appears within the first few dozen cases.
void add_random_cases(const RandomPlan& plan, const Built& built, uint64_t base_seed, int first_index,
                      std::vector<ValidateCase>* cases) {
  const std::vector<int32_t>& pages = plan.limits.page_sizes;
  const size_t dims = built.head_dims.size();
  for (int i = 0; i < plan.count; ++i) {
    RandomLimits limits = plan.long_every > 0 && i % plan.long_every == plan.long_every - 1 ? plan.long_limits
                                                                                              : plan.limits;
    limits.head_dims = {built.head_dims[size_t(i) % dims]};
    limits.dtypes = {built.dtypes[(size_t(i) / dims) % built.dtypes.size()]};
    limits.page_sizes = {pages[size_t(i) % pages.size()]};
    ValidateCase c;
    c.spec = testing::random_spec(preset_seed(base_seed, first_index + i), limits);
    if (i % plan.rope_every == 0) c.rope = rope_variant(i / plan.rope_every, c.spec.head_dim);
    cases->push_back(std::move(c));
  }
}

void add_edge_cases(const Built& built, uint64_t base_seed, std::vector<ValidateCase>* cases) {
  int k = 0;
  for (CaseSpec& spec : edge_specs()) {
    spec.seed = preset_seed(base_seed, k);
    ValidateCase c;
    c.spec = std::move(spec);
    if (k % 3 == 1) c.rope = rope_variant(k, c.spec.head_dim);
    ++k;
    if (case_is_built(built, c.spec)) cases->push_back(std::move(c));
  }
}

RandomLimits quick_limits() {
  RandomLimits limits;
  limits.max_requests = 4;
  limits.max_qo_len = 96;
  limits.max_kv_len = 384;
  limits.page_sizes = {1, 3, 8, 16, 64, 128, 256};
  limits.gqa_group_sizes = {1, 4};
  return limits;
}

RandomLimits full_limits() {
  RandomLimits limits;
  limits.max_requests = 5;
  limits.max_qo_len = 256;
  limits.max_kv_len = 1024;
  limits.page_sizes = {1, 2, 3, 4, 7, 8, 16, 31, 32, 64, 100, 128, 256};
  limits.gqa_group_sizes = {1, 2, 4, 8};
  return limits;
}

// A few long requests: queries up to 1k over keys up to 4k.
RandomLimits long_limits() {
  RandomLimits limits = full_limits();
  limits.max_requests = 2;
  limits.max_qo_len = 1024;
  limits.max_kv_len = 4096;
  limits.kv_head_counts = {1};
  limits.gqa_group_sizes = {1, 4};
  return limits;
}

// Decode and speculative verification: 1 to 16 queries per request over
// long KV ranges, GQA groups up to 8.
RandomLimits decode_limits() {
  RandomLimits limits = full_limits();
  limits.max_requests = 8;
  limits.max_qo_len = 16;
  limits.max_kv_len = 8192;
  limits.gqa_group_sizes = {1, 4, 8};
  return limits;
}

// A few single long ranges: up to 64k keys.
RandomLimits long_decode_limits() {
  RandomLimits limits = decode_limits();
  limits.max_requests = 2;
  limits.max_kv_len = 65536;
  limits.kv_head_counts = {1};
  return limits;
}

// The FlashInfer #1018 scenario: paged prefills with a partially filled last
// page, each run plainly and right after build_rope_cos_sin_cache.
void add_seed_cases(const Built& built, uint64_t base_seed, std::vector<ValidateCase>* cases) {
  const DType bf16 = DType::kBF16, fp16 = DType::kFP16;
  const KvLayout nhd = KvLayout::kNHD, hnd = KvLayout::kHND;
  struct Variant {
    DType dtype;
    int32_t head_dim;
    KvLayout layout;
    int32_t page_size;
    bool causal;
  };
  const Variant variants[] = {
      {bf16, 128, nhd, 16, true}, {bf16, 128, nhd, 1, true},  {bf16, 128, nhd, 5, true},
      {bf16, 128, nhd, 64, true}, {bf16, 128, nhd, 128, true}, {bf16, 128, nhd, 256, true},
      {bf16, 128, hnd, 16, true}, {fp16, 64, nhd, 16, true},  {bf16, 256, hnd, 32, false},
  };
  int k = 0;
  for (const Variant& v : variants) {
    ValidateCase c;
    c.spec = make_spec(v.dtype, v.head_dim, 4, 4, KvFormat::kPaged, v.layout, v.page_size, {7, 300, 129},
                       {21, 333, 1000}, v.causal);
    c.spec.seed = preset_seed(base_seed, k++);
    c.forced_polluters = {Polluter::kSeed};
    if (case_is_built(built, c.spec)) cases->push_back(std::move(c));
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Public
// ---------------------------------------------------------------------------

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = {"quick", "full", "seed", "w2", "decode"};
  return names;
}

const char* rope_mode_name(RopeMode mode) {
  return mode == RopeMode::kNeox ? "neox" : mode == RopeMode::kInterleave ? "interleave" : "none";
}

const char* path_choice_name(PathChoice path) {
  switch (path) {
    case PathChoice::kAuto: return "auto";
    case PathChoice::kTma: return "tma";
    case PathChoice::kGather: return "gather";
    case PathChoice::kEach: break;
  }
  return "each";
}

const char* schedule_selection_name(ScheduleSelection schedule) {
  switch (schedule) {
    case ScheduleSelection::kAuto: return "auto";
    case ScheduleSelection::kOneItemPerCta: return "one-item-per-cta";
    case ScheduleSelection::kPersistent: return "persistent";
    case ScheduleSelection::kDynamic: return "dynamic";
    case ScheduleSelection::kAll: break;
  }
  return "all";
}

const char* gqa_packing_name(GqaPacking packing) {
  switch (packing) {
    case GqaPacking::kOff: return "off";
    case GqaPacking::kOn: return "on";
    case GqaPacking::kAuto: break;
  }
  return "auto";
}

std::string plan_option_flags(const Options& options) {
  std::string flags;
  if (options.kv_splits != 0) flags += " --kv-splits=" + std::to_string(options.kv_splits);
  if (options.gqa_packing != GqaPacking::kAuto)
    flags += std::string(" --gqa-packing=") + gqa_packing_name(options.gqa_packing);
  if (options.kv_stages != 0) flags += " --kv-stages=" + std::to_string(options.kv_stages);
  return flags;
}

std::string parse_options(int argc, char** argv, Options* options) {
  *options = Options{};
  ParseState state(options);
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    const Flag* flag = nullptr;
    for (const Flag& f : flags())
      if (name == f.name) flag = &f;
    if (flag == nullptr) return "unknown argument '" + arg + "'";
    std::string value;
    if (eq != std::string::npos) {
      if (!flag->takes_value) return name + " takes no value (got '" + arg + "')";
      value = arg.substr(eq + 1);
    } else if (flag->takes_value) {
      if (i + 1 >= argc) return name + " needs a value (" + name + "=VALUE or " + name + " VALUE)";
      value = argv[++i];
    }
    if (std::string error = flag->apply(name, value, state); !error.empty()) return error;
    if (flag->kind != FlagKind::kRun && state.first_case_flag.empty()) state.first_case_flag = name;
    if (flag->kind == FlagKind::kRope && state.first_rope_flag.empty()) state.first_rope_flag = name;
  }
  return check_combination(state);
}

std::vector<ValidateCase> make_cases(const Options& options, std::string* notes) {
  notes->clear();
  if (options.preset.empty()) return {options.single};
  const Built built = built_configurations();
  if (!built.left_out.empty()) *notes = "not built into this library, left out of the preset:" + built.left_out;
  std::vector<ValidateCase> cases;
  if (built.head_dims.empty() || built.dtypes.empty()) return cases;
  const uint64_t seed = options.seed;
  if (options.preset == "quick") {
    add_edge_cases(built, seed, &cases);
    add_random_cases({24, quick_limits(), {}, 0, 6}, built, seed, 100, &cases);
  } else if (options.preset == "full") {
    add_edge_cases(built, seed, &cases);
    add_random_cases({300, full_limits(), long_limits(), 30, 3}, built, seed, 1000, &cases);
  } else if (options.preset == "seed") {
    add_seed_cases(built, seed, &cases);
  } else if (options.preset == "decode") {
    add_random_cases({60, decode_limits(), long_decode_limits(), 10, 6}, built, seed, 5000, &cases);
  } else if (options.preset == "w2") {
    ValidateCase c;
    c.spec = testing::w2_spec(seed);
    c.rope.mode = RopeMode::kNeox;
    c.rope.use_cache = true;
    if (case_is_built(built, c.spec)) cases.push_back(std::move(c));
  }
  return cases;
}

std::string case_flags(const ValidateCase& c) {
  const CaseSpec& s = c.spec;
  std::ostringstream text;
  text << "--qo-lens=" << join(s.qo_lens) << " --kv-lens=" << join(s.kv_lens) << " --heads=" << s.num_qo_heads
       << "/" << s.num_kv_heads << " --head-dim=" << s.head_dim << " --dtype=" << testing::to_string(s.dtype);
  if (s.format == KvFormat::kRagged) {
    text << " --layout=ragged";
  } else {
    text << " --layout=" << (s.layout == KvLayout::kHND ? "hnd" : "nhd") << " --page-size=" << s.page_size;
  }
  if (s.options.causal) text << " --causal";
  if (s.options.window_left >= 0) text << " --window=" << s.options.window_left;
  if (s.options.logits_soft_cap > 0.0f) text << " --soft-cap=" << format_float(s.options.logits_soft_cap);
  if (s.options.sm_scale > 0.0f) text << " --sm-scale=" << format_float(s.options.sm_scale);
  if (s.q_amplitude != 1.0f) text << " --q-amplitude=" << format_float(s.q_amplitude);
  text << " --seed=" << s.seed;
  const RopeSpec& r = c.rope;
  if (r.mode == RopeMode::kNone) return text.str();
  const RopeSpec defaults;
  text << " --rope=" << rope_mode_name(r.mode);
  if (r.use_cache) text << " --rope-cache";
  if (r.rotary_dim != defaults.rotary_dim) text << " --rotary-dim=" << r.rotary_dim;
  if (r.theta != defaults.theta) text << " --rope-theta=" << format_float(r.theta);
  if (r.scale != defaults.scale) text << " --rope-scale=" << format_float(r.scale);
  if (r.llama31) text << " --llama31";
  if (r.position_offset != defaults.position_offset) text << " --rope-offset=" << r.position_offset;
  return text.str();
}

std::string usage_text(const char* program) {
  std::string text = R"(Usage: PROGRAM [--preset=NAME | single-case flags] [run options]

Runs the ptxattn GPU kernels (batch prefill attention over a paged or ragged
KV cache, RoPE) against the Eigen CPU reference and prints one table row per
(case, kernel, load path, schedule, polluter). Needs an SM90 (Hopper) GPU.
Without a preset or single-case flags it runs --preset=quick.

Presets:
  --preset=quick     6 edge cases + 24 small random cases, both load paths
                     and both schedules, 6 of them with a RoPE check (seconds)
  --preset=full      6 edge cases + 300 random cases: every head dim, dtype,
                     layout (NHD, HND, ragged), page sizes 1..256, GQA,
                     causal, sliding window, soft cap, empty requests, a few
                     long requests; every third with a RoPE check (minutes)
  --preset=seed      FlashInfer #1018: paged prefills with a partial last page,
                     each run plainly and right after build_rope_cos_sin_cache;
                     the two outputs must be bit-identical
  --preset=decode    60 random decode and speculative-verification batches:
                     qo 1..16 over kv up to 8k (every tenth: up to 64k), GQA
                     groups 1/4/8, page sizes 1..256, windows, soft cap;
                     every sixth with a RoPE check
  --preset=w2        the W2 serving mix of docs/benchmarks.md (16 requests, 32/8
                     heads, D 128, bf16, pages of 16, causal) + RoPE on it
  --seed=N           base seed of a preset's cases (default 1)

Single case (one case from flags; every failure prints these flags):
  --qo-lens=L,L,...  queries per request (required), e.g. 128,7,0
  --kv-lens=L,L,...  keys per request (default: the qo lengths)
  --heads=QO/KV      query/KV head counts, e.g. 8/2 (default 1/1)
  --head-dim=D       64 | 128 | 256 (default 128)
  --dtype=T          bf16 | fp16 (default bf16)
  --layout=L         nhd | hnd (paged) | ragged (default nhd)
  --page-size=N      tokens per page, 1..1024 (paged; default 16)
  --causal           causal mask, bottom-right aligned
  --window=N         sliding window: keys >= position - N (default -1: off)
  --soft-cap=X       logits soft cap (default 0: off)
  --sm-scale=X       softmax scale (default 0: 1/sqrt(head_dim))
  --q-amplitude=X    queries uniform in [-X, X] (default 1; 8: peaked softmax)
  --seed=N           data seed (default 1)
  --rope=MODE        none | neox | interleave (default none): also check RoPE
                     on the case's queries and keys of the same tokens at the
                     tokens' positions (position of query i of a request:
                     max(0, kv_len - qo_len) + i, plus --rope-offset)
  --rope-cache       build_rope_cos_sin_cache + apply_rope_with_cos_sin_cache
                     (per-token positions) instead of apply_rope (indptr +
                     offsets); the cache is checked too
  --rotary-dim=N     rotated dims, even, <= head dim (default: head dim)
  --rope-theta=X     RoPE base (default 10000)
  --rope-scale=X     frequency divisor; the Llama factor with --llama31 (default 1)
  --llama31          Llama-3.1 frequency smoothing (low 1, high 4, context 8192)
  --rope-offset=N    added to every position (default 0)

Run options:
  --path=P           each (default): the gather path, and TMA where the case
                     allows it; auto: the library's choice; tma; gather
  --schedule=S       all (default): one item per CTA, persistent, then
                     dynamic; auto: the library's choice; one-item-per-cta;
                     persistent; dynamic
  --max-ctas=N       at most N CTAs (config.max_ctas) in the persistent,
                     dynamic and auto runs (default 0: one per SM; N > 0
                     makes auto persistent); not with --schedule=one-item-per-cta
  --kv-splits=N      split-KV chunks per query tile in every prefill run
                     (config.kv_splits): 0 (default) the plan's rule, 1 none,
                     2..64 exactly N
  --gqa-packing=G    auto (default): the plan's rule; off: token-major tiles;
                     on: a KV group's qo heads packed in each tile (cases
                     whose group does not divide 128 are skipped)
  --kv-stages=S      K/V stages of the kernel's ring in every prefill run
                     (config.kv_stages): 0 (default) the head dim's; 3 the
                     deep ring, built at head_dim 128 on the gather path
                     (the case and path pairs without that ring are skipped)
  --pollute=LIST     polluters run right before every kernel, besides a clean
                     run: all, or a comma list of
                       smem         every SM's shared memory filled (NaN, Inf, ...)
                       regs         register files filled, also under setmaxnreg
                       outputs      o and lse pre-filled with Inf/NaN patterns
                       cache-slots  new poison in every K/V slot no request owns
                       l2           L2 flushed
                       seed         build_rope_cos_sin_cache (FlashInfer #1018)
                       previous     another real prefill just before
                     every polluted output must be bit-identical to the clean one
  --pollute-seed=N   pattern of the first polluted run (default 0); preset case
                     k uses N + k, repeat r adds r
  --repeat=N         run every (case, path, schedule, polluter) N times; all
                     N outputs must be bit-identical (default 1)
  --json=FILE        write every row and a summary as JSON
  --threads=N        CPU reference threads (default 0: all)
  --only-failures    print failing rows only (the summary always)
  --no-progress      no progress line on stderr
  --list             print the cases as single-case flags and exit (no GPU needed)
  -h, --help         this text

Checks: every output element and LSE value within its own tolerance of the
exact (fp64) reference (docs/validation.md "Tolerances"; RoPE: docs/validator.md),
no NaN/Inf, and bit identity across repeats, polluters, load paths and
schedules.

Exit status: 0 all passed; 1 a mismatch, a bit difference or a failed kernel
call; 2 bad usage; 3 no usable SM90 GPU.

Examples:
  PROGRAM --preset=full --pollute=all --json=validate.json
  PROGRAM --qo-lens=128,7,0 --kv-lens=300,7,0 --heads=8/2 --causal --page-size=16
  PROGRAM --qo-lens=1000 --layout=hnd --page-size=128 --causal --path=tma --pollute=smem,cache-slots --repeat=3
  PROGRAM --preset=quick --schedule=persistent --max-ctas=2
Details and more examples: docs/validator.md.
)";
  const std::string placeholder = "PROGRAM";
  for (size_t at = text.find(placeholder); at != std::string::npos; at = text.find(placeholder, at))
    text.replace(at, placeholder.size(), program);
  return text;
}

}  // namespace ptxattn::validator
