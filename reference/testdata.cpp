// Test-data generator (see testdata.hpp).
//
// NOTES: numbers come from a counter-based hash (splitmix64's finaliser of
// seed, stream and index), not from <random> distributions, so a case is the
// same on every standard library and value i never depends on how many
// values were drawn before it.
#include "reference/testdata.hpp"

#include <algorithm>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "reference/numeric.hpp"

namespace ptxattn::testing {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
constexpr int32_t kW1Tokens = 16384;

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(what); }

uint64_t mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Independent value streams of one seed.
enum class Stream : uint64_t { kQ = 1, kK = 2, kV = 3, kFiller = 4, kPageOrder = 5, kSpec = 6 };

uint64_t stream_key(uint64_t seed, Stream stream) { return mix64(mix64(seed + kGolden) ^ (uint64_t(stream) * kGolden)); }

// Uniform in [-1, 1): a pure function of (seed, stream, index).
double uniform_pm1(uint64_t key, uint64_t index) {
  const uint64_t bits = mix64(key + (index + 1) * kGolden);
  return double(bits >> 11) * 0x1p-52 - 1.0;
}

// Sequential draws (spec choices, the page permutation): splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t key) : state_(key) {}
  uint64_t next() { return mix64(state_ += kGolden); }
  // Uniform integer in [lo, hi]; lo when hi < lo.
  int64_t uniform_int(int64_t lo, int64_t hi) {
    if (hi <= lo) return lo;
    const auto span = uint64_t(hi - lo) + 1;
    return lo + int64_t((unsigned __int128)next() * span >> 64);
  }
  bool chance(double probability) { return double(next() >> 11) * 0x1p-53 < probability; }
  template <typename T>
  const T& pick(const std::vector<T>& options) {
    if (options.empty()) fail("random_spec: a RandomLimits choice list is empty");
    return options[size_t(uniform_int(0, int64_t(options.size()) - 1))];
  }

 private:
  uint64_t state_;
};

// What unused slots hold: NaN, +Inf, -Inf and a negative NaN with payload, in turn.
uint16_t poison_value(DType dtype, int64_t index) {
  static constexpr uint16_t kBf16[4] = {0x7FC0, 0x7F80, 0xFF80, 0xFFC1};
  static constexpr uint16_t kFp16[4] = {0x7E00, 0x7C00, 0xFC00, 0xFE01};
  return (dtype == DType::kBF16 ? kBf16 : kFp16)[index % 4];
}

void check_spec(const CaseSpec& spec) {
  if (spec.qo_lens.size() != spec.kv_lens.size()) {
    fail("make_case: qo_lens has " + std::to_string(spec.qo_lens.size()) + " entries but kv_lens has " +
         std::to_string(spec.kv_lens.size()));
  }
  if (spec.num_kv_heads <= 0 || spec.num_qo_heads <= 0 || spec.num_qo_heads % spec.num_kv_heads != 0) {
    fail("make_case: num_qo_heads " + std::to_string(spec.num_qo_heads) + " is not a positive multiple of num_kv_heads " +
         std::to_string(spec.num_kv_heads));
  }
  if (spec.head_dim <= 0) fail("make_case: head_dim must be > 0, got " + std::to_string(spec.head_dim));
  if (spec.format == KvFormat::kPaged && spec.page_size <= 0) {
    fail("make_case: page_size must be > 0, got " + std::to_string(spec.page_size));
  }
  if (spec.extra_pages < 0 || spec.extra_rows < 0) fail("make_case: extra_pages and extra_rows must be >= 0");
  for (size_t b = 0; b < spec.qo_lens.size(); ++b) {
    if (spec.qo_lens[b] < 0 || spec.kv_lens[b] < 0) {
      fail("make_case: request " + std::to_string(b) + " has a negative length (qo " + std::to_string(spec.qo_lens[b]) +
           ", kv " + std::to_string(spec.kv_lens[b]) + ")");
    }
  }
}

std::vector<int32_t> exclusive_prefix_sum(const std::vector<int32_t>& counts) {
  std::vector<int32_t> offsets(counts.size() + 1, 0);
  std::partial_sum(counts.begin(), counts.end(), offsets.begin() + 1);
  return offsets;
}

