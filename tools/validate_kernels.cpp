// The kernels ptxattn-validate checks (see validate_kernels.hpp).
#include "tools/validate_kernels.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <sstream>

#include "reference/numeric.hpp"
#include "reference/rope.hpp"
#include "tests/common/rope_data.hpp"

namespace ptxattn::validator {
namespace {

using testing::decode;
using testing::DeviceBuffer;
using testing::Polluter;

// The RoPE keys are drawn from the generator with this seed offset, so they
// differ from the case's own K/V values.
constexpr uint64_t kRopeKeySeedOffset = 0x6B657973ull;  // "keys"

// "request 2 token 17" from a token index of the whole batch.
std::string token_in_request(const std::vector<int32_t>& qo_indptr, int64_t token) {
  const auto next = std::upper_bound(qo_indptr.begin(), qo_indptr.end(), token);
  const int64_t request = int64_t(next - qo_indptr.begin()) - 1;
  return "request " + std::to_string(request) + " token " + std::to_string(token - qo_indptr[size_t(request)]);
}

std::string hex_bits(uint32_t bits, int digits) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%0*X", digits, bits);
  return text;
}

// ---------------------------------------------------------------------------
// prefill
// ---------------------------------------------------------------------------

class PrefillKernel final : public Kernel {
 public:
  PrefillKernel(testing::DevicePrefillCase& device, const testing::References& refs, KvLoadPath path,
                const testing::ScheduleChoice& schedule, const PlanOptions& plan)
      : device_(device), refs_(refs), path_(path), schedule_(schedule), plan_(plan) {}

  KernelOutput run(const Polluter* polluter, uint64_t seed) override {
    std::function<void()> before;
    if (polluter != nullptr) before = [&] { testing::run_polluter(*polluter, device_, seed); };
    testing::PrefillRun run =
        device_.run(path_, before, schedule_, KvBlock::kAuto, plan_.kv_splits, plan_.gqa_packing, plan_.kv_stages);
    if (polluter != nullptr && *polluter == Polluter::kCacheSlots) testing::restore_case_kv(device_);
    KernelOutput output;
    output.status = run.status;
    output.path = testing::load_path_name(run.path);
    output.schedule = schedule_name(run.schedule);
    output.block_kv = run.block_kv;
    output.gpu_ms = run.gpu_ms;
    output.values16 = std::move(run.out);
    output.values32 = std::move(run.lse);
    output.contract_failure = run.lse_contract_failure();
    return output;
  }

  Metrics check(const KernelOutput& output) const override {
    // values32 is empty when the case does not ask for LSE: then only o is compared.
    const float* lse = output.values32.empty() ? nullptr : output.values32.data();
    const testing::CompareResult r = testing::compare_prefill(device_.host(), refs_, output.values16.data(), lse);
    Metrics m;
    m.elements = r.num_elements + (lse != nullptr ? int64_t(refs_.lse_exact.size()) : 0);
    m.max_abs_err = r.max_abs_err;
    m.max_rel_err = r.max_rel_err;
    m.max_err_over_tol = r.max_err_over_tol;
    m.nonfinite = r.nonfinite_count + r.lse_nonfinite_count;
    m.bad = r.bad_count + r.lse_bad_count;
    if (!r.pass) m.detail = r.summary();
    if (!output.contract_failure.empty()) {
      ++m.bad;
      m.detail += (m.detail.empty() ? "" : "; ") + output.contract_failure;
    }
    return m;
  }

  std::string locate16(int64_t index) const override {
    const PrefillConfig& cfg = device_.host().config;
    const int64_t row = index / cfg.head_dim;
    return "output " + row_name(row) + " dim " + std::to_string(index % cfg.head_dim);
  }

  std::string locate32(int64_t index) const override { return "lse " + row_name(index); }

  bool accepts(Polluter) const override { return true; }

 private:
  // Row (token · H_qo + head) of o / lse.
  std::string row_name(int64_t row) const {
    const testing::HostCase& c = device_.host();
    return token_in_request(c.qo_indptr, row / c.config.num_qo_heads) + " head " +
           std::to_string(row % c.config.num_qo_heads);
  }

