// CPU tests of the RoPE reference (reference/rope.hpp) against hand-computed
// values, of how the RoPE kernel splits its work (src/rope_params.hpp: every
// element of every row handled exactly once), and of the RoPE / append API
// validation (no GPU needed: every refused call returns before any CUDA call).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"
#include "reference/rope.hpp"
#include "src/rope_params.hpp"

namespace ptxattn {
namespace {

using ref::Rounding;

RopeConfig plain_rope(int32_t rotary_dim, bool interleave, float theta = 1e4f) {
  RopeConfig rope;
  rope.rotary_dim = rotary_dim;
  rope.interleave = interleave;
  rope.theta = theta;
  return rope;
}

// Published Llama 3.1 settings (Meta's reference code and HF config):
// theta 5e5, factor 8, low 1, high 4, original context 8192, head_dim 128.
RopeConfig llama31_rope() {
  RopeConfig rope = plain_rope(128, false, 5e5f);
  rope.rope_scale = 8.0f;
  rope.llama31 = true;
  rope.low_freq_factor = 1.0f;
  rope.high_freq_factor = 4.0f;
  rope.old_context_len = 8192;
  return rope;
}

TEST_CASE("rope reference: position 0 is the identity", "[rope][reference]") {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> value(-4.0f, 4.0f);
  std::vector<float> x(2 * 3 * 128);
  for (float& v : x) v = value(rng);
  for (Rounding rounding : {Rounding::kExact, Rounding::kGpu})
    for (bool interleave : {false, true})
      for (int32_t rotary_dim : {2, 20, 64, 128}) {
        const std::vector<double> out =
            ref::apply_rope(x, 3, 128, {0, 0}, plain_rope(rotary_dim, interleave), rounding);
        for (size_t i = 0; i < x.size(); ++i) REQUIRE(out[i] == double(x[i]));
      }
}

// x = [1, 2, 3, 4], rotary_dim 4, theta 4: freq_0 = 4^0 = 1, freq_1 = 4^(-2/4) = 0.5.
// At position 1 the angles are 1 and 0.5 rad:
//   cos 1 = 0.5403023058681398, sin 1 = 0.8414709848078965,
//   cos .5 = 0.8775825618903728, sin .5 = 0.4794255386042030.
// NeoX pairs (x0, x2) at freq 0 and (x1, x3) at freq 1:
//   out0 = 1 cos1 - 3 sin1 = -1.9841106485555495, out2 = 3 cos1 + 1 sin1 = 2.4623779024123156,
//   out1 = 2 cos.5 - 4 sin.5 = -0.1625370306360665, out3 = 4 cos.5 + 2 sin.5 = 4.469181324769897.
// GPT-J pairs (x0, x1) at freq 0 and (x2, x3) at freq 1:
//   out0 = 1 cos1 - 2 sin1 = -1.1426396637476532, out1 = 2 cos1 + 1 sin1 = 1.922075596544176,
//   out2 = 3 cos.5 - 4 sin.5 = 0.7150455312543063, out3 = 4 cos.5 + 3 sin.5 = 4.9486068633741.
TEST_CASE("rope reference: NeoX and GPT-J pairing on a 4-dim example", "[rope][reference]") {
  const std::vector<float> x = {1, 2, 3, 4};
  const std::vector<double> neox = {-1.9841106485555495, -0.1625370306360665, 2.4623779024123156, 4.469181324769897};
  const std::vector<double> gptj = {-1.1426396637476532, 1.922075596544176, 0.7150455312543063, 4.9486068633741};
  for (bool interleave : {false, true}) {
    const std::vector<double>& expected = interleave ? gptj : neox;
    const std::vector<double> exact = ref::apply_rope(x, 1, 4, {1}, plain_rope(4, interleave, 4.0f), Rounding::kExact);
    const std::vector<double> gpu = ref::apply_rope(x, 1, 4, {1}, plain_rope(4, interleave, 4.0f), Rounding::kGpu);
    for (int i = 0; i < 4; ++i) {
      INFO("interleave " << interleave << " element " << i);
      REQUIRE(exact[i] == Approx(expected[i]).epsilon(1e-14));
      REQUIRE(gpu[i] == Approx(expected[i]).epsilon(1e-6));
    }
  }
}

TEST_CASE("rope reference: dims past rotary_dim pass through", "[rope][reference]") {
  // rotary_dim 2 of 4: only (x0, x1) rotate (both pairings agree), at freq 1, position 1.
  const std::vector<float> x = {1, 2, 3, 4};
  for (bool interleave : {false, true}) {
    const std::vector<double> out = ref::apply_rope(x, 1, 4, {1}, plain_rope(2, interleave), Rounding::kExact);
    REQUIRE(out[0] == Approx(1 * std::cos(1.0) - 2 * std::sin(1.0)).epsilon(1e-14));
    REQUIRE(out[1] == Approx(2 * std::cos(1.0) + 1 * std::sin(1.0)).epsilon(1e-14));
    REQUIRE(out[2] == 3.0);
    REQUIRE(out[3] == 4.0);
  }
}

TEST_CASE("rope reference: plain frequencies", "[rope][reference]") {
  // theta^(-2i/128): i = 1 -> 10000^(-1/64) = 0.8659643233600653; i = 32 -> 10000^(-1/2) = 0.01.
  RopeConfig rope = plain_rope(128, false);
  std::vector<double> freq = ref::rope_frequencies(rope);
  REQUIRE(freq.size() == 64);
  REQUIRE(freq[0] == 1.0);
  REQUIRE(freq[1] == Approx(0.8659643233600653).epsilon(1e-14));
  REQUIRE(freq[32] == Approx(0.01).epsilon(1e-14));
  rope.rope_scale = 2.0f;  // linear position interpolation divides every frequency
  freq = ref::rope_frequencies(rope);
  REQUIRE(freq[1] == Approx(0.8659643233600653 / 2).epsilon(1e-14));
}

// Llama 3.1 (theta 5e5, rotary_dim 128): wavelength 2pi / 5e5^(-i/64) is below
// 8192 / 4 = 2048 up to i = 28 (kept), above 8192 / 1 from i = 35 (divided by
// 8), and smoothed between: freq = base · ((1 - s) / 8 + s) with
// s = (8192 / wavelength - 1) / (4 - 1). Values worked out in double from
// those published constants, e.g. i = 32: base = 5e5^-0.5 = 0.001414213562373095,
// wavelength = 4442.8829, s = 0.281283, freq = 0.0005248461609929547.
TEST_CASE("rope reference: Llama-3.1 frequencies against the published constants", "[rope][reference]") {
  const std::vector<double> freq = ref::rope_frequencies(llama31_rope());
  REQUIRE(freq.size() == 64);
  struct Expected {
    int i;
    double freq;
  };
  const Expected expected[] = {
      {0, 1.0},
      {28, 0.003211445994752591},    // last kept: 5e5^(-28/64)
      {29, 0.002166570763503359},    // s = 0.803621
      {30, 0.0013718935677611381},   // s = 0.592849
      {31, 0.0008567514129196321},   // s = 0.421151
      {32, 0.0005248461609929547},   // s = 0.281283
      {33, 0.00031269375038406517},  // s = 0.167343
      {34, 0.0001785078127679964},   // s = 0.074527
      {35, 9.556212353964683e-05},   // first divided: 5e5^(-35/64) / 8
      {37, 6.341514345777615e-05},
  };
  for (const Expected& e : expected) {
    INFO("i = " << e.i);
    REQUIRE(freq[e.i] == Approx(e.freq).epsilon(1e-12));
  }
  for (int i = 0; i <= 28; ++i) REQUIRE(freq[i] == Approx(std::pow(5e5, -i / 64.0)).epsilon(1e-14));
  for (int i = 35; i < 64; ++i) REQUIRE(freq[i] == Approx(std::pow(5e5, -i / 64.0) / 8).epsilon(1e-14));
}

// kGpu cos/sin = float(cos(pi·x)) with x the float angle in half turns: the
// error against the exact value is at most pi·2^-25 (x rounded to float,
// |x| <= 1) + 2^-25 (result rounded to float) + the double term, ~1e-12 here.
TEST_CASE("rope reference: kGpu cos/sin accuracy up to position 1M", "[rope][reference]") {
  const double bound = M_PI * 0x1p-25 + 0x1p-25 + 1e-12;
  double max_error = 0;
  for (const RopeConfig& rope : {plain_rope(128, false), llama31_rope()}) {
    const std::vector<double> freq = ref::rope_frequencies(rope);
    for (int64_t position = 0; position <= (int64_t(1) << 20); position += position < 4096 ? 1 : 997)
      for (double f : freq) {
        const ref::CosSin exact = ref::rope_cos_sin(position, f, Rounding::kExact);
        const ref::CosSin gpu = ref::rope_cos_sin(position, f, Rounding::kGpu);
        max_error = std::max({max_error, std::abs(gpu.cos - exact.cos), std::abs(gpu.sin - exact.sin)});
      }
  }
  WARN("kGpu cos/sin max |error| vs double, positions <= 2^20: " << max_error << " (bound " << bound << ")");
  REQUIRE(max_error <= bound);
  // The reduction is exact: at freq = pi rad per position, position 1e6 is
  // 1e6 half turns, an even number, and position 1e6 + 1 one half turn.
  REQUIRE(ref::rope_gpu_half_turns(1000000, M_PI) == 0.0f);
  REQUIRE(std::abs(ref::rope_gpu_half_turns(1000001, M_PI)) == 1.0f);
}

TEST_CASE("rope reference: cos/sin cache layout", "[rope][reference]") {
  const RopeConfig rope = plain_rope(4, false, 4.0f);  // freqs 1, 0.5
  const std::vector<double> cache = ref::rope_cos_sin_cache(3, rope, Rounding::kExact);
  REQUIRE(cache.size() == 12);
  for (int p = 0; p < 3; ++p) {
    REQUIRE(cache[p * 4 + 0] == Approx(std::cos(p * 1.0)).epsilon(1e-15));
    REQUIRE(cache[p * 4 + 1] == Approx(std::cos(p * 0.5)).epsilon(1e-15));
    REQUIRE(cache[p * 4 + 2] == Approx(std::sin(p * 1.0)).margin(1e-15));
    REQUIRE(cache[p * 4 + 3] == Approx(std::sin(p * 0.5)).margin(1e-15));
  }
}

TEST_CASE("rope reference: positions from indptr with empty requests", "[rope][reference]") {
  const std::vector<int32_t> positions = ref::rope_positions_from_indptr({0, 2, 2, 5, 5}, {10, 99, 1000, 7});
  REQUIRE(positions == std::vector<int32_t>{10, 11, 1000, 1001, 1002});
}

TEST_CASE("rope reference: cache variant marks out-of-range positions with NaN", "[rope][reference]") {
  const RopeConfig rope = plain_rope(2, false);
  const std::vector<double> cache = ref::rope_cos_sin_cache(4, rope, Rounding::kGpu);
  const std::vector<float> cache_f(cache.begin(), cache.end());
  const std::vector<float> x = {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4};
  const std::vector<double> out =
      ref::apply_rope_with_cos_sin_cache(x, 1, 4, {3, 4, -1}, cache_f, 4, 2, false, Rounding::kGpu);
  REQUIRE(std::isfinite(out[0]));
  for (int t = 1; t < 3; ++t) {
    REQUIRE(std::isnan(out[t * 4 + 0]));
    REQUIRE(std::isnan(out[t * 4 + 1]));
    REQUIRE(out[t * 4 + 2] == 3.0);
    REQUIRE(out[t * 4 + 3] == 4.0);
  }
}

TEST_CASE("rope reference: append targets and paged row offsets", "[rope][reference]") {
  // page_size 4. Request 0 owns pages [7, 2] with 3 tokens in the last: kv_len 7,
  // appends 3 -> positions 4, 5, 6 in page 2, slots 0..2. Request 1 owns no page
  // and appends nothing. Request 2 owns page [5] holding 1 token and appends it.
  const std::vector<int32_t> append_indptr = {0, 3, 3, 4};
  const std::vector<int32_t> kv_indptr = {0, 2, 2, 3};
  const std::vector<int32_t> kv_indices = {7, 2, 5};
  const std::vector<int32_t> last = {3, 0, 1};
  AppendIndices indices;
  indices.num_requests = 3;
  indices.append_indptr = append_indptr.data();
  indices.kv_indptr = kv_indptr.data();
  indices.kv_indices = kv_indices.data();
  indices.kv_last_page_len = last.data();
  const std::vector<ref::AppendTarget> targets = ref::append_targets(indices, 4);
  REQUIRE(targets.size() == 4);
  const ref::AppendTarget expected[] = {{0, 4, 2, 0}, {0, 5, 2, 1}, {0, 6, 2, 2}, {2, 0, 5, 0}};
  for (int t = 0; t < 4; ++t) {
    REQUIRE(targets[t].request == expected[t].request);
    REQUIRE(targets[t].position == expected[t].position);
    REQUIRE(targets[t].page == expected[t].page);
    REQUIRE(targets[t].slot == expected[t].slot);
  }
  // 4 slots, 3 heads, head_dim 8 (96 elements per page); page 2, slot 1, head 2:
  // NHD: 2·96 + (1·3 + 2)·8 = 232; HND: 2·96 + (2·4 + 1)·8 = 264.
  REQUIRE(ref::paged_row_offset(KvLayout::kNHD, 4, 3, 8, 2, 1, 2) == 232);
  REQUIRE(ref::paged_row_offset(KvLayout::kHND, 4, 3, 8, 2, 1, 2) == 264);
}

// ---------------------------------------------------------------------------
// The kernel's work split, walked on the host exactly as the kernel decodes it.

TEST_CASE("rope work split: every element of every row is handled once, with its frequency", "[rope][split]") {
  for (int32_t head_dim : {64, 128, 256})
    for (int32_t rotary_dim : {2, 6, 16, 20, head_dim / 2, head_dim})
      for (bool interleave : {false, true})
        for (bool append_like : {false, true})  // Q, K rotated; or K rotated, V copied, Q rotated
          for (int64_t num_tokens : {1, 7, 300})
            for (int64_t resident_threads : {64, 1 << 20}) {
              detail::RopeParams p{};
              const int32_t heads[] = {append_like ? 3 : 12, append_like ? 3 : 5, 9};
              const bool rotate[] = {true, !append_like, true};
              p.num_groups = append_like ? 3 : 2;
              for (int32_t g = 0; g < p.num_groups; ++g) p.groups[g] = {nullptr, nullptr, heads[g], rotate[g], false, 0, 0};
              p.num_tokens = num_tokens;
              p.head_dim = head_dim;
              p.rotary_dim = rotary_dim;
              p.interleave = interleave;
              detail::split_rope_work(p, resident_threads, 256);
              INFO("head_dim " << head_dim << " rotary_dim " << rotary_dim << " interleave " << interleave
                               << " groups " << p.num_groups << " tokens " << num_tokens << " heads/block "
                               << p.heads_per_block);

              // hits[group][token][head][dim]
              std::vector<std::vector<int>> hits(p.num_groups);
              for (int32_t g = 0; g < p.num_groups; ++g) hits[g].assign(size_t(num_tokens) * heads[g] * head_dim, 0);
              bool frequencies_match = true;
              for (int64_t cta = 0; cta < detail::rope_num_ctas(p); ++cta)
                for (int32_t i = 0; i < detail::rope_cta_items(p, cta); ++i) {
                  const detail::RopeItem item = detail::rope_item(p, cta, i);
                  const detail::RopeRowGroup& group = p.groups[item.group];
                  const int32_t group_rotary_dim = group.rotate ? rotary_dim : 0;
                  const detail::RopeUnit unit = detail::rope_unit(item.unit, group_rotary_dim, interleave);
                  for (int32_t h = item.head_begin; h < item.head_end; ++h) {
                    int* row = &hits[item.group][(size_t(item.token) * group.heads + h) * head_dim];
                    for (int32_t k = 0; k < unit.count; ++k) {
                      ++row[unit.a_begin + k];
                      if (unit.rotary && !interleave) ++row[unit.b_begin + k];
                      // Rotary spans lie in [0, rotary_dim), pass-through spans past it.
                      if (unit.rotary != (unit.a_begin + k < group_rotary_dim)) frequencies_match = false;
                      if (!unit.rotary) continue;
                      // NeoX: element e and e + rotary_dim/2 use frequency e; GPT-J: 2j and 2j+1 use j.
                      const int32_t freq = interleave ? unit.first_freq + k / 2 : unit.first_freq + k;
                      const int32_t expected = interleave ? (unit.a_begin + k) / 2 : unit.a_begin + k;
                      if (freq != expected || (!interleave && unit.b_begin != unit.a_begin + rotary_dim / 2))
                        frequencies_match = false;
                    }
                  }
                }
              REQUIRE(frequencies_match);
              for (int32_t g = 0; g < p.num_groups; ++g)
                for (size_t e = 0; e < hits[g].size(); ++e)
                  if (hits[g][e] != 1)
                    FAIL("group " << g << " token " << e / head_dim / heads[g] << " head " << e / head_dim % heads[g]
                                  << " dim " << e % head_dim << " handled " << hits[g][e] << " times");
            }
}

// ---------------------------------------------------------------------------
// API validation (returns before any CUDA call).

void require_refused(const Status& status, const std::string& names_argument,
                     StatusCode code = StatusCode::kInvalidArgument) {
  INFO("message: " << status.message);
  REQUIRE(status.code == code);
  REQUIRE(status.message.find(names_argument) != std::string::npos);
}

// Fake device addresses: validation never dereferences them.
void* fake_pointer(uintptr_t address) { return reinterpret_cast<void*>(address); }

RopeTensors valid_tensors() {
  RopeTensors t;
  t.dtype = DType::kBF16;
  t.head_dim = 128;
  t.num_qo_heads = 4;
  t.num_kv_heads = 2;
  t.num_tokens = 16;
  t.q_in = t.q_out = fake_pointer(0x10000000);  // in place
  t.k_in = t.k_out = fake_pointer(0x20000000);
  return t;
}

RopePositions valid_positions() {
  RopePositions p;
  p.pos_ids = static_cast<const int32_t*>(fake_pointer(0x30000000));
  return p;
}

TEST_CASE("rope API: validate_rope_config", "[rope][validation]") {
  REQUIRE(validate_rope_config(plain_rope(128, false)).ok());
  REQUIRE(validate_rope_config(llama31_rope()).ok());
  RopeConfig rope = plain_rope(7, false);
  require_refused(validate_rope_config(rope), "rope.rotary_dim = 7");
  rope.rotary_dim = 0;
  require_refused(validate_rope_config(rope), "rope.rotary_dim = 0");
  rope.rotary_dim = 258;
  require_refused(validate_rope_config(rope), "rope.rotary_dim = 258");
  rope = plain_rope(64, false, 0.0f);
  require_refused(validate_rope_config(rope), "rope.theta");
  rope = plain_rope(64, false, NAN);
  require_refused(validate_rope_config(rope), "rope.theta");
  rope = plain_rope(64, false);
  rope.rope_scale = -1.0f;
  require_refused(validate_rope_config(rope), "rope.rope_scale");
  rope = llama31_rope();
  rope.high_freq_factor = 1.0f;
  require_refused(validate_rope_config(rope), "rope.high_freq_factor");
  rope = llama31_rope();
  rope.low_freq_factor = 0.0f;
  require_refused(validate_rope_config(rope), "rope.low_freq_factor");
  rope = llama31_rope();
  rope.old_context_len = 0;
  require_refused(validate_rope_config(rope), "rope.old_context_len");
}

TEST_CASE("rope API: apply_rope refuses bad tensors and positions", "[rope][validation]") {
  const RopeConfig rope = plain_rope(128, false);
  RopeTensors t = valid_tensors();
  t.q_in = nullptr;
  require_refused(apply_rope(t, valid_positions(), rope, nullptr), "tensors.q_in");
  t = valid_tensors();
  t.k_out = fake_pointer(0x20000008);
  require_refused(apply_rope(t, valid_positions(), rope, nullptr), "tensors.k_out");
  t = valid_tensors();
  t.head_dim = 96;
  require_refused(apply_rope(t, valid_positions(), plain_rope(96, false), nullptr), "tensors.head_dim = 96");
  t = valid_tensors();
  t.head_dim = 64;
  require_refused(apply_rope(t, valid_positions(), rope, nullptr), "rope.rotary_dim = 128");
  t = valid_tensors();
  t.num_tokens = -1;
  require_refused(apply_rope(t, valid_positions(), rope, nullptr), "tensors.num_tokens");
  t = valid_tensors();
  t.num_kv_heads = 0;
  require_refused(apply_rope(t, valid_positions(), rope, nullptr), "tensors.num_kv_heads");
  t = valid_tensors();
  t.dtype = static_cast<DType>(7);
  require_refused(apply_rope(t, valid_positions(), rope, nullptr), "tensors.dtype");
  t = valid_tensors();
  t.q_out = fake_pointer(0x10000000 + 256);  // partly overlaps q_in
  require_refused(apply_rope(t, valid_positions(), rope, nullptr), "tensors.q_out");
  t = valid_tensors();
  t.k_out = fake_pointer(0x10000000);  // k_out onto q_in
  require_refused(apply_rope(t, valid_positions(), rope, nullptr), "tensors.k_out");

  t = valid_tensors();
  RopePositions positions;
  require_refused(apply_rope(t, positions, rope, nullptr), "positions.pos_ids");
  positions = valid_positions();
  positions.indptr = static_cast<const int32_t*>(fake_pointer(0x40000000));
  require_refused(apply_rope(t, positions, rope, nullptr), "positions.pos_ids");
  positions = RopePositions();
  positions.num_requests = 2;
  positions.indptr = static_cast<const int32_t*>(fake_pointer(0x40000000));
  require_refused(apply_rope(t, positions, rope, nullptr), "positions.offsets");
  positions.offsets = static_cast<const int32_t*>(fake_pointer(0x40000002));
  require_refused(apply_rope(t, positions, rope, nullptr), "positions.offsets");
  positions = valid_positions();
  positions.pos_ids = static_cast<const int32_t*>(fake_pointer(0x30000001));
  require_refused(apply_rope(t, positions, rope, nullptr), "positions.pos_ids");
}

TEST_CASE("rope API: cache functions refuse bad arguments", "[rope][validation]") {
  float* cache = static_cast<float*>(fake_pointer(0x50000000));
  const RopeConfig rope = plain_rope(128, false);
  require_refused(build_rope_cos_sin_cache(cache, 0, 128, rope, nullptr), "max_position = 0");
  require_refused(build_rope_cos_sin_cache(cache, 16, 64, rope, nullptr), "rotary_dim = 64");
  require_refused(build_rope_cos_sin_cache(nullptr, 16, 128, rope, nullptr), "cos_sin_cache");
  require_refused(build_rope_cos_sin_cache(cache + 1, 16, 128, rope, nullptr), "cos_sin_cache");

  const RopeTensors t = valid_tensors();
  const int32_t* pos_ids = static_cast<const int32_t*>(fake_pointer(0x30000000));
  require_refused(apply_rope_with_cos_sin_cache(t, pos_ids, cache, -5, 128, false, nullptr), "max_position = -5");
  require_refused(apply_rope_with_cos_sin_cache(t, pos_ids, cache, 16, 127, false, nullptr), "rotary_dim = 127");
  require_refused(apply_rope_with_cos_sin_cache(t, nullptr, cache, 16, 128, false, nullptr), "pos_ids");
  require_refused(apply_rope_with_cos_sin_cache(t, pos_ids, nullptr, 16, 128, false, nullptr), "cos_sin_cache");
  // An output on top of the cache.
  RopeTensors onto_cache = t;
  onto_cache.q_in = fake_pointer(0x60000000);
  onto_cache.q_out = cache;
  require_refused(apply_rope_with_cos_sin_cache(onto_cache, pos_ids, cache, 16, 128, false, nullptr),
                  "tensors.q_out");
}

struct AppendCase {
  AppendConfig config;
  std::vector<int32_t> append_indptr = {0, 3, 3, 4};
  std::vector<int32_t> kv_indptr = {0, 2, 2, 3};
  std::vector<int32_t> kv_indices = {7, 2, 5};
  std::vector<int32_t> last = {3, 0, 1};

