// ptxattn-validate output (see validate_report.hpp).
#include "tools/validate_report.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

namespace ptxattn::validator {
namespace {

constexpr int kProgressBarWidth = 30;

const char* verdict_name(Verdict v) { return v == Verdict::kPass ? "PASS" : v == Verdict::kFail ? "FAIL" : "SKIP"; }

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void print_header() {
  std::printf("%4s %-7s %-6s %-16s %-22s %9s %9s %8s %5s %-4s %-6s %9s  %s\n", "case", "kernel", "path", "schedule",
              "polluter", "max_abs", "max_rel", "err/tol", "nan", "bits", "result", "gpu_ms", "shape");
}

void print_row(const Row& r) {
  std::printf("%4d %-7s %-6s %-16s %-22s %9.2e %9.2e %8.3f %5lld %-4s %-6s %9.3f  %s\n", r.case_index,
              r.kernel.c_str(), r.path.c_str(), r.schedule.c_str(), r.polluter.c_str(), r.metrics.max_abs_err,
              r.metrics.max_rel_err, r.metrics.max_err_over_tol, static_cast<long long>(r.metrics.nonfinite),
              r.bits(), verdict_name(r.verdict), double(r.gpu_ms), r.shape.c_str());
  for (const std::string& note : r.notes) std::printf("       %s\n", note.c_str());
  if (!r.rerun.empty()) std::printf("       re-run: %s\n", r.rerun.c_str());
}

// ---- JSON ----

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
      out += escaped;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

// JSON has no NaN or Inf: those become null.
std::string json_number(double value, int digits = 9) {
  if (!std::isfinite(value)) return "null";
  char text[32];
  std::snprintf(text, sizeof(text), "%.*g", digits, value);
  return text;
}

std::string json_row(const Row& r) {
  std::ostringstream o;
  o << "{\"case\": " << r.case_index << ", \"kernel\": " << json_string(r.kernel)
    << ", \"path\": " << json_string(r.path) << ", \"schedule\": " << json_string(r.schedule)
    << ", \"polluter\": " << json_string(r.polluter)
    << ", \"shape\": " << json_string(r.shape) << ", \"repeats\": " << r.repeats
    << ", \"elements\": " << r.metrics.elements << ", \"max_abs_err\": " << json_number(r.metrics.max_abs_err)
    << ", \"max_rel_err\": " << json_number(r.metrics.max_rel_err)
    << ", \"max_err_over_tol\": " << json_number(r.metrics.max_err_over_tol)
    << ", \"nonfinite\": " << r.metrics.nonfinite << ", \"bad\": " << r.metrics.bad
    << ", \"bit_comparisons\": " << r.bit_comparisons << ", \"bit_differences\": " << r.bit_differences
    << ", \"gpu_ms\": " << json_number(r.gpu_ms, 4) << ", \"result\": " << json_string(verdict_name(r.verdict))
    << ", \"notes\": [";
  for (size_t i = 0; i < r.notes.size(); ++i) o << (i ? ", " : "") << json_string(r.notes[i]);
  o << "], \"rerun\": " << (r.rerun.empty() ? "null" : json_string(r.rerun)) << "}";
  return o.str();
}

struct Totals {
  int passed = 0, failed = 0, skipped = 0;
  int64_t nonfinite = 0;
  int64_t bit_comparisons = 0, bit_differences = 0;
  std::map<std::string, const Row*> worst;  // per kernel: the largest err/tol
};

Totals totals_of(const std::vector<Row>& rows) {
  Totals t;
  for (const Row& r : rows) {
    switch (r.verdict) {
      case Verdict::kPass: ++t.passed; break;
      case Verdict::kFail: ++t.failed; break;
      case Verdict::kSkip: ++t.skipped; break;
    }
    t.nonfinite += r.metrics.nonfinite;
    t.bit_comparisons += r.bit_comparisons;
    t.bit_differences += r.bit_differences;
    if (r.verdict == Verdict::kSkip || r.kernel == "-") continue;
    const Row*& worst = t.worst[r.kernel];
    if (worst == nullptr || r.metrics.max_err_over_tol > worst->metrics.max_err_over_tol) worst = &r;
  }
  return t;
}

}  // namespace

Reporter::Reporter(const Options& options, std::vector<std::string> case_flags, std::string command,
                   std::string device)
    : options_(options),
      case_flags_(std::move(case_flags)),
      num_cases_(int(case_flags_.size())),
      command_(std::move(command)),
      device_(std::move(device)) {
  const bool show = !options.no_progress && num_cases_ > 1;
  progress_tty_ = show && isatty(STDERR_FILENO);
  progress_lines_ = show && !progress_tty_;
}

void Reporter::clear_progress() {
  if (!progress_drawn_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  progress_drawn_ = false;
}

void Reporter::draw_progress() {
  const double elapsed = seconds_since(start_);
  if (progress_tty_) {
    const int filled = num_cases_ > 0 ? cases_done_ * kProgressBarWidth / num_cases_ : 0;
    std::string bar(size_t(filled), '=');
    bar.resize(kProgressBarWidth, ' ');
    std::fprintf(stderr, "\r[%s] %d/%d cases  %.0f s", bar.c_str(), cases_done_, num_cases_, elapsed);
    if (cases_done_ > 0 && cases_done_ < num_cases_)
      std::fprintf(stderr, "  ~%.0f s left", elapsed / cases_done_ * (num_cases_ - cases_done_));
    std::fflush(stderr);
    progress_drawn_ = true;
  } else if (progress_lines_) {
    const int decile = cases_done_ * 10 / num_cases_;
    if (decile == last_progress_decile_) return;
    last_progress_decile_ = decile;
    std::fprintf(stderr, "progress: %d/%d cases, %.0f s\n", cases_done_, num_cases_, elapsed);
  }
}

void Reporter::message(const std::string& line) {
  clear_progress();
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  draw_progress();
}

void Reporter::add(Row row) {
  const bool show = !options_.only_failures || row.verdict == Verdict::kFail;
  if (show) {
    clear_progress();
    if (!header_printed_) print_header();
    header_printed_ = true;
    print_row(row);
    std::fflush(stdout);
    draw_progress();
  }
  rows_.push_back(std::move(row));
}

void Reporter::case_done() {
  ++cases_done_;
  draw_progress();
}

int Reporter::finish(bool aborted) {
  clear_progress();
  const Totals t = totals_of(rows_);
  const int exit_status = t.failed > 0 || aborted ? 1 : 0;
  std::printf("\n%d of %d cases run, %zu rows: %d passed, %d failed, %d skipped; %lld non-finite outputs; "
              "%lld bit-identity checks, %lld differ; %.1f s\n",
              cases_done_, num_cases_, rows_.size(), t.passed, t.failed, t.skipped, static_cast<long long>(t.nonfinite),
              static_cast<long long>(t.bit_comparisons), static_cast<long long>(t.bit_differences),
              seconds_since(start_));
  for (const auto& [kernel, worst] : t.worst) {
    std::printf("worst err/tol of %s: %.3f (case %d, path %s, schedule %s, polluter %s)\n", kernel.c_str(),
                worst->metrics.max_err_over_tol, worst->case_index, worst->path.c_str(), worst->schedule.c_str(),
                worst->polluter.c_str());
  }
  if (aborted) std::printf("stopped early: the CUDA context is unusable after an error (see above)\n");
  if (t.failed > 0) {
    std::printf("failed rows:\n");
    for (const Row& r : rows_)
      if (r.verdict == Verdict::kFail)
        std::printf("  case %d %s %s %s %s: %s\n", r.case_index, r.kernel.c_str(), r.path.c_str(),
                    r.schedule.c_str(), r.polluter.c_str(), r.rerun.c_str());
  }
  if (!options_.json_path.empty() && !write_json(aborted, exit_status)) {
    std::fprintf(stderr, "ptxattn-validate: cannot write %s\n", options_.json_path.c_str());
    return 1;
  }
  std::printf("%s\n", exit_status == 0 ? "PASS" : "FAIL");
  std::fflush(stdout);
  return exit_status;
}

bool Reporter::write_json(bool aborted, int exit_status) const {
  std::ofstream out(options_.json_path);
  if (!out) return false;
  const Totals t = totals_of(rows_);
  out << "{\n  \"tool\": \"ptxattn-validate\",\n  \"command\": " << json_string(command_)
      << ",\n  \"device\": " << json_string(device_)
      << ",\n  \"preset\": " << (options_.preset.empty() ? "null" : json_string(options_.preset))
      << ",\n  \"options\": {\"path\": " << json_string(path_choice_name(options_.path))
      << ", \"schedule\": " << json_string(schedule_selection_name(options_.schedule))
      << ", \"max_ctas\": " << options_.max_ctas << ", \"kv_splits\": " << options_.kv_splits
      << ", \"gqa_packing\": " << json_string(gqa_packing_name(options_.gqa_packing))
      << ", \"kv_stages\": " << options_.kv_stages << ", \"pollute\": [";
  for (size_t i = 0; i < options_.polluters.size(); ++i)
    out << (i ? ", " : "") << json_string(testing::polluter_name(options_.polluters[i]));
  out << "], \"pollute_seed\": " << options_.pollute_seed << ", \"repeat\": " << options_.repeat
      << ", \"seed\": " << options_.seed << "},\n  \"cases\": [\n";
  for (size_t i = 0; i < case_flags_.size(); ++i)
    out << "    {\"case\": " << i << ", \"flags\": " << json_string(case_flags_[i]) << "}"
        << (i + 1 < case_flags_.size() ? ",\n" : "\n");
  out << "  ],\n  \"rows\": [\n";
  for (size_t i = 0; i < rows_.size(); ++i)
    out << "    " << json_row(rows_[i]) << (i + 1 < rows_.size() ? ",\n" : "\n");
  out << "  ],\n  \"summary\": {\"cases\": " << num_cases_ << ", \"cases_run\": " << cases_done_
      << ", \"rows\": " << rows_.size() << ", \"passed\": " << t.passed << ", \"failed\": " << t.failed
      << ", \"skipped\": " << t.skipped << ", \"nonfinite\": " << t.nonfinite
      << ", \"bit_comparisons\": " << t.bit_comparisons << ", \"bit_differences\": " << t.bit_differences
      << ", \"worst_err_over_tol\": {";
  for (auto it = t.worst.begin(); it != t.worst.end(); ++it)
    out << (it == t.worst.begin() ? "" : ", ") << json_string(it->first) << ": "
        << json_number(it->second->metrics.max_err_over_tol);
  out << "}"
      << ", \"aborted\": " << (aborted ? "true" : "false") << ", \"seconds\": " << json_number(seconds_since(start_))
      << ", \"result\": " << json_string(exit_status == 0 ? "PASS" : "FAIL") << ", \"exit_status\": " << exit_status
      << "}\n}\n";
  return bool(out);
}

}  // namespace ptxattn::validator