  testing::DevicePrefillCase& device_;
  const testing::References& refs_;
  KvLoadPath path_;
  testing::ScheduleChoice schedule_;
  PlanOptions plan_;
};

// ---------------------------------------------------------------------------
// rope
// ---------------------------------------------------------------------------

// Accumulates per-element results into Metrics; remembers the first bad one.
class MetricsBuilder {
 public:
  // `where()` names the element; called only for the first bad one.
  // Returns whether the element passed.
  template <typename Where>
  bool add(double got, double expected, double tol, double scale, const Where& where) {
    const double err = std::abs(got - expected);
    if (std::isfinite(got)) {
      m_.max_abs_err = std::max(m_.max_abs_err, err);
      if (scale > 0.0) m_.max_rel_err = std::max(m_.max_rel_err, err / scale);
      if (tol > 0.0) m_.max_err_over_tol = std::max(m_.max_err_over_tol, err / tol);
    }
    if (err <= tol) return true;  // NaN fails
    if (m_.bad++ > 0) return false;
    std::ostringstream text;
    text.precision(8);
    text << "first bad: " << where() << ": got " << got << ", expected " << expected << " (tol " << tol << ", err "
         << err << ")";
    first_bad_ = text.str();
    return false;
  }

  // A bit-exact requirement: `what` says against what.
  template <typename Where>
  void add_bits(uint16_t got, uint16_t expected, const Where& where, const char* what) {
    if (got == expected || m_.bad++ > 0) return;
    first_bad_ = "first bad: " + where() + ": bits " + hex_bits(got, 4) + ", expected " + hex_bits(expected, 4) +
                 " (" + what + ")";
  }

  Metrics finish(int64_t elements, int64_t nonfinite) {
    m_.elements = elements;
    m_.nonfinite = nonfinite;
    if (m_.bad > 0) m_.detail = std::to_string(m_.bad) + "/" + std::to_string(m_.elements) + " bad, " +
                                std::to_string(m_.nonfinite) + " non-finite; " + first_bad_;
    return m_;
  }

 private:
  Metrics m_;
  std::string first_bad_;
};

// Checks RoPE outputs against the host references (no GPU).
//   q_out, k_out  rotated dims within ref::rope_rotated_tolerance() of the exact
//                 rotation; dims past rotary_dim bit-identical to the input
//   cache         every cos/sin within ref::kRopeCosSinBound of the exact value, and
//                 the rotation bit-identical to the reference fed that cache
class RopeChecker {
 public:
  explicit RopeChecker(const RopeHost& host) : h_(host) {}

  // output.values16: q_out then k_out; values32: the cache (use_cache).
  Metrics check(const KernelOutput& output) const {
    MetricsBuilder metrics;
    const uint16_t* q_out = output.values16.data();
    const uint16_t* k_out = q_out + h_.q.size();
    std::vector<uint16_t> q_model, k_model;  // use_cache: the reference fed the GPU's cache
    if (h_.use_cache) {
      for (size_t i = 0; i < output.values32.size(); ++i)
        metrics.add(output.values32[i], h_.cache_exact[i], ref::kRopeCosSinBound, 1.0,
                    [&] { return locate32(int64_t(i)); });
      q_model = rotate_with_cache(h_.q, h_.num_qo_heads, output.values32);
      k_model = rotate_with_cache(h_.k, h_.num_kv_heads, output.values32);
    }
    check_rotation(h_.q, h_.q_exact, q_model, q_out, 0, &metrics);
    check_rotation(h_.k, h_.k_exact, k_model, k_out, int64_t(h_.q.size()), &metrics);
    // Every input and cos/sin value is finite, so every output must be.
    int64_t nonfinite = 0;
    for (uint16_t bits : output.values16) nonfinite += !std::isfinite(ref::to_float(bits, h_.dtype));
    for (float value : output.values32) nonfinite += !std::isfinite(value);
    return metrics.finish(int64_t(output.values16.size() + output.values32.size()), nonfinite);
  }

