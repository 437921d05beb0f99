// Checks a GPU prefill output against the CPU references with a per-element
// tolerance derived from the kernel's rounding (docs/validation.md,
// "Tolerances"), and compares raw buffers for bit identity.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/attention.hpp"
#include "reference/testdata.hpp"

namespace ptxattn::testing {

// Both references of one case plus the scales the tolerance is built from.
struct References {
  std::vector<double> out_exact, lse_exact;  // Rounding::kExact
  std::vector<double> out_gpu, lse_gpu;      // Rounding::kGpu
  ref::ErrorScales scales;
};

References compute_references(const HostCase& c, int num_threads = 0);

// One element that failed (or the LSE of a row: dim = -1).
struct BadElement {
  bool found = false;
  int32_t request = -1;
  int32_t qo_head = -1;
  int64_t token = -1;  // within the request
  int32_t dim = -1;    // -1: the row's LSE
  double got = 0.0;
  double expected = 0.0;  // exact reference
  double tol = 0.0;
  std::string to_string() const;
};

struct CompareResult {
  bool pass = true;  // no bad output element and no bad LSE
  int64_t num_elements = 0;
  double max_abs_err = 0.0;       // max |got - exact|
  double max_rel_err = 0.0;       // max |got - exact| / max(|exact|, Σ_j p_j |v_jd|)
  double mean_abs_err = 0.0;
  double max_err_over_tol = 0.0;  // > 1 on a failure; the margin otherwise
  int64_t nonfinite_count = 0;    // NaN/Inf in the output
  int64_t bad_count = 0;          // elements over their tolerance (non-finite included)
  BadElement first_bad;           // lowest index

  bool lse_compared = false;
  double lse_max_abs_err = 0.0;   // over rows with a finite expected LSE
  int64_t lse_nonfinite_count = 0;  // NaN, +Inf, or -Inf where the row has visible keys
  int64_t lse_bad_count = 0;
  BadElement first_bad_lse;

  std::string summary() const;  // one line; names the first bad element(s)
};

struct CompareOptions {
  // Add |exact - gpu reference| to each tolerance. Off only to test that the
  // kGpu reference itself stays within the derived rounding bound.
  bool include_model_gap = true;
};

// gpu_out: [num_q_tokens][H_qo][D] raw dtype bits; gpu_lse: [num_q_tokens][H_qo]
// or null (LSE not compared). Expected -inf LSE matches only -inf.
CompareResult compare_prefill(const HostCase& c, const References& refs, const uint16_t* gpu_out,
                              const float* gpu_lse, const CompareOptions& options = {});

// Index of the first element whose bits differ, or -1 when all `count` match.
int64_t first_bit_difference(const uint16_t* a, const uint16_t* b, int64_t count);
int64_t first_bit_difference(const float* a, const float* b, int64_t count);

}  // namespace ptxattn::testing
