// ptxattn-validate: runs the GPU kernels against the Eigen CPU reference and
// prints one row per (case, kernel, load path, schedule, polluter). `--help`
// lists the options; docs/validator.md explains the output and has examples.
//
// Exit status: 0 all passed, 1 a failure, 2 bad usage, 3 no usable SM90 GPU.
//
// Per case: the CPU references (computed in a background thread while the
// GPU runs the previous case), then for each load path and schedule a clean
// run and one run per polluter, each repeated --repeat times. The clean run is
// compared with the reference; every other run must reproduce its bits (a run
// with other bits is compared with the reference too, and fails either way),
// and the clean runs of every path and schedule those of the first that walks
// the same KV block (a wide block splits the online softmax at other keys).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/compare.hpp"
#include "reference/testdata.hpp"
#include "tests/common/gpu_test.hpp"
#include "tests/common/polluters.hpp"
#include "tests/common/prefill_runner.hpp"
#include "tools/validate_cli.hpp"
#include "tools/validate_kernels.hpp"
#include "tools/validate_report.hpp"

namespace ptxattn::validator {
namespace {

using testing::Polluter;

constexpr int kExitPass = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNoGpu = 3;

// A RoPE cos/sin cache larger than this is refused (a mistyped --rope-offset).
constexpr double kMaxCacheGiB = 4.0;

// ---------------------------------------------------------------------------
// Describing a case
// ---------------------------------------------------------------------------

std::string lengths_text(const std::vector<int32_t>& lengths, bool sum_when_long) {
  constexpr size_t kListedRequests = 4;
  if (lengths.size() <= kListedRequests) {
    std::string text;
    for (int32_t n : lengths) text += (text.empty() ? "" : ",") + std::to_string(n);
    return "[" + text + "]";
  }
  int64_t total = 0;
  int32_t longest = 0;
  for (int32_t n : lengths) total += n, longest = std::max(longest, n);
  return sum_when_long ? "=" + std::to_string(total) : "<=" + std::to_string(longest);
}

// e.g. "bf16 H8/2 D128 hnd/p16 B3 qo[128,7,0] kv[300,7,0] causal w64 cap30"
std::string case_shape(const testing::CaseSpec& s) {
  std::ostringstream text;
  text << testing::to_string(s.dtype) << " H" << s.num_qo_heads << "/" << s.num_kv_heads << " D" << s.head_dim << " ";
  if (s.format == KvFormat::kRagged) {
    text << "ragged";
  } else {
    text << (s.layout == KvLayout::kHND ? "hnd" : "nhd") << "/p" << s.page_size;
  }
  text << " B" << s.qo_lens.size() << " qo" << lengths_text(s.qo_lens, true) << " kv"
       << lengths_text(s.kv_lens, false);
  const PrefillOptions& o = s.options;
  if (o.causal) text << " causal";
  if (o.window_left >= 0) text << " w" << o.window_left;
  if (o.logits_soft_cap > 0.0f) text << " cap" << o.logits_soft_cap;
  if (o.sm_scale > 0.0f) text << " scale" << o.sm_scale;
  if (s.q_amplitude != 1.0f) text << " amp" << s.q_amplitude;
  return text.str();
}

// e.g. "neox rd64 cache theta500000 llama31x8 +4096 | bf16 H8/2 D128 135 tokens"
std::string rope_shape(const RopeSpec& r, const RopeHost& h) {
  std::ostringstream text;
  text << rope_mode_name(r.mode) << " rd" << h.config.rotary_dim;
  if (r.use_cache) text << " cache";
  if (r.theta != RopeSpec{}.theta) text << " theta" << r.theta;
  if (r.llama31) text << " llama31";
  if (r.scale != 1.0f) text << " x" << r.scale;
  if (r.position_offset > 0) text << " +" << r.position_offset;
  text << " | " << testing::to_string(h.dtype) << " H" << h.num_qo_heads << "/" << h.num_kv_heads << " D" << h.head_dim
       << " " << h.num_tokens() << " tokens";
  return text.str();
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

// What the CPU prepares for one case.
struct Prepared {
  testing::HostCase host;
  testing::References refs;
  std::optional<RopeHost> rope;
};

std::unique_ptr<Prepared> prepare(const ValidateCase& c, int threads) {
  auto p = std::make_unique<Prepared>();
  p->host = testing::make_case(c.spec);
  p->refs = testing::compute_references(p->host, threads);
  if (c.rope.mode != RopeMode::kNone) p->rope = make_rope_host(p->host, c.rope);
  return p;
}

std::vector<KvLoadPath> load_paths(PathChoice choice, const PrefillConfig& config) {
  const bool tma = tma_load_path_supported(config);
  switch (choice) {
    case PathChoice::kAuto: return {KvLoadPath::kAuto};
    case PathChoice::kGather: return {KvLoadPath::kGather};
    case PathChoice::kTma: return tma ? std::vector<KvLoadPath>{KvLoadPath::kTma} : std::vector<KvLoadPath>{};
    case PathChoice::kEach: break;
  }
  return tma ? std::vector<KvLoadPath>{KvLoadPath::kGather, KvLoadPath::kTma}
             : std::vector<KvLoadPath>{KvLoadPath::kGather};
}

static_assert(testing::kScheduleChoices[0].schedule == WorkSchedule::kOneItemPerCta &&
                  testing::kScheduleChoices[0].max_ctas == 0 &&
                  testing::kScheduleChoices[1].schedule == WorkSchedule::kPersistent &&
                  testing::kScheduleChoices[1].max_ctas == 0 &&
                  testing::kScheduleChoices[3].schedule == WorkSchedule::kDynamic &&
                  testing::kScheduleChoices[3].max_ctas == 0,
              "schedule_choices() takes one item per CTA, persistent and dynamic from kScheduleChoices[0], [1], [3]");

// The schedules each case runs under (--schedule); --max-ctas applies to the
// persistent, dynamic and auto runs.
std::vector<testing::ScheduleChoice> schedule_choices(const Options& options) {
  const testing::ScheduleChoice one_item_per_cta = testing::kScheduleChoices[0];
  testing::ScheduleChoice persistent = testing::kScheduleChoices[1];
  testing::ScheduleChoice dynamic = testing::kScheduleChoices[3];
  persistent.max_ctas = dynamic.max_ctas = options.max_ctas;
  switch (options.schedule) {
    case ScheduleSelection::kAuto: return {{WorkSchedule::kAuto, options.max_ctas, "auto"}};
    case ScheduleSelection::kOneItemPerCta: return {one_item_per_cta};
    case ScheduleSelection::kPersistent: return {persistent};
    case ScheduleSelection::kDynamic: return {dynamic};
    case ScheduleSelection::kAll: break;
  }
  return {one_item_per_cta, persistent, dynamic};
}

// The --path and --schedule values that re-run a row ("" for none: RoPE).
struct RunFlags {
  std::string path;
  std::string schedule;
};

// The worst of two measurements of the same case.
void merge_worst(Metrics* into, const Metrics& other) {
  into->max_abs_err = std::max(into->max_abs_err, other.max_abs_err);
  into->max_rel_err = std::max(into->max_rel_err, other.max_rel_err);
  into->max_err_over_tol = std::max(into->max_err_over_tol, other.max_err_over_tol);
  into->nonfinite = std::max(into->nonfinite, other.nonfinite);
  if (other.bad > into->bad) {
    into->bad = other.bad;
    into->detail = other.detail;
  }
}

float median(std::vector<float> values) {
  if (values.empty()) return 0.0f;
  std::nth_element(values.begin(), values.begin() + values.size() / 2, values.end());
  return values[values.size() / 2];
}

// A run's output and how it compared with the reference.
struct Checked {
  KernelOutput output;
  Metrics metrics;
};

// Runs one row: `repeat` runs with `polluter` (null: none), pattern seeds
// seed, seed + 1, ... Compared with the reference unless its bits equal
// `clean`'s; every repeat must reproduce the first. Keeps the first run's
// output in *first (for the comparisons that follow).
Row run_row(Kernel& kernel, const Polluter* polluter, uint64_t seed, int repeat, const Checked* clean,
            Checked* first) {
  Row row;
  row.path = "-";
  row.schedule = "-";
  row.polluter = polluter != nullptr ? testing::polluter_variant_name(*polluter, seed) : "none";
  row.repeats = repeat;
  std::vector<float> times;
  for (int r = 0; r < repeat; ++r) {
    KernelOutput output = kernel.run(polluter, seed + uint64_t(r));
    if (!output.status.ok()) {
      row.verdict = output.status.code == StatusCode::kUnsupported ? Verdict::kSkip : Verdict::kFail;
      row.notes.push_back(std::string(status_code_name(output.status.code)) + ": " + output.status.message);
      return row;
    }
    times.push_back(output.gpu_ms);
    const KernelOutput* baseline = r == 0 ? (clean != nullptr ? &clean->output : nullptr) : &first->output;
    std::string difference;
    if (baseline != nullptr) {
      ++row.bit_comparisons;
      difference = first_difference(kernel, *baseline, output);
    }
    if (!difference.empty()) {
      ++row.bit_differences;
      row.notes.push_back(r == 0 ? "bits differ from the clean run, " + difference
                                 : "repeat " + std::to_string(r + 1) + " differs from repeat 1, " + difference);
    }
    if (r == 0) {
      row.path = output.path;
      row.schedule = output.schedule;
      row.metrics = baseline != nullptr && difference.empty() ? clean->metrics : kernel.check(output);
      first->output = std::move(output);
      first->metrics = row.metrics;
    } else if (!difference.empty()) {
      merge_worst(&row.metrics, kernel.check(output));
    }
  }
  row.gpu_ms = median(std::move(times));
  if (!row.metrics.pass()) row.notes.insert(row.notes.begin(), row.metrics.detail);
  row.verdict = row.metrics.pass() && row.bit_differences == 0 ? Verdict::kPass : Verdict::kFail;
  return row;
}

class CaseRunner {
 public:
  CaseRunner(const Options& options, const char* program, Reporter& reporter)
      : options_(options), program_(program), reporter_(reporter) {}

  void run(int index, const ValidateCase& c, Prepared& prepared) {
    index_ = index;
    case_ = &c;
    // Presets shift the pattern seed per case, so the cases see different patterns.
    seed_ = options_.pollute_seed + (options_.preset.empty() ? 0 : uint64_t(index));
    polluters_ = c.forced_polluters;
    for (Polluter p : options_.polluters)
      if (std::find(polluters_.begin(), polluters_.end(), p) == polluters_.end()) polluters_.push_back(p);

    testing::DevicePrefillCase device(prepared.host);
    const std::string shape = case_shape(c.spec);
    std::vector<KvLoadPath> paths = load_paths(options_.path, prepared.host.config);
    const std::vector<testing::ScheduleChoice> schedules = schedule_choices(options_);
    auto skip = [&](const char* path, std::string why) {
      Row row;
      row.kernel = "prefill";
      row.path = path;
      row.schedule = "-";
      row.polluter = "-";
      row.shape = shape;
      row.verdict = Verdict::kSkip;
      row.notes.push_back(std::move(why));
      report(std::move(row), "");
    };
    if (paths.empty()) skip("tma", "the TMA load path cannot serve page size " + std::to_string(c.spec.page_size));
    const int32_t group = prepared.host.config.num_qo_heads / prepared.host.config.num_kv_heads;
    if (options_.gqa_packing == GqaPacking::kOn && 128 % group != 0) {
      skip("-", "--gqa-packing=on: the GQA group of " + std::to_string(group) + " qo heads does not divide 128");
      paths.clear();
    }
    if (options_.kv_stages > 0) {  // the (case, path) pairs the plan builds no such ring for are skipped
      std::vector<KvLoadPath> built;
      for (KvLoadPath path : paths) {
        PrefillConfig config = prepared.host.config;
        config.load_path = path;
        config.kv_stages = options_.kv_stages;
        PrefillPlan plan;
        const Status status = plan_prefill(config, prepared.host.indices(), plan);
        if (status.code == StatusCode::kUnsupported && status.message.find("kv_stages") != std::string::npos)
          skip(testing::load_path_name(path), "--kv-stages=" + std::to_string(options_.kv_stages) + ": " + status.message);
        else
          built.push_back(path);
      }
      paths = std::move(built);
    }
    // Every path under every schedule; the first clean run of each KV block
    // is the one the later clean runs walking that block must reproduce bit
    // for bit.
    std::vector<FirstClean> firsts;
    for (size_t i = 0; i < paths.size(); ++i) {
      for (size_t j = 0; j < schedules.size(); ++j) {
        const std::unique_ptr<Kernel> kernel = make_prefill_kernel(
            device, prepared.refs, paths[i], schedules[j],
            PlanOptions{options_.kv_splits, options_.gqa_packing, options_.kv_stages});
        const RunFlags own{testing::load_path_name(paths[i]), schedule_name(schedules[j].schedule)};
        run_rows(*kernel, "prefill", shape, own, &firsts, i, j);
      }
    }
    if (prepared.rope) {
      const std::unique_ptr<Kernel> kernel = make_rope_kernel(*prepared.rope);
      run_rows(*kernel, "rope", rope_shape(c.rope, *prepared.rope), RunFlags{}, nullptr, 0, 0);
    }
  }

 private:
  // The first passing clean run of a case's prefill rows that walks a KV
  // block, and the indices of its path and schedule.
  struct FirstClean {
    Checked clean;
    size_t path, schedule;
  };

  // The clean row, then one row per polluter the kernel accepts. A prefill
  // clean row (firsts given; this is path `path` under schedule `schedule`)
  // must also match, bit for bit, the first passing clean run in *firsts
  // that walks its KV block, or becomes that first itself. Returns the clean
  // run if it passed.
  std::optional<Checked> run_rows(Kernel& kernel, const char* name, const std::string& shape, const RunFlags& own,
                                  std::vector<FirstClean>* firsts, size_t path, size_t schedule) {
    Checked clean;
    Row row = run_row(kernel, nullptr, seed_, options_.repeat, nullptr, &clean);
    const FirstClean* first_clean = nullptr;
    if (firsts != nullptr)
      for (const FirstClean& f : *firsts)
        if (f.clean.output.block_kv == clean.output.block_kv) first_clean = &f;
    const Checked* first = first_clean != nullptr ? &first_clean->clean : nullptr;
    // Re-running this run and the first takes both paths or both schedules where they differ.
    const RunFlags with_first{first_clean == nullptr || first_clean->path == path ? own.path : "each",
                              first_clean == nullptr || first_clean->schedule == schedule ? own.schedule : "all"};
    if (first != nullptr && row.verdict == Verdict::kPass) {
      ++row.bit_comparisons;
      if (const std::string d = first_difference(kernel, first->output, clean.output); !d.empty()) {
        ++row.bit_differences;
        row.verdict = Verdict::kFail;
        row.notes.push_back("bits differ from the " + first->output.path + " path with the " +
                            first->output.schedule + " schedule, " + d);
      }
    }
    const bool clean_passed = row.verdict == Verdict::kPass;
    finish_row(std::move(row), name, shape, first != nullptr ? with_first : own, nullptr);
    if (!clean_passed) return std::nullopt;  // polluted runs need a good clean run to compare with
    if (firsts != nullptr && first_clean == nullptr) firsts->push_back({clean, path, schedule});
    for (const Polluter& p : polluters_) {
      if (!kernel.accepts(p)) continue;
      Checked polluted;
      finish_row(run_row(kernel, &p, seed_, options_.repeat, &clean, &polluted), name, shape, own, &p);
    }
    return clean;
  }

  void finish_row(Row row, const char* name, const std::string& shape, const RunFlags& flags,
                  const Polluter* polluter) {
    row.kernel = name;
    row.shape = shape;
    std::string rerun;
    if (row.verdict == Verdict::kFail) {
      rerun = std::string(program_) + " " + case_flags(*case_);
      if (!flags.path.empty()) rerun += " --path=" + flags.path;
      if (!flags.schedule.empty()) rerun += " --schedule=" + flags.schedule;
      if (!flags.schedule.empty() && flags.schedule != schedule_name(WorkSchedule::kOneItemPerCta) &&
          options_.max_ctas > 0)
        rerun += " --max-ctas=" + std::to_string(options_.max_ctas);
      if (!flags.schedule.empty()) rerun += plan_option_flags(options_);  // prefill rows only
      if (polluter != nullptr)
        rerun += std::string(" --pollute=") + testing::polluter_name(*polluter) + " --pollute-seed=" +
                 std::to_string(seed_);
      if (options_.repeat > 1) rerun += " --repeat=" + std::to_string(options_.repeat);
    }
    report(std::move(row), rerun);
  }

  void report(Row row, const std::string& rerun) {
    row.case_index = index_;
    row.rerun = rerun;
    reporter_.add(std::move(row));
  }

  const Options& options_;
  const char* program_;
  Reporter& reporter_;
  int index_ = 0;
  const ValidateCase* case_ = nullptr;
  uint64_t seed_ = 0;
  std::vector<Polluter> polluters_;
};

// After an exception: whether the GPU can still run the next case (a kernel
// fault leaves the context unusable; a failed host check does not).
bool cuda_context_usable() {
  cudaGetLastError();
  return cudaDeviceSynchronize() == cudaSuccess;
}

// Runs every case; the references of case i + 1 are computed on the CPU
// while the GPU runs case i.
int run_cases(const Options& options, const std::vector<ValidateCase>& cases, const char* program,
              Reporter& reporter) {
  CaseRunner runner(options, program, reporter);
  const int n = int(cases.size());
  auto prepare_async = [&](int i) {
    return std::async(std::launch::async, prepare, std::cref(cases[i]), options.threads);
  };
  std::future<std::unique_ptr<Prepared>> next = prepare_async(0);
  bool aborted = false;
  for (int i = 0; i < n && !aborted; ++i) {
    try {
      std::unique_ptr<Prepared> prepared = next.get();
      if (i + 1 < n) next = prepare_async(i + 1);
      runner.run(i, cases[i], *prepared);
    } catch (const std::exception& e) {
      Row row;
      row.case_index = i;
      row.kernel = "-";
      row.path = "-";
      row.schedule = "-";
      row.polluter = "-";
      row.shape = case_shape(cases[i].spec);
      row.verdict = Verdict::kFail;
      row.notes.push_back(std::string("error: ") + e.what());
      row.rerun = std::string(program) + " " + case_flags(cases[i]);
      reporter.add(std::move(row));
      aborted = !cuda_context_usable();
      if (!aborted && i + 1 < n && !next.valid()) next = prepare_async(i + 1);
    }
    reporter.case_done();
  }
  return reporter.finish(aborted);
}

// Checks a single case on the host (no GPU): exit status 2 and a message
// when the library would refuse it.
std::string check_single_case(const Options& options) {
  testing::HostCase host;
  try {
    host = testing::make_case(options.single.spec);
  } catch (const std::exception& e) {
    return e.what();
  }
  if (const Status s = validate_batch_indices(host.config, host.indices()); !s.ok())
    return std::string("the library refuses this case (") + status_code_name(s.code) + "): " + s.message;
  if (options.path == PathChoice::kTma && !tma_load_path_supported(host.config))
    return "--path=tma: the TMA load path cannot serve page size " + std::to_string(host.config.page_size) +
           " at head dim " + std::to_string(host.config.head_dim) + " (use --path=gather or auto)";
  if (options.single.rope.mode != RopeMode::kNone) {
    const RopeSpec& spec = options.single.rope;
    const RopeConfig config = rope_config(spec, host.config.head_dim);
    if (const Status s = validate_rope_config(config); !s.ok())
      return std::string("the library refuses this RoPE configuration: ") + s.message;
    // The last position of a request is its offset + qo_len - 1.
    double max_position = 0;
    const std::vector<int32_t> offsets = rope_request_offsets(host, spec);
    for (size_t b = 0; b < offsets.size(); ++b)
      max_position = std::max(max_position, double(offsets[b]) + host.qo_indptr[b + 1] - host.qo_indptr[b]);
    if (max_position > double(kMaxRopePosition))
      return "--rope-offset=" + std::to_string(spec.position_offset) + ": positions reach " +
             std::to_string(int64_t(max_position)) + ", beyond the 2^24 the RoPE accuracy contract covers";
    const double cache_gib = max_position * config.rotary_dim * sizeof(float) / double(1 << 30);
    if (spec.use_cache && cache_gib > kMaxCacheGiB) {
      char text[160];
      std::snprintf(text, sizeof(text),
                    "--rope-cache with --rope-offset=%d needs a %.1f GiB cos/sin cache (at most %.0f)",
                    spec.position_offset, cache_gib, kMaxCacheGiB);
      return text;
    }
  }
  return "";
}

std::string command_line(int argc, char** argv) {
  std::string text;
  for (int i = 0; i < argc; ++i) text += (i ? " " : "") + std::string(argv[i]);
  return text;
}

int validate_main(int argc, char** argv) {
  const char* program = argv[0];
  Options options;
  if (const std::string error = parse_options(argc, argv, &options); !error.empty()) {
    std::fprintf(stderr, "ptxattn-validate: %s\nRun '%s --help' for the options.\n", error.c_str(), program);
    return kExitUsage;
  }
  if (options.help) {
    std::printf("%s", usage_text(program).c_str());
    return kExitPass;
  }
  std::string notes;
  const std::vector<ValidateCase> cases = make_cases(options, &notes);
  if (options.preset.empty()) {
    if (const std::string error = check_single_case(options); !error.empty()) {
      std::fprintf(stderr, "ptxattn-validate: %s\nRun '%s --help' for the options.\n", error.c_str(), program);
      return kExitUsage;
    }
  }
  if (options.list) {
    for (const ValidateCase& c : cases) std::printf("%s\n", case_flags(c).c_str());
    return kExitPass;
  }
  if (cases.empty()) {
    std::fprintf(stderr, "ptxattn-validate: --preset=%s has no case this library was built for (%s)\n",
                 options.preset.c_str(), notes.c_str());
    return kExitUsage;
  }
  // Before any allocation: a machine without an SM90 GPU gets a message, not a crash.
  std::string device;
  if (!testing::have_sm90_gpu(&device)) {
    std::fprintf(stderr, "ptxattn-validate: no usable SM90 GPU: %s\n", device.c_str());
    return kExitNoGpu;
  }
  std::vector<std::string> flags;
  for (const ValidateCase& c : cases) flags.push_back(case_flags(c));
  Reporter reporter(options, std::move(flags), command_line(argc, argv), device);
  std::ostringstream heading;
  heading << "ptxattn-validate on " << device << ": "
          << (options.preset.empty() ? "single case" : "preset " + options.preset) << ", " << cases.size()
          << " cases, path " << path_choice_name(options.path) << ", schedule "
          << schedule_selection_name(options.schedule);
  if (options.max_ctas > 0) heading << ", max_ctas " << options.max_ctas;
  if (options.kv_splits > 0) heading << ", kv_splits " << options.kv_splits;
  if (options.gqa_packing != GqaPacking::kAuto) heading << ", gqa_packing " << gqa_packing_name(options.gqa_packing);
  if (options.kv_stages > 0) heading << ", kv_stages " << options.kv_stages;
  heading << ", polluters";
  if (options.polluters.empty()) heading << " none";
  for (Polluter p : options.polluters) heading << " " << testing::polluter_name(p);
  heading << ", repeat " << options.repeat;
  reporter.message(heading.str());
  if (!notes.empty()) reporter.message(notes);
  return run_cases(options, cases, program, reporter);
}

}  // namespace
}  // namespace ptxattn::validator

int main(int argc, char** argv) {
  try {
    return ptxattn::validator::validate_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ptxattn-validate: error: %s\n", e.what());
    return ptxattn::validator::kExitFailure;
  }
}