  std::string locate16(int64_t index) const {
    const bool is_q = index < int64_t(h_.q.size());
    const int64_t local = is_q ? index : index - int64_t(h_.q.size());
    const int64_t heads = is_q ? h_.num_qo_heads : h_.num_kv_heads;
    const int64_t row = local / h_.head_dim;
    return std::string(is_q ? "q_out " : "k_out ") + token_in_request(h_.qo_indptr, row / heads) + " head " +
           std::to_string(row % heads) + " dim " + std::to_string(local % h_.head_dim);
  }

  std::string locate32(int64_t index) const {
    const int32_t rotary_dim = h_.config.rotary_dim;
    const int64_t column = index % rotary_dim;
    const bool is_cos = column < rotary_dim / 2;
    return "cos/sin cache position " + std::to_string(index / rotary_dim) + (is_cos ? " cos " : " sin ") +
           std::to_string(is_cos ? column : column - rotary_dim / 2);
  }

 private:
  // One tensor (rows of head_dim) against its exact rotation, and against
  // `model` bit for bit where given.
  void check_rotation(const std::vector<uint16_t>& in, const std::vector<double>& exact,
                      const std::vector<uint16_t>& model, const uint16_t* out, int64_t base,
                      MetricsBuilder* metrics) const {
    const int32_t head_dim = h_.head_dim, rotary_dim = h_.config.rotary_dim;
    for (size_t row_start = 0; row_start < in.size(); row_start += size_t(head_dim)) {
      for (int32_t d = 0; d < head_dim; ++d) {
        const size_t i = row_start + size_t(d);
        auto where = [&] { return locate16(base + int64_t(i)); };
        if (d >= rotary_dim) {
          metrics->add_bits(out[i], in[i], where, "dims past rotary_dim are copied");
          continue;
        }
        const size_t partner = row_start + size_t(ref::rope_pair_partner(d, rotary_dim, h_.config.interleave));
        const double pair_magnitude =
            std::abs(ref::to_double(in[i], h_.dtype)) + std::abs(ref::to_double(in[partner], h_.dtype));
        const bool within = metrics->add(ref::to_double(out[i], h_.dtype), exact[i],
                                         ref::rope_rotated_tolerance(exact[i], pair_magnitude, ref::kRopeCosSinBound,
                                                                     h_.dtype),
                                         pair_magnitude, where);
        if (within && !model.empty())
          metrics->add_bits(out[i], model[i], where, "the reference rotation with the GPU's own cos/sin cache");
      }
    }
  }

  // The kGpu rotation of `in` with the GPU's cos/sin cache, rounded to the dtype.
  std::vector<uint16_t> rotate_with_cache(const std::vector<uint16_t>& in, int32_t heads,
                                          const std::vector<float>& gpu_cache) const {
    const std::vector<double> rotated =
        ref::apply_rope_with_cos_sin_cache(decode(in, h_.dtype), heads, h_.head_dim, h_.positions, gpu_cache,
                                           h_.max_position, h_.config.rotary_dim, h_.config.interleave,
                                           ref::Rounding::kGpu);
    std::vector<uint16_t> bits(rotated.size());
    for (size_t i = 0; i < rotated.size(); ++i) bits[i] = ref::from_float(float(rotated[i]), h_.dtype);
    return bits;
  }

  const RopeHost& h_;
};

class RopeKernel final : public Kernel {
 public:
  explicit RopeKernel(const RopeHost& host)
      : h_(host),
        checker_(host),
        q_in_(testing::upload_vector(host.q)),
        k_in_(testing::upload_vector(host.k)),
        q_out_(std::max<size_t>(host.q.size() * sizeof(uint16_t), 16)),
        k_out_(std::max<size_t>(host.k.size() * sizeof(uint16_t), 16)),
        indptr_(testing::upload_vector(host.qo_indptr)),
        offsets_(testing::upload_vector(host.offsets)),
        pos_ids_(testing::upload_vector(host.positions)),
        cache_(host.use_cache ? cache_floats() * sizeof(float) : 16) {}

