// Eigen CPU reference for batch prefill attention (see attention.hpp).
//
// Work is split into items of (request, qo head, block of query rows) and
// spread over std::threads. An item gathers the K/V rows its queries can see
// into dense matrices, so the math below is the same for paged (NHD/HND) and
// ragged caches; only Problem::kv_offset knows the layouts.
#include "reference/attention.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>

#include "reference/numeric.hpp"

namespace ptxattn::ref {
namespace {

template <typename Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// NOTES: 128 query rows per item keep the K/V gather (kv_len·D reads) small
// next to the GEMMs (128·kv_len·D multiply-adds) while long requests still
// split into enough items to keep 16 threads busy.
constexpr int64_t kRowsPerItem = 128;
constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr double kLog2e = 1.4426950408889634074;
constexpr double kLn2 = 0.69314718055994530942;

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("ref::prefill: " + what); }

struct Request {
  int64_t q_begin = 0;
  int64_t qo_len = 0;
  int64_t kv_len = 0;
};

// Keys [begin, end) that query `row` of a request sees (attention.hpp has the rule).
struct KeyRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

KeyRange visible_keys(const PrefillOptions& options, const Request& request, int64_t row) {
  const int64_t pos = request.kv_len - request.qo_len + row;
  int64_t begin = 0;
  int64_t end = request.kv_len;
  if (options.causal) end = std::min(end, pos + 1);
  if (options.window_left >= 0) begin = std::max(begin, pos - options.window_left);
  return {begin, std::max(begin, end)};
}

struct WorkItem {
  int32_t request = 0;
  int32_t qo_head = 0;
  int64_t row_begin = 0;  // query rows [row_begin, row_end) of the request
  int64_t row_end = 0;
};

// The validated inputs of one prefill call.
struct Problem {
  PrefillConfig config;
  BatchIndices indices;
  HostTensors tensors;
  std::vector<Request> requests;
  int64_t num_q_tokens = 0;

  int32_t head_dim() const { return config.head_dim; }
  int32_t kv_head_of(int32_t qo_head) const {
    return qo_head / (config.num_qo_heads / config.num_kv_heads);
  }

  // Element offset of K/V row `token` of `request`, head `kv_head`, dim 0.
  int64_t kv_offset(int32_t request, int64_t token, int32_t kv_head) const {
    const int64_t heads = config.num_kv_heads;
    const int64_t dim = config.head_dim;
    if (config.kv_format == KvFormat::kRagged) {
      return ((indices.kv_indptr[request] + token) * heads + kv_head) * dim;
    }
    const int64_t page_size = config.page_size;
    const int64_t page = indices.kv_indices[indices.kv_indptr[request] + token / page_size];
    const int64_t slot = token % page_size;
    if (config.kv_layout == KvLayout::kNHD) return ((page * page_size + slot) * heads + kv_head) * dim;
    return ((page * heads + kv_head) * page_size + slot) * dim;
  }