// Paged placement: pages per request, the (shuffled) pool order, last page lengths.
void place_pages(const CaseSpec& spec, HostCase* c) {
  const int32_t num_requests = int32_t(spec.kv_lens.size());
  std::vector<int32_t> pages(num_requests);
  for (int32_t b = 0; b < num_requests; ++b) {
    pages[b] = (spec.kv_lens[b] + spec.page_size - 1) / spec.page_size;
    c->kv_last_page_len.push_back(pages[b] == 0 ? 0 : spec.kv_lens[b] - spec.page_size * (pages[b] - 1));
  }
  c->kv_indptr = exclusive_prefix_sum(pages);
  const int32_t used_pages = c->kv_indptr.back();
  std::vector<int32_t> pool_order(size_t(used_pages) + spec.extra_pages);
  std::iota(pool_order.begin(), pool_order.end(), 0);
  if (spec.shuffle_pages) {  // Fisher-Yates
    Rng rng(stream_key(spec.seed, Stream::kPageOrder));
    for (int64_t i = int64_t(pool_order.size()) - 1; i > 0; --i) std::swap(pool_order[i], pool_order[rng.uniform_int(0, i)]);
  }
  c->kv_indices.assign(pool_order.begin(), pool_order.begin() + used_pages);
  c->config.num_pages = int32_t(pool_order.size());
  c->num_kv_rows = c->config.num_pages;
}

// Element offset of K/V token `token` of request b, head h, dim 0, in the case's storage.
int64_t kv_storage_offset(const HostCase& c, int32_t b, int64_t token, int32_t h) {
  const PrefillConfig& cfg = c.config;
  if (cfg.kv_format == KvFormat::kRagged) return ((c.kv_indptr[b] + token) * cfg.num_kv_heads + h) * cfg.head_dim;
  const int64_t page = c.kv_indices[c.kv_indptr[b] + token / cfg.page_size];
  const int64_t slot = token % cfg.page_size;
  if (cfg.kv_layout == KvLayout::kNHD) return ((page * cfg.page_size + slot) * cfg.num_kv_heads + h) * cfg.head_dim;
  return ((page * cfg.num_kv_heads + h) * cfg.page_size + slot) * cfg.head_dim;
}

void fill_kv(const CaseSpec& spec, HostCase* c) {
  const PrefillConfig& cfg = c->config;
  const int64_t row_elements = int64_t(cfg.num_kv_heads) * cfg.head_dim;
  const int64_t storage_rows = cfg.kv_format == KvFormat::kPaged ? c->num_kv_rows * cfg.page_size : c->num_kv_rows;
  c->k.resize(storage_rows * row_elements);
  c->v.resize(storage_rows * row_elements);
  // Every slot first gets the filler; the requests' rows then overwrite theirs.
  const uint64_t filler_key = stream_key(spec.seed, Stream::kFiller);
  for (int64_t i = 0; i < int64_t(c->k.size()); ++i) {
    c->k[i] = spec.poison_unused ? poison_value(cfg.dtype, i) : ref::from_float(float(uniform_pm1(filler_key, 2 * i)), cfg.dtype);
    c->v[i] = spec.poison_unused ? poison_value(cfg.dtype, i + 1) : ref::from_float(float(uniform_pm1(filler_key, 2 * i + 1)), cfg.dtype);
  }
  const uint64_t k_key = stream_key(spec.seed, Stream::kK);
  const uint64_t v_key = stream_key(spec.seed, Stream::kV);
  int64_t logical_token = 0;  // index of the token in the batch, independent of storage
  for (int32_t b = 0; b < int32_t(spec.kv_lens.size()); ++b) {
    for (int64_t t = 0; t < spec.kv_lens[b]; ++t, ++logical_token) {
      for (int32_t h = 0; h < cfg.num_kv_heads; ++h) {
        const int64_t offset = kv_storage_offset(*c, b, t, h);
        const int64_t logical = (logical_token * cfg.num_kv_heads + h) * cfg.head_dim;
        for (int32_t d = 0; d < cfg.head_dim; ++d) {
          c->k[offset + d] = ref::from_float(float(uniform_pm1(k_key, logical + d)), cfg.dtype);
          c->v[offset + d] = ref::from_float(float(uniform_pm1(v_key, logical + d)), cfg.dtype);
        }
      }
    }
  }
}

std::string join_lengths(const std::vector<int32_t>& lengths) {
  std::string text;
  for (int32_t n : lengths) text += (text.empty() ? "" : ",") + std::to_string(n);
  return "[" + text + "]";
}

}  // namespace

int64_t HostCase::kv_len(int32_t request) const {
  const int64_t count = int64_t(kv_indptr[request + 1]) - kv_indptr[request];
  if (config.kv_format == KvFormat::kRagged || count == 0) return count;
  return int64_t(config.page_size) * (count - 1) + kv_last_page_len[request];
}

BatchIndices HostCase::indices() const {
  BatchIndices indices;
  indices.num_requests = num_requests();
  indices.qo_indptr = qo_indptr.data();
  indices.kv_indptr = kv_indptr.data();
  if (config.kv_format == KvFormat::kPaged) {
    indices.kv_indices = kv_indices.data();
    indices.kv_last_page_len = kv_last_page_len.data();
  }
  return indices;
}

