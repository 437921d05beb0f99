// Catch2 v2 main of ptxattn-tests-gpu.
//
// Without an SM90 GPU no test runs: every test case the command line selects
// is printed as "SKIPPED (no SM90 GPU: <why>): <name>", then one summary line,
// and the exit code is 0. The tests are skipped visibly and never reported as
// passed (scripts/test.sh counts these lines as skipped). With a GPU, Catch
// runs normally, except that test cases needing a build option this build
// left out (tag [bounded-wait]: bounded_waits) are printed as
// "SKIPPED (not built: <option>): <name>", followed by
// "ptxattn-tests-gpu: N skipped (not built in this configuration)", and
// taken out of the run (scripts/test.sh counts them as skipped); a filter
// that selected only such tests is then reported by Catch as matching none.
//
// With PTXATTN_TEST_CHILD set, the executable is the child process of a
// bounded-wait test instead (tests/gpu/bounded_wait_child.hpp).
#define CATCH_CONFIG_RUNNER
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "tests/common/gpu_test.hpp"
#include "tests/gpu/bounded_wait_child.hpp"

namespace {

// The test cases the command line selects (hidden ones excluded, as Catch
// would run them), from a config without the reporter's output file.
std::vector<Catch::TestCase> selected_tests(const Catch::ConfigData& options) {
  Catch::ConfigData selection = options;
  selection.outputFilename.clear();
  const Catch::Config config(selection);
  return Catch::filterTests(Catch::getAllTestCasesSorted(config), config.testSpec(), config);
}

// The command line's test spec with `exclusion` (e.g. "~[tag]") added to
// every filter. Catch v2 ORs filters separated by commas and ANDs what one
// filter collects, across arguments too; a backslash escapes the next character.
std::vector<std::string> exclude_from_every_filter(const std::vector<std::string>& spec,
                                                   const std::string& exclusion) {
  std::vector<std::string> out;
  bool filter_has_content = false;
  auto add_piece = [&](const std::string& piece) {
    if (piece.find_first_not_of(' ') == std::string::npos) return;
    out.push_back(piece);
    filter_has_content = true;
  };
  for (const std::string& arg : spec) {
    std::string piece;
    for (size_t i = 0; i < arg.size(); ++i) {
      if (arg[i] == '\\' && i + 1 < arg.size()) {
        piece += arg[i];
        piece += arg[++i];
      } else if (arg[i] == ',') {
        add_piece(piece);
        if (filter_has_content) out.push_back(exclusion);
        out.push_back(",");
        piece.clear();
        filter_has_content = false;
      } else {
        piece += arg[i];
      }
    }
    add_piece(piece);
  }
  if (filter_has_content || spec.empty()) out.push_back(exclusion);
  return out;
}

bool has_tag(const Catch::TestCase& test, const std::string& tag) {
  const std::vector<std::string>& tags = test.getTestCaseInfo().lcaseTags;
  return std::find(tags.begin(), tags.end(), tag) != tags.end();
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* mode = std::getenv(ptxattn::testing::kTestChildEnv)) {
    const int rc = ptxattn::testing::bounded_wait_child_main(mode);
    // NOTES: after the trap the CUDA context is unusable; exiting without the
    // runtime's teardown keeps the exit code and the output what the test sees.
    std::fflush(nullptr);
    std::_Exit(rc);
  }

  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;

  const Catch::ConfigData& options = session.configData();
  const bool only_listing = options.listTests || options.listTestNamesOnly || options.listTags || options.listReporters;
  std::string why;
  if (only_listing || options.showHelp) return session.run();
  if (ptxattn::testing::have_sm90_gpu(&why)) {
    if (ptxattn::bounded_waits_built()) return session.run();
    const std::string tag = ptxattn::testing::kBoundedWaitTag;
    const std::vector<Catch::TestCase> selected = selected_tests(options);
    size_t not_built = 0;
    for (const Catch::TestCase& test : selected) {
      if (!has_tag(test, tag)) continue;
      std::printf("SKIPPED (not built: bounded_waits): %s\n", test.getTestCaseInfo().name.c_str());
      ++not_built;
    }
    if (not_built == 0) return session.run();
    std::printf("ptxattn-tests-gpu: %zu skipped (not built in this configuration)\n", not_built);
    if (not_built == selected.size()) return 0;
    Catch::ConfigData without = options;
    without.testsOrTags = exclude_from_every_filter(options.testsOrTags, "~[" + tag + "]");
    session.useConfigData(without);
    return session.run();
  }

  // The same selection Catch would run, without leaving an empty report
  // behind for a run that did not happen.
  const std::vector<Catch::TestCase> selected = selected_tests(options);
  for (const Catch::TestCase& test : selected)
    std::printf("SKIPPED (no SM90 GPU: %s): %s\n", why.c_str(), test.getTestCaseInfo().name.c_str());
  std::printf("ptxattn-tests-gpu: 0 test cases run, %zu skipped (no SM90 GPU: %s)\n", selected.size(), why.c_str());
  return 0;
}