  AppendCase() {
    config.num_kv_heads = 2;
    config.head_dim = 128;
    config.page_size = 4;
    config.num_pages = 8;
  }
  AppendIndices indices() const {
    AppendIndices i;
    i.num_requests = int32_t(last.size());
    i.append_indptr = append_indptr.data();
    i.kv_indptr = kv_indptr.data();
    i.kv_indices = kv_indices.data();
    i.kv_last_page_len = last.data();
    return i;
  }
};

TEST_CASE("append API: validate_append_indices", "[rope][validation]") {
  AppendCase c;
  REQUIRE(validate_append_indices(c.config, c.indices()).ok());
  c.kv_indices[1] = 8;
  require_refused(validate_append_indices(c.config, c.indices()), "indices.kv_indices[1] = 8");
  c = AppendCase();
  c.last[0] = 0;
  require_refused(validate_append_indices(c.config, c.indices()), "indices.kv_last_page_len[0] = 0");
  c = AppendCase();
  c.last[0] = 5;
  require_refused(validate_append_indices(c.config, c.indices()), "indices.kv_last_page_len[0] = 5");
  c = AppendCase();
  c.last[1] = 2;  // a request without pages has kv_len 0
  require_refused(validate_append_indices(c.config, c.indices()), "indices.kv_last_page_len[1] = 2");
  c = AppendCase();
  c.append_indptr = {0, 3, 3, 6};  // request 2 appends 3 tokens but holds 1
  require_refused(validate_append_indices(c.config, c.indices()), "append_len = 3");
  c = AppendCase();
  c.append_indptr = {0, 3, 2, 4};
  require_refused(validate_append_indices(c.config, c.indices()), "indices.append_indptr[2] = 2");
  c = AppendCase();
  c.kv_indices[2] = 2;  // request 2's only slot is page 2 slot 0, where request 0 appends too
  require_refused(validate_append_indices(c.config, c.indices()), "both land in page 2 slot 0");
  c = AppendCase();
  c.config.page_size = 0;
  require_refused(validate_append_indices(c.config, c.indices()), "config.page_size = 0");
  c = AppendCase();
  c.config.head_dim = 80;
  require_refused(validate_append_indices(c.config, c.indices()), "config.head_dim = 80");
  c = AppendCase();
  c.config.kv_layout = static_cast<KvLayout>(3);
  require_refused(validate_append_indices(c.config, c.indices()), "config.kv_layout");
}

// Found by ptxattn-fuzz under UBSan: append_paged_kv_cache multiplied
// num_pages * page_size * num_kv_heads * head_dim in int64, which overflows for
// the largest values of each (2^65), on a plan with nothing appended (made
// without a GPU). The pool is now held to prefill's limit when planning.
TEST_CASE("append API: the page pool must fit int32 rows, as for prefill", "[rope][validation]") {
  AppendCase c;
  c.config.num_kv_heads = 65536;
  c.config.head_dim = 256;
  c.config.page_size = 1024;
  c.config.num_pages = 31;  // 31 * 2^10 * 2^16 rows: below 2^31
  REQUIRE(validate_append_indices(c.config, c.indices()).ok());
  c.config.num_pages = 32;  // 2^31 rows: one more than INT32_MAX
  require_refused(validate_append_indices(c.config, c.indices()), "config.num_pages * page_size * num_kv_heads = 32");
  c.config.num_pages = INT32_MAX;
  c.append_indptr = {0, 0, 0, 0};  // nothing to upload: this plan needed no GPU
  AppendPlan plan;
  require_refused(plan_append_paged_kv(c.config, c.indices(), plan), "K/V rows exceed INT32_MAX");
}

// Found by ptxattn-fuzz: planning reserved append_indptr[num_requests] entries
// (here INT32_MAX, 16 GB over two arrays) before comparing any append_len with
// its kv_len. The refusal itself was right; it now comes without the memory.
TEST_CASE("append API: a huge append_indptr is refused by the per-request check", "[rope][validation]") {
  AppendCase c;
  c.config.num_kv_heads = 1;
  c.append_indptr = {0, 3, 3, INT32_MAX};  // request 2 holds 1 token
  require_refused(validate_append_indices(c.config, c.indices()), "append_len = 2147483644");
}

TEST_CASE("append API: a plan that was never made is refused", "[rope][validation]") {
  AppendPlan plan;
  AppendTensors tensors;
  require_refused(append_paged_kv_cache(plan, tensors, nullptr, nullptr), "plan");
}

}  // namespace
}  // namespace ptxattn