  KernelOutput run(const Polluter* polluter, uint64_t seed) override {
    // The outputs start as NaN, or as the outputs polluter's pattern.
    const bool pollute_outputs = polluter != nullptr && *polluter == Polluter::kOutputs;
    const uint32_t word = pollute_outputs ? testing::output_pattern(seed).word : testing::pattern::kQuietNaN;
    q_out_.fill_u32(word);
    k_out_.fill_u32(word);
    cache_.fill_u32(word);
    if (polluter != nullptr && !pollute_outputs) testing::run_state_polluter(*polluter, seed);

    KernelOutput output;
    output.path = "-";
    output.schedule = "-";
    const testing::CudaEvent start, stop;
    PTXATTN_CUDA_CHECK(cudaEventRecord(start.get(), nullptr));
    output.status = launch();
    if (!output.status.ok()) return output;
    PTXATTN_CUDA_CHECK(cudaEventRecord(stop.get(), nullptr));
    output.gpu_ms = testing::elapsed_ms(start, stop);
    PTXATTN_CUDA_CHECK(cudaDeviceSynchronize());

    output.values16.resize(h_.q.size() + h_.k.size());
    if (!h_.q.empty()) q_out_.download(output.values16.data(), h_.q.size() * sizeof(uint16_t));
    if (!h_.k.empty()) k_out_.download(output.values16.data() + h_.q.size(), h_.k.size() * sizeof(uint16_t));
    if (h_.use_cache) {
      output.values32.resize(cache_floats());
      if (!output.values32.empty()) cache_.download(output.values32.data(), output.values32.size() * sizeof(float));
    }
    return output;
  }

  Metrics check(const KernelOutput& output) const override { return checker_.check(output); }
  std::string locate16(int64_t index) const override { return checker_.locate16(index); }
  std::string locate32(int64_t index) const override { return checker_.locate32(index); }

  // RoPE has no paged cache to poison.
  bool accepts(Polluter polluter) const override { return polluter != Polluter::kCacheSlots; }

 private:
  size_t cache_floats() const { return size_t(h_.max_position) * size_t(h_.config.rotary_dim); }

  RopeTensors tensors() {
    RopeTensors t;
    t.dtype = h_.dtype;
    t.head_dim = h_.head_dim;
    t.num_qo_heads = h_.num_qo_heads;
    t.num_kv_heads = h_.num_kv_heads;
    t.num_tokens = h_.num_tokens();
    t.q_in = q_in_.get(), t.k_in = k_in_.get(), t.q_out = q_out_.get(), t.k_out = k_out_.get();
    return t;
  }

  // apply_rope with request offsets, or the cache build and the cache
  // variant with per-token positions.
  Status launch() {
    if (!h_.use_cache) {
      RopePositions positions;
      positions.num_requests = int32_t(h_.offsets.size());
      positions.indptr = indptr_.as<int32_t>();
      positions.offsets = offsets_.as<int32_t>();
      return apply_rope(tensors(), positions, h_.config, nullptr);
    }
    const int32_t rotary_dim = h_.config.rotary_dim;
    const Status built = build_rope_cos_sin_cache(cache_.as<float>(), h_.max_position, rotary_dim, h_.config, nullptr);
    if (!built.ok()) return built;
    return apply_rope_with_cos_sin_cache(tensors(), pos_ids_.as<int32_t>(), cache_.as<float>(), h_.max_position,
                                         rotary_dim, h_.config.interleave, nullptr);
  }

  const RopeHost& h_;
  RopeChecker checker_;
  DeviceBuffer q_in_, k_in_, q_out_, k_out_, indptr_, offsets_, pos_ids_, cache_;
};

}  // namespace

std::string first_difference(const Kernel& kernel, const KernelOutput& a, const KernelOutput& b) {
  if (a.values16.size() != b.values16.size() || a.values32.size() != b.values32.size()) return "output sizes differ";
  const int64_t at16 = testing::first_bit_difference(a.values16.data(), b.values16.data(), int64_t(a.values16.size()));
  if (at16 >= 0)
    return "first at " + kernel.locate16(at16) + ": " + hex_bits(a.values16[size_t(at16)], 4) + " vs " +
           hex_bits(b.values16[size_t(at16)], 4);
  const int64_t at32 = testing::first_bit_difference(a.values32.data(), b.values32.data(), int64_t(a.values32.size()));
  if (at32 >= 0) {
    return "first at " + kernel.locate32(at32) + ": " + hex_bits(ref::bits_of_float(a.values32[size_t(at32)]), 8) +
           " vs " + hex_bits(ref::bits_of_float(b.values32[size_t(at32)]), 8);
  }
  return "";
}