ref::HostTensors HostCase::tensors() const { return {q.data(), k.data(), v.data()}; }

std::string HostCase::describe() const {
  std::vector<int32_t> qo_lens, kv_lens;
  for (int32_t b = 0; b < num_requests(); ++b) {
    qo_lens.push_back(qo_indptr[b + 1] - qo_indptr[b]);
    kv_lens.push_back(int32_t(kv_len(b)));
  }
  std::ostringstream text;
  text << "seed " << seed << ": " << to_string(config.dtype) << " H " << config.num_qo_heads << "/"
       << config.num_kv_heads << " D " << config.head_dim << " " << to_string(config.kv_format);
  if (config.kv_format == KvFormat::kPaged) {
    text << " " << to_string(config.kv_layout) << " page " << config.page_size << " pool " << config.num_pages;
  }
  text << ", " << num_requests() << " requests";
  if (num_requests() <= 8) {
    text << " qo " << join_lengths(qo_lens) << " kv " << join_lengths(kv_lens);
  } else {
    text << " qo total " << num_q_tokens << " (max " << *std::max_element(qo_lens.begin(), qo_lens.end())
         << ") kv max " << *std::max_element(kv_lens.begin(), kv_lens.end());
  }
  const PrefillOptions& o = config.options;
  text << (o.causal ? ", causal" : ", full");
  if (o.window_left >= 0) text << ", window_left " << o.window_left;
  if (o.logits_soft_cap > 0.0f) text << ", soft cap " << o.logits_soft_cap;
  if (o.sm_scale != 0.0f) text << ", sm_scale " << o.sm_scale;
  if (o.return_lse) text << ", lse";
  return text.str();
}

HostCase make_case(const CaseSpec& spec) {
  check_spec(spec);
  HostCase c;
  c.seed = spec.seed;
  c.config.dtype = spec.dtype;
  c.config.num_qo_heads = spec.num_qo_heads;
  c.config.num_kv_heads = spec.num_kv_heads;
  c.config.head_dim = spec.head_dim;
  c.config.kv_format = spec.format;
  c.config.options = spec.options;
  const bool paged = spec.format == KvFormat::kPaged;
  c.config.kv_layout = paged ? spec.layout : KvLayout::kNHD;  // ragged K/V is NHD only
  c.config.page_size = paged ? spec.page_size : 0;

  c.qo_indptr = exclusive_prefix_sum(spec.qo_lens);
  c.num_q_tokens = c.qo_indptr.back();
  const uint64_t q_key = stream_key(spec.seed, Stream::kQ);
  c.q.resize(c.num_q_tokens * spec.num_qo_heads * spec.head_dim);
  for (int64_t i = 0; i < int64_t(c.q.size()); ++i) {
    c.q[i] = ref::from_float(float(spec.q_amplitude * uniform_pm1(q_key, i)), spec.dtype);
  }
  if (paged) {
    place_pages(spec, &c);
  } else {
    c.kv_indptr = exclusive_prefix_sum(spec.kv_lens);
    c.num_kv_rows = int64_t(c.kv_indptr.back()) + spec.extra_rows;
  }
  fill_kv(spec, &c);
  return c;
}