  double sm_scale() const {
    return config.options.sm_scale != 0.0f ? double(config.options.sm_scale)
                                           : 1.0 / std::sqrt(double(config.head_dim));
  }
};

Problem make_problem(const PrefillConfig& config, const BatchIndices& indices, const HostTensors& tensors) {
  Problem problem{config, indices, tensors, {}, 0};
  if (config.head_dim <= 0) fail("head_dim must be > 0, got " + std::to_string(config.head_dim));
  if (config.num_qo_heads <= 0 || config.num_kv_heads <= 0 || config.num_qo_heads % config.num_kv_heads != 0) {
    fail("num_qo_heads (" + std::to_string(config.num_qo_heads) + ") must be a positive multiple of num_kv_heads (" +
         std::to_string(config.num_kv_heads) + ")");
  }
  const int32_t num_requests = indices.num_requests;
  if (num_requests < 0) fail("num_requests must be >= 0, got " + std::to_string(num_requests));
  if (indices.qo_indptr == nullptr || indices.kv_indptr == nullptr) fail("qo_indptr and kv_indptr must not be null");
  if (indices.qo_indptr[0] != 0) fail("qo_indptr[0] must be 0, got " + std::to_string(indices.qo_indptr[0]));
  const bool paged = config.kv_format == KvFormat::kPaged;
  if (paged && config.page_size <= 0) fail("page_size must be > 0, got " + std::to_string(config.page_size));
  if (paged && num_requests > 0 && indices.kv_last_page_len == nullptr) fail("kv_last_page_len must not be null");
  if (paged && indices.kv_indptr[num_requests] > indices.kv_indptr[0] && indices.kv_indices == nullptr) {
    fail("kv_indices must not be null when pages are listed");
  }
  if (indices.kv_indptr[0] < 0) fail("kv_indptr[0] must be >= 0, got " + std::to_string(indices.kv_indptr[0]));

  int64_t num_kv_tokens = 0;
  for (int32_t b = 0; b < num_requests; ++b) {
    const std::string at = "[" + std::to_string(b) + "]";
    Request request;
    request.q_begin = indices.qo_indptr[b];
    request.qo_len = int64_t(indices.qo_indptr[b + 1]) - indices.qo_indptr[b];
    const int64_t kv_count = int64_t(indices.kv_indptr[b + 1]) - indices.kv_indptr[b];
    if (request.qo_len < 0) fail("qo_indptr decreases at " + at);
    if (kv_count < 0) fail("kv_indptr decreases at " + at);
    request.kv_len = kv_count;
    if (paged && kv_count > 0) {
      for (int64_t i = indices.kv_indptr[b]; i < indices.kv_indptr[b + 1]; ++i) {
        if (indices.kv_indices[i] < 0 || indices.kv_indices[i] >= config.num_pages) {
          fail("kv_indices[" + std::to_string(i) + "] = " + std::to_string(indices.kv_indices[i]) +
               " is outside the pool of " + std::to_string(config.num_pages) + " pages");
        }
      }
      const int32_t last = indices.kv_last_page_len[b];
      if (last < 1 || last > config.page_size) {
        fail("kv_last_page_len" + at + " = " + std::to_string(last) + " must be in [1, page_size = " +
             std::to_string(config.page_size) + "]");
      }
      request.kv_len = int64_t(config.page_size) * (kv_count - 1) + last;
    }
    num_kv_tokens += request.kv_len;
    problem.requests.push_back(request);
  }
  problem.num_q_tokens = indices.qo_indptr[num_requests];
  if (problem.num_q_tokens > 0 && tensors.q == nullptr) fail("q must not be null");
  if (num_kv_tokens > 0 && (tensors.k == nullptr || tensors.v == nullptr)) fail("k and v must not be null");
  return problem;
}

// Items in decreasing cost, so the long ones do not start last.
std::vector<WorkItem> make_work_items(const Problem& problem) {
  std::vector<WorkItem> items;
  for (int32_t b = 0; b < int32_t(problem.requests.size()); ++b) {
    const Request& request = problem.requests[b];
    for (int32_t head = 0; head < problem.config.num_qo_heads; ++head) {
      for (int64_t row = 0; row < request.qo_len; row += kRowsPerItem) {
        items.push_back({b, head, row, std::min(request.qo_len, row + kRowsPerItem)});
      }
    }
  }
  auto cost = [&](const WorkItem& item) {
    return (item.row_end - item.row_begin) * (problem.requests[item.request].kv_len + 1);
  };
  std::stable_sort(items.begin(), items.end(),
                   [&](const WorkItem& a, const WorkItem& b) { return cost(a) > cost(b); });
  return items;
}

template <typename Fn>
void parallel_for(int64_t count, int num_threads, const Fn& fn) {
  int64_t threads = num_threads > 0 ? num_threads : int64_t(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::min(threads, count);
  std::atomic<int64_t> next{0};
  auto worker = [&] {
    for (int64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) fn(i);
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& thread : pool) thread.join();
}

// The dense operands of one work item: its query rows and the keys any of them sees.
template <typename Scalar>
struct ItemOperands {
  KeyRange span;                 // union of the rows' visible key ranges
  std::vector<KeyRange> ranges;  // per row, relative to span.begin
  RowMatrix<Scalar> q, k, v;     // [rows][D], [span][D], [span][D]
};

template <typename Scalar>
bool gather_operands(const Problem& problem, const WorkItem& item, ItemOperands<Scalar>* ops) {
  const Request& request = problem.requests[item.request];
  const int64_t rows = item.row_end - item.row_begin;
  const int32_t dim = problem.head_dim();
  const DType dtype = problem.config.dtype;
  ops->span = {std::numeric_limits<int64_t>::max(), 0};
  ops->ranges.resize(rows);
  for (int64_t r = 0; r < rows; ++r) {
    const KeyRange keys = visible_keys(problem.config.options, request, item.row_begin + r);
    ops->ranges[r] = keys;
    if (keys.size() == 0) continue;
    ops->span.begin = std::min(ops->span.begin, keys.begin);
    ops->span.end = std::max(ops->span.end, keys.end);
  }
  if (ops->span.end == 0) return false;  // every row fully masked: outputs keep 0 / -inf
  for (KeyRange& keys : ops->ranges) {
    keys = keys.size() == 0 ? KeyRange{0, 0} : KeyRange{keys.begin - ops->span.begin, keys.end - ops->span.begin};
  }

  ops->q.resize(rows, dim);
  const int64_t q_row_stride = int64_t(problem.config.num_qo_heads) * dim;
  const uint16_t* q = problem.tensors.q + (request.q_begin + item.row_begin) * q_row_stride + int64_t(item.qo_head) * dim;
  for (int64_t r = 0; r < rows; ++r) {
    for (int32_t d = 0; d < dim; ++d) ops->q(r, d) = Scalar(to_float(q[r * q_row_stride + d], dtype));
  }
  const int32_t kv_head = problem.kv_head_of(item.qo_head);
  ops->k.resize(ops->span.size(), dim);
  ops->v.resize(ops->span.size(), dim);
  for (int64_t t = 0; t < ops->span.size(); ++t) {
    const int64_t offset = problem.kv_offset(item.request, ops->span.begin + t, kv_head);
    for (int32_t d = 0; d < dim; ++d) {
      ops->k(t, d) = Scalar(to_float(problem.tensors.k[offset + d], dtype));
      ops->v(t, d) = Scalar(to_float(problem.tensors.v[offset + d], dtype));
    }
  }
  return true;
}

struct Outputs {
  std::vector<double>* out = nullptr;
  std::vector<double>* lse = nullptr;  // may be null
  ErrorScales* scales = nullptr;       // kExact only; may be null
};

// Index of query row `row` of the item's request, head `qo_head`, in [tokens][H_qo].
int64_t output_row(const Problem& problem, const WorkItem& item, int64_t row) {
  return (problem.requests[item.request].q_begin + item.row_begin + row) * problem.config.num_qo_heads + item.qo_head;
}

void fill_error_scales(const Problem& problem, const WorkItem& item, const ItemOperands<double>& ops,
                       const RowMatrix<double>& probabilities, ErrorScales* scales) {
  const int32_t dim = problem.head_dim();
  // NOTES: these only scale tolerances, so fp32 GEMMs (half the cost of
  // fp64) are accurate enough.
  const RowMatrix<float> p = probabilities.cast<float>();
  const RowMatrix<float> v = ops.v.cast<float>();
  const RowMatrix<float> abs_weighted = p * v.cwiseAbs();
  const RowMatrix<float> squares_weighted = p.cwiseAbs2() * v.cwiseAbs2();
  // Column prefix sums of v², so Σ over any visible range is one subtraction.
  RowMatrix<double> v_square_prefix = RowMatrix<double>::Zero(ops.span.size() + 1, dim);
  for (int64_t t = 0; t < ops.span.size(); ++t) {
    v_square_prefix.row(t + 1) = v_square_prefix.row(t) + ops.v.row(t).cwiseAbs2();
  }
  const Eigen::VectorXd k_norms = ops.k.rowwise().norm();
  const double sm_scale = std::fabs(problem.sm_scale());
  for (int64_t r = 0; r < ops.q.rows(); ++r) {
    const KeyRange keys = ops.ranges[r];
    if (keys.size() == 0) continue;
    const int64_t row = output_row(problem, item, r);
    scales->visible_keys[row] = int32_t(keys.size());
    scales->score_bound[row] = float(sm_scale * ops.q.row(r).norm() * k_norms.segment(keys.begin, keys.size()).maxCoeff());
    for (int32_t d = 0; d < dim; ++d) {
      const int64_t e = row * dim + d;
      scales->abs_weighted[e] = abs_weighted(r, d);
      scales->rms_weighted[e] = std::sqrt(squares_weighted(r, d));
      scales->v_norm[e] = float(std::sqrt(v_square_prefix(keys.end, d) - v_square_prefix(keys.begin, d)));
    }
  }
}

void run_exact_item(const Problem& problem, const WorkItem& item, const Outputs& outputs) {
  ItemOperands<double> ops;
  if (!gather_operands(problem, item, &ops)) return;
  const PrefillOptions& options = problem.config.options;
  const double sm_scale = problem.sm_scale();
  const double cap = options.logits_soft_cap;
  // [rows][span]: scores, then the normalised probabilities (0 where masked).
  RowMatrix<double> probabilities = ops.q * ops.k.transpose();
  for (int64_t r = 0; r < probabilities.rows(); ++r) {
    const KeyRange keys = ops.ranges[r];
    auto row = probabilities.row(r);
    double max_score = -kInfinity;
    for (int64_t j = keys.begin; j < keys.end; ++j) {
      double s = sm_scale * row(j);
      if (cap > 0.0) s = cap * std::tanh(s / cap);
      row(j) = s;
      max_score = std::max(max_score, s);
    }
    double sum = 0.0;
    for (int64_t j = 0; j < row.size(); ++j) {
      const bool visible = j >= keys.begin && j < keys.end;
      row(j) = visible ? std::exp(row(j) - max_score) : 0.0;  // masked by selection
      sum += row(j);
    }
    if (keys.size() == 0) continue;  // output 0, lse -inf (already there)
    row /= sum;
    if (outputs.lse) (*outputs.lse)[output_row(problem, item, r)] = max_score + std::log(sum);
  }
  const RowMatrix<double> o = probabilities * ops.v;
  const int32_t dim = problem.head_dim();
  for (int64_t r = 0; r < o.rows(); ++r) {
    if (ops.ranges[r].size() == 0) continue;
    double* dst = outputs.out->data() + output_row(problem, item, r) * dim;
    for (int32_t d = 0; d < dim; ++d) dst[d] = o(r, d);
  }
  if (outputs.scales) fill_error_scales(problem, item, ops, probabilities, outputs.scales);
}

// The kernel's arithmetic: fp32 scores; logits in log2 units via one FMA with
// the folded scale (sm_scale·log2e, or cap·log2e after the tanh); p from exp2
// relative to the row max; l summed from fp32 p; P rounded to the dtype for
// P·V; O = acc · (1/l) rounded to the dtype. One pass with the final row max
// stands in for the kernel's online rescaling (docs/validation.md bounds the
// difference).
void run_gpu_item(const Problem& problem, const WorkItem& item, const Outputs& outputs) {
  ItemOperands<float> ops;
  if (!gather_operands(problem, item, &ops)) return;
  const PrefillOptions& options = problem.config.options;
  const DType dtype = problem.config.dtype;
  const float sm_scale = float(problem.sm_scale());
  const bool capped = options.logits_soft_cap > 0.0f;
  const float tanh_input_scale = capped ? sm_scale / options.logits_soft_cap : 0.0f;
  const float log2_scale = float((capped ? double(options.logits_soft_cap) : double(sm_scale)) * kLog2e);
  const float ln2 = float(kLn2);

  RowMatrix<float> p = ops.q * ops.k.transpose();  // scores, then P as rounded to the dtype
  std::vector<float> row_sum(p.rows(), 0.0f);
  for (int64_t r = 0; r < p.rows(); ++r) {
    const KeyRange keys = ops.ranges[r];
    auto row = p.row(r);
    float max_scaled = -std::numeric_limits<float>::infinity();
    for (int64_t j = keys.begin; j < keys.end; ++j) {
      if (capped) row(j) = std::tanh(row(j) * tanh_input_scale);
      max_scaled = std::max(max_scaled, row(j) * log2_scale);
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < row.size(); ++j) {
      const bool visible = j >= keys.begin && j < keys.end;
      const float pj = visible ? std::exp2(std::fma(row(j), log2_scale, -max_scaled)) : 0.0f;
      sum += pj;
      row(j) = round_to(pj, dtype);
    }
    row_sum[r] = sum;
    if (keys.size() > 0 && outputs.lse) {
      (*outputs.lse)[output_row(problem, item, r)] = double((max_scaled + std::log2(sum)) * ln2);
    }
  }
  const RowMatrix<float> acc = p * ops.v;
  const int32_t dim = problem.head_dim();
  for (int64_t r = 0; r < acc.rows(); ++r) {
    if (ops.ranges[r].size() == 0) continue;
    const float inv_sum = 1.0f / row_sum[r];
    double* dst = outputs.out->data() + output_row(problem, item, r) * dim;
    for (int32_t d = 0; d < dim; ++d) dst[d] = double(round_to(acc(r, d) * inv_sum, dtype));
  }
}

void run(const PrefillConfig& config, const BatchIndices& indices, const HostTensors& tensors, Rounding rounding,
         const Outputs& outputs, int num_threads) {
  if (outputs.out == nullptr) fail("out must not be null");
  const Problem problem = make_problem(config, indices, tensors);
  const int64_t rows = problem.num_q_tokens * config.num_qo_heads;
  const int64_t elements = rows * config.head_dim;
  outputs.out->assign(elements, 0.0);
  if (outputs.lse) outputs.lse->assign(rows, -kInfinity);
  if (outputs.scales) {
    outputs.scales->abs_weighted.assign(elements, 0.0f);
    outputs.scales->rms_weighted.assign(elements, 0.0f);
    outputs.scales->v_norm.assign(elements, 0.0f);
    outputs.scales->score_bound.assign(rows, 0.0f);
    outputs.scales->visible_keys.assign(rows, 0);
  }
  const std::vector<WorkItem> items = make_work_items(problem);
  parallel_for(int64_t(items.size()), num_threads, [&](int64_t i) {
    if (rounding == Rounding::kExact) {
      run_exact_item(problem, items[i], outputs);
    } else {
      run_gpu_item(problem, items[i], outputs);
    }
  });
}

}  // namespace

void prefill(const PrefillConfig& config, const BatchIndices& indices, const HostTensors& tensors, Rounding rounding,
             std::vector<double>* out, std::vector<double>* lse, int num_threads) {
  run(config, indices, tensors, rounding, Outputs{out, lse, nullptr}, num_threads);
}

void prefill_exact_with_scales(const PrefillConfig& config, const BatchIndices& indices, const HostTensors& tensors,
                               std::vector<double>* out, std::vector<double>* lse, ErrorScales* scales,
                               int num_threads) {
  run(config, indices, tensors, Rounding::kExact, Outputs{out, lse, scales}, num_threads);
}

}  // namespace ptxattn::ref