std::unique_ptr<Kernel> make_prefill_kernel(testing::DevicePrefillCase& device, const testing::References& refs,
                                            KvLoadPath path, const testing::ScheduleChoice& schedule,
                                            const PlanOptions& plan) {
  return std::make_unique<PrefillKernel>(device, refs, path, schedule, plan);
}

const char* schedule_name(WorkSchedule schedule) {
  switch (schedule) {
    case WorkSchedule::kOneItemPerCta: return "one-item-per-cta";
    case WorkSchedule::kPersistent: return "persistent";
    case WorkSchedule::kDynamic: return "dynamic";
    case WorkSchedule::kAuto: break;
  }
  return "auto";
}

RopeConfig rope_config(const RopeSpec& spec, int32_t head_dim) {
  RopeConfig config;
  config.rotary_dim = spec.rotary_dim > 0 ? spec.rotary_dim : head_dim;
  config.interleave = spec.mode == RopeMode::kInterleave;
  config.theta = spec.theta;
  config.rope_scale = spec.scale;
  config.llama31 = spec.llama31;
  return config;
}

std::vector<int32_t> rope_request_offsets(const testing::HostCase& c, const RopeSpec& spec) {
  std::vector<int32_t> offsets;
  for (int32_t b = 0; b < c.num_requests(); ++b) {
    // Query i of a request sits at kv_len - qo_len + i (from 0 when it has more queries than keys).
    const int64_t qo_len = c.qo_indptr[b + 1] - c.qo_indptr[b];
    offsets.push_back(int32_t(std::max<int64_t>(0, c.kv_len(b) - qo_len)) + spec.position_offset);
  }
  return offsets;
}

RopeHost make_rope_host(const testing::HostCase& c, const RopeSpec& spec) {
  RopeHost h;
  h.config = rope_config(spec, c.config.head_dim);
  h.use_cache = spec.use_cache;
  h.dtype = c.config.dtype;
  h.head_dim = c.config.head_dim;
  h.num_qo_heads = c.config.num_qo_heads;
  h.num_kv_heads = c.config.num_kv_heads;
  h.qo_indptr = c.qo_indptr;

  // The keys of the same tokens, from the one generator (another seed).
  testing::CaseSpec key_spec;
  key_spec.seed = c.seed + kRopeKeySeedOffset;
  key_spec.dtype = h.dtype;
  key_spec.num_qo_heads = key_spec.num_kv_heads = h.num_kv_heads;
  key_spec.head_dim = h.head_dim;
  key_spec.format = KvFormat::kRagged;
  key_spec.extra_rows = 0;
  for (int32_t b = 0; b < c.num_requests(); ++b) key_spec.qo_lens.push_back(c.qo_indptr[b + 1] - c.qo_indptr[b]);
  key_spec.kv_lens.assign(key_spec.qo_lens.size(), 0);
  h.offsets = rope_request_offsets(c, spec);
  h.positions = ref::rope_positions_from_indptr(h.qo_indptr, h.offsets);
  h.max_position = h.positions.empty() ? 1 : *std::max_element(h.positions.begin(), h.positions.end()) + 1;

  h.q = c.q;
  h.k = testing::make_case(key_spec).q;  // [tokens][H_kv][D]
  h.q_exact = ref::apply_rope(decode(h.q, h.dtype), h.num_qo_heads, h.head_dim, h.positions, h.config,
                              ref::Rounding::kExact);
  h.k_exact = ref::apply_rope(decode(h.k, h.dtype), h.num_kv_heads, h.head_dim, h.positions, h.config,
                              ref::Rounding::kExact);
  if (h.use_cache) h.cache_exact = ref::rope_cos_sin_cache(h.max_position, h.config, ref::Rounding::kExact);
  return h;
}

std::unique_ptr<Kernel> make_rope_kernel(const RopeHost& host) { return std::make_unique<RopeKernel>(host); }

}  // namespace ptxattn::validator
