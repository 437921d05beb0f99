// ptxattn-validate output: the table (stdout), the progress line (stderr),
// the summary and the JSON file.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tools/validate_cli.hpp"
#include "tools/validate_kernels.hpp"

namespace ptxattn::validator {

enum class Verdict { kPass, kFail, kSkip };

// One (case, kernel, load path, schedule, polluter), over all its repeats.
struct Row {
  int case_index = 0;
  std::string kernel;    // "prefill" or "rope"
  std::string path;      // the load path the plan chose; "-" for RoPE
  std::string schedule;  // the work schedule the plan chose; "-" for RoPE
  std::string polluter;  // "none" or the polluter and its pattern ("smem/qNaN")
  std::string shape;
  int repeats = 0;
  Metrics metrics;       // the worst over the repeats
  int bit_comparisons = 0;
  int bit_differences = 0;
  float gpu_ms = 0.0f;   // median over the repeats
  Verdict verdict = Verdict::kPass;
  std::vector<std::string> notes;  // why it failed or was skipped
  std::string rerun;               // command line running this case alone (failures)

  const char* bits() const { return bit_comparisons == 0 ? "-" : bit_differences > 0 ? "DIFF" : "same"; }
};

class Reporter {
 public:
  // case_flags: each case as single-case flags; command: the command line
  // as given (both for the JSON file).
  Reporter(const Options& options, std::vector<std::string> case_flags, std::string command, std::string device);

  void add(Row row);      // prints the row (unless --only-failures hides it) and keeps it
  void case_done();       // advances the progress line
  void message(const std::string& line);  // a line in the table output
  // Prints the summary, writes --json; returns the exit status (0 pass, 1 failure).
  int finish(bool aborted);

 private:
  void clear_progress();
  void draw_progress();
  bool write_json(bool aborted, int exit_status) const;

  const Options& options_;
  std::vector<std::string> case_flags_;
  int num_cases_;
  int cases_done_ = 0;
  std::string command_;
  std::string device_;
  std::vector<Row> rows_;
  bool header_printed_ = false;
  bool progress_tty_ = false;      // redraw one line in place
  bool progress_lines_ = false;    // a line every 10 %
  bool progress_drawn_ = false;
  int last_progress_decile_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace ptxattn::validator