CaseSpec random_spec(uint64_t seed, const RandomLimits& limits) {
  Rng rng(stream_key(seed, Stream::kSpec));
  CaseSpec spec;
  spec.seed = seed;
  spec.dtype = rng.pick(limits.dtypes);
  spec.head_dim = rng.pick(limits.head_dims);
  spec.num_kv_heads = rng.pick(limits.kv_head_counts);
  spec.num_qo_heads = spec.num_kv_heads * rng.pick(limits.gqa_group_sizes);
  spec.format = rng.chance(limits.ragged_fraction) ? KvFormat::kRagged : KvFormat::kPaged;
  spec.layout = spec.format == KvFormat::kPaged && rng.chance(limits.hnd_fraction) ? KvLayout::kHND : KvLayout::kNHD;
  spec.page_size = rng.pick(limits.page_sizes);
  spec.q_amplitude = rng.chance(limits.peaked_fraction) ? 8.0f : 1.0f;
  PrefillOptions& options = spec.options;
  options.causal = rng.chance(limits.causal_fraction);
  if (rng.chance(limits.window_fraction)) options.window_left = int32_t(rng.uniform_int(0, limits.max_kv_len));
  if (rng.chance(limits.soft_cap_fraction)) options.logits_soft_cap = float(rng.uniform_int(1, 50));
  if (rng.chance(limits.custom_scale_fraction)) options.sm_scale = 0.05f * float(rng.uniform_int(1, 10));
  options.return_lse = rng.chance(0.75);

  const int64_t max_qo = std::max(1, limits.max_qo_len);
  const int64_t max_kv = std::max(1, limits.max_kv_len);
  const int32_t num_requests = int32_t(rng.uniform_int(1, std::max(1, limits.max_requests)));
  enum Kind { kEmpty, kSingleToken, kNoPrefix, kCachedPrefix, kOneIntoPage, kUnconstrained, kNoKv, kNumKinds };
  for (int32_t b = 0; b < num_requests; ++b) {
    int64_t qo = 0;
    int64_t kv = 0;
    switch (Kind(rng.uniform_int(0, kNumKinds - 1))) {
      case kEmpty:
        kv = rng.chance(0.5) ? 0 : rng.uniform_int(1, max_kv);
        qo = limits.allow_empty_requests ? 0 : 1;
        break;
      case kSingleToken:
        qo = 1;
        kv = rng.uniform_int(1, max_kv);
        break;
      case kNoPrefix:
        qo = kv = rng.uniform_int(1, std::min(max_qo, max_kv));
        break;
      case kCachedPrefix:
        qo = rng.uniform_int(1, std::max<int64_t>(1, std::min(max_qo, max_kv - 1)));
        kv = rng.uniform_int(qo + 1, std::max(qo + 1, max_kv));
        break;
      case kOneIntoPage:
        kv = int64_t(spec.page_size) * rng.uniform_int(0, (max_kv - 1) / spec.page_size) + 1;
        qo = rng.uniform_int(1, std::min(max_qo, kv));
        break;
      case kUnconstrained:
        qo = rng.uniform_int(limits.allow_empty_requests ? 0 : 1, max_qo);
        kv = rng.uniform_int(limits.allow_queries_without_kv ? 0 : 1, max_kv);
        break;
      case kNoKv:
        qo = rng.uniform_int(1, max_qo);
        kv = limits.allow_queries_without_kv && !options.causal ? 0 : rng.uniform_int(qo, std::max(qo, max_kv));
        break;
      case kNumKinds:
        break;
    }
    if (options.causal) kv = std::max(kv, qo);  // bottom-right alignment needs qo_len <= kv_len
    if (!limits.allow_queries_without_kv && qo > 0) kv = std::max<int64_t>(kv, 1);
    spec.qo_lens.push_back(int32_t(qo));
    spec.kv_lens.push_back(int32_t(kv));
  }
  if (std::accumulate(spec.qo_lens.begin(), spec.qo_lens.end(), int64_t(0)) == 0) {
    spec.qo_lens[0] = 1;
    spec.kv_lens[0] = std::max(spec.kv_lens[0], 1);
  }
  return spec;
}

CaseSpec w1_spec(int32_t seq_len, bool causal, int32_t page_size, uint64_t seed) {
  if (seq_len <= 0 || kW1Tokens % seq_len != 0) {
    fail("w1_spec: seq_len " + std::to_string(seq_len) + " must divide " + std::to_string(kW1Tokens));
  }
  if (page_size < 0) fail("w1_spec: page_size must be >= 0 (0: ragged), got " + std::to_string(page_size));
  CaseSpec spec;
  spec.seed = seed;
  spec.dtype = DType::kBF16;
  spec.num_qo_heads = 16;
  spec.num_kv_heads = 16;
  spec.head_dim = 128;
  spec.format = page_size > 0 ? KvFormat::kPaged : KvFormat::kRagged;
  spec.page_size = page_size;
  spec.qo_lens.assign(kW1Tokens / seq_len, seq_len);
  spec.kv_lens = spec.qo_lens;
  spec.options.causal = causal;
  return spec;
}

CaseSpec w2_spec(uint64_t seed) {
  CaseSpec spec;
  spec.seed = seed;
  spec.dtype = DType::kBF16;
  spec.num_qo_heads = 32;
  spec.num_kv_heads = 8;
  spec.head_dim = 128;
  spec.format = KvFormat::kPaged;
  spec.page_size = 16;
  spec.qo_lens = {1857, 916, 1680, 1951, 989, 210, 658, 1175, 1123, 957, 2008, 1733, 1827, 749, 1104, 861};
  spec.kv_lens = {3646, 2056, 3988, 3095, 1765, 2262, 1861, 3715, 1932, 1561, 4712, 5600, 2651, 3647, 4660, 3451};
  spec.options.causal = true;
  return spec;
}

std::string to_string(DType dtype) { return dtype == DType::kBF16 ? "bf16" : "fp16"; }
std::string to_string(KvLayout layout) { return layout == KvLayout::kNHD ? "NHD" : "HND"; }
std::string to_string(KvFormat format) { return format == KvFormat::kPaged ? "paged" : "ragged"; }
std::string to_string(ref::Rounding rounding) { return rounding == ref::Rounding::kExact ? "exact" : "gpu"; }

}  // namespace ptxattn::testing
