// RoPE and append targets of ptxattn-fuzz: validate_rope_config, apply_rope,
// build_rope_cos_sin_cache, apply_rope_with_cos_sin_cache (C++ and C),
// validate_append_indices, plan_append_paged_kv, append_paged_kv_cache, and
// how a RoPE launch splits its work. The rules restate the comments of
// ptxattn.hpp (RoPE and append sections) in __int128 arithmetic.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "ptxattn/ptxattn.h"
#include "rope_params.hpp"  // split_rope_work and the item decoding

namespace fuzz {
namespace {

using ptxattn::AppendConfig;
using ptxattn::AppendIndices;
using ptxattn::AppendPlan;
using ptxattn::AppendTensors;
using ptxattn::DType;
using ptxattn::KvLayout;
using ptxattn::RopeConfig;
using ptxattn::RopePositions;
using ptxattn::RopeTensors;

constexpr int64_t kMaxHeads = 65536;  // per group of rows, ptxattn.hpp (RopeTensors)

bool known_head_dim(int64_t head_dim) { return head_dim == 64 || head_dim == 128 || head_dim == 256; }

int32_t random_heads(Rng& rng) {
  return rng.percent(85) ? rng.pick({1, 2, 4, 8, 32, 64}) : rng.pick({int32_t(rng.range(1, 512)), 65535, 65536});
}

int32_t random_rotary_dim(Rng& rng, int32_t head_dim) {
  return rng.percent(60) ? rng.pick({head_dim, head_dim / 2}) : 2 * int32_t(rng.range(1, head_dim / 2));
}

void dtype_rules(Rules& r, DType dtype, const char* enum_rule, const char* built_rule, const char* needle) {
  r.invalid(int(dtype) == 0 || int(dtype) == 1, enum_rule, needle);
  if (int(dtype) == 0 || int(dtype) == 1) r.expect(dtype_built(int(dtype)), built_rule, StatusCode::kUnsupported, needle);
}

// ---------------------------------------------------------------------------
// RopeConfig
// ---------------------------------------------------------------------------

RopeConfig random_rope(Rng& rng, int32_t head_dim) {
  RopeConfig rope;
  rope.rotary_dim = random_rotary_dim(rng, head_dim);
  rope.interleave = rng.percent(50);
  rope.theta = rng.percent(70) ? rng.pick({1e4f, 5e5f}) : float(rng.range(1, 1000000));
  rope.rope_scale = rng.percent(70) ? 1.0f : rng.pick({8.0f, 0.5f, 32.0f});
  rope.llama31 = rng.percent(30);
  rope.low_freq_factor = rng.percent(70) ? 1.0f : float(rng.range(1, 100)) / 10;
  rope.high_freq_factor = rope.low_freq_factor + (rng.percent(70) ? 3.0f : float(rng.range(1, 100)) / 10);
  rope.old_context_len = rng.percent(70) ? 8192 : int32_t(rng.range(1, 1 << 20));
  return rope;
}

void mutate_rope(Rng& rng, RopeConfig& rope) {
  switch (rng.below(7)) {
    case 0: rope.rotary_dim = rng.percent(50) ? rng.edge_int32() : rng.pick({0, 1, 7, 63, 254, 256, 258}); break;
    case 1: rope.theta = rng.edge_float(); break;
    case 2: rope.rope_scale = rng.edge_float(); break;
    case 3: rope.low_freq_factor = rng.edge_float(); break;
    case 4: rope.high_freq_factor = rng.percent(50) ? rope.low_freq_factor : rng.edge_float(); break;
    case 5: rope.old_context_len = rng.edge_int32(); break;
    default: rope.llama31 = !rope.llama31; break;
  }
}

void rope_rules(const RopeConfig& rope, Rules& r) {
  r.invalid(rope.rotary_dim >= 2 && rope.rotary_dim <= 256 && rope.rotary_dim % 2 == 0,
            "rope.rotary_dim even and in [2, 256]", "rope.rotary_dim");
  r.invalid(std::isfinite(rope.theta) && rope.theta > 0, "rope.theta finite and > 0", "rope.theta");
  r.invalid(std::isfinite(rope.rope_scale) && rope.rope_scale > 0, "rope.rope_scale finite and > 0",
            "rope.rope_scale");
  if (!rope.llama31) return;
  r.invalid(std::isfinite(rope.low_freq_factor) && rope.low_freq_factor > 0, "llama31: low_freq_factor finite and > 0",
            "low_freq_factor");
  r.invalid(std::isfinite(rope.high_freq_factor) && rope.high_freq_factor > rope.low_freq_factor,
            "llama31: high_freq_factor finite and > low_freq_factor", "high_freq_factor");
  r.invalid(rope.old_context_len > 0, "llama31: old_context_len > 0", "old_context_len");
}

std::string describe(const RopeConfig& rope) {
  std::ostringstream out;
  out << "rope{rotary_dim " << rope.rotary_dim << ", interleave " << rope.interleave << ", theta "
      << float_text(rope.theta) << ", rope_scale " << float_text(rope.rope_scale) << ", llama31 " << rope.llama31
      << ", low " << float_text(rope.low_freq_factor) << ", high " << float_text(rope.high_freq_factor)
      << ", old_context_len " << rope.old_context_len << "}";
  return out.str();
}

// ---------------------------------------------------------------------------
// RopeTensors and positions
// ---------------------------------------------------------------------------

i128 q_bytes(const RopeTensors& t) { return i128(t.num_tokens) * t.num_qo_heads * t.head_dim * 2; }
i128 k_bytes(const RopeTensors& t) { return i128(t.num_tokens) * t.num_kv_heads * t.head_dim * 2; }

RopeTensors random_rope_tensors(Rng& rng) {
  RopeTensors t;
  t.dtype = random_built_dtype(rng);
  t.head_dim = rng.pick({64, 128, 256});
  t.num_qo_heads = random_heads(rng);
  t.num_kv_heads = random_heads(rng);
  const int64_t max_tokens = kInt32Max / (int64_t(t.num_qo_heads) + t.num_kv_heads);
  const uint64_t kind = rng.below(100);
  t.num_tokens = kind < 25 ? 0 : kind < 70 ? rng.range(1, 64) : kind < 85 ? rng.range(1, 100000)
                                                                          : max_tokens + rng.range(-1, 1);
  switch (rng.below(8)) {  // one change, sometimes
    case 0: t.dtype = static_cast<DType>(rng.edge_int32()); break;
    case 1: t.head_dim = rng.percent(50) ? rng.edge_int32() : rng.pick({32, 96, 192, 512}); break;
    case 2: (rng.percent(50) ? t.num_qo_heads : t.num_kv_heads) = rng.edge_int32(); break;
    case 3: t.num_tokens = rng.edge_int64(); break;
    default: break;
  }
  const std::vector<uintptr_t> at = place_tensors(rng, {q_bytes(t), k_bytes(t), q_bytes(t), k_bytes(t)});
  t.q_in = as_pointer(at[0]);
  t.k_in = as_pointer(at[1]);
  t.q_out = as_mutable_pointer(rng.percent(40) ? at[0] : at[2]);  // in place, often
  t.k_out = as_mutable_pointer(rng.percent(40) ? at[1] : at[3]);
  return t;
}

// The tensor rules apply_rope and the cache variant share; rotary_dim (named
// rotary_needle in messages) must fit the head.
void rope_tensor_rules(const RopeTensors& t, int32_t rotary_dim, const char* rotary_needle, Rules& r) {
  dtype_rules(r, t.dtype, "tensors.dtype is a DType", "tensors.dtype is built", "tensors.dtype");
  r.invalid(known_head_dim(t.head_dim), "tensors.head_dim is 64, 128 or 256", "tensors.head_dim");
  r.invalid(rotary_dim >= 2 && rotary_dim <= t.head_dim && rotary_dim % 2 == 0,
            "rotary_dim even and in [2, tensors.head_dim]", rotary_needle);
  r.invalid(t.num_qo_heads >= 1 && t.num_qo_heads <= kMaxHeads, "tensors.num_qo_heads in [1, 65536]",
            "tensors.num_qo_heads");
  r.invalid(t.num_kv_heads >= 1 && t.num_kv_heads <= kMaxHeads, "tensors.num_kv_heads in [1, 65536]",
            "tensors.num_kv_heads");
  r.invalid(t.num_tokens >= 0, "tensors.num_tokens >= 0", "tensors.num_tokens");
  r.invalid(i128(t.num_tokens) * (i128(t.num_qo_heads) + t.num_kv_heads) <= kInt32Max,
            "tensors.num_tokens * (num_qo_heads + num_kv_heads) <= INT32_MAX", "tensors.num_tokens");
  const Span q_in{uintptr_t(t.q_in), q_bytes(t)}, k_in{uintptr_t(t.k_in), k_bytes(t)},
      q_out{uintptr_t(t.q_out), q_bytes(t)}, k_out{uintptr_t(t.k_out), k_bytes(t)};
  r.invalid(q_in.bytes == 0 || q_in.address != 0, "tensors.q_in is not null unless empty", "tensors.q_in");
  r.invalid(k_in.bytes == 0 || k_in.address != 0, "tensors.k_in is not null unless empty", "tensors.k_in");
  r.invalid(q_out.bytes == 0 || q_out.address != 0, "tensors.q_out is not null unless empty", "tensors.q_out");
  r.invalid(k_out.bytes == 0 || k_out.address != 0, "tensors.k_out is not null unless empty", "tensors.k_out");
  r.invalid(q_in.address % 16 == 0, "tensors.q_in is 16-byte aligned", "tensors.q_in");
  r.invalid(k_in.address % 16 == 0, "tensors.k_in is 16-byte aligned", "tensors.k_in");
  r.invalid(q_out.address % 16 == 0, "tensors.q_out is 16-byte aligned", "tensors.q_out");
  r.invalid(k_out.address % 16 == 0, "tensors.k_out is 16-byte aligned", "tensors.k_out");
  // An output may be exactly its own input (in place); no other overlap.
  r.invalid((q_out.address == q_in.address || !overlaps(q_out, q_in)) && !overlaps(q_out, k_in),
            "tensors.q_out is q_in exactly or overlaps no input", "tensors.q_out");
  r.invalid((k_out.address == k_in.address || !overlaps(k_out, k_in)) && !overlaps(k_out, q_in),
            "tensors.k_out is k_in exactly or overlaps no input", "tensors.k_out");
  r.invalid(!overlaps(q_out, k_out), "tensors.q_out and tensors.k_out do not overlap", "tensors.q_out|tensors.k_out");
}

std::string describe(const RopeTensors& t) {
  std::ostringstream out;
  out << "tensors{dtype " << int(t.dtype) << ", head_dim " << t.head_dim << ", heads " << t.num_qo_heads << "/"
      << t.num_kv_heads << ", num_tokens " << t.num_tokens << ", q_in " << hex(uintptr_t(t.q_in)) << ", k_in "
      << hex(uintptr_t(t.k_in)) << ", q_out " << hex(uintptr_t(t.q_out)) << ", k_out " << hex(uintptr_t(t.k_out))
      << "}";
  return out.str();
}

// Device index arrays: made-up addresses, 4-byte aligned unless changed.
uintptr_t random_index_address(Rng& rng) {
  if (rng.percent(10)) return 0;
  return 0x500000000000ull + 4 * uintptr_t(rng.below(1 << 20)) + (rng.percent(10) ? uintptr_t(rng.range(1, 3)) : 0);
}

RopePositions random_positions(Rng& rng) {
  RopePositions p;
  if (rng.percent(50)) {
    p.pos_ids = static_cast<const int32_t*>(as_pointer(random_index_address(rng)));
    if (rng.percent(10)) p.indptr = static_cast<const int32_t*>(as_pointer(random_index_address(rng)));
    if (rng.percent(10)) p.num_requests = rng.mostly_small(8);
    return p;
  }
  p.num_requests = rng.percent(85) ? int32_t(rng.range(0, 16)) : rng.edge_int32();
  p.indptr = static_cast<const int32_t*>(as_pointer(random_index_address(rng)));
  p.offsets = static_cast<const int32_t*>(as_pointer(random_index_address(rng)));
  return p;
}

void position_rules(const RopePositions& p, int64_t num_tokens, Rules& r) {
  const uintptr_t pos_ids = uintptr_t(p.pos_ids), indptr = uintptr_t(p.indptr), offsets = uintptr_t(p.offsets);
  if (pos_ids != 0) {
    r.invalid(indptr == 0 && offsets == 0 && p.num_requests == 0,
              "positions: pos_ids excludes indptr, offsets and num_requests", "positions.pos_ids");
    r.invalid(pos_ids % 4 == 0, "positions.pos_ids is 4-byte aligned", "positions.pos_ids");
    return;
  }
  const int64_t n = p.num_requests;
  r.invalid(n >= 0, "positions.num_requests >= 0", "positions.num_requests");
  r.invalid(num_tokens <= 0 || indptr != 0, "positions: pos_ids or indptr given when there are tokens",
            "positions.indptr");
  r.invalid(num_tokens <= 0 || n != 0, "positions: num_requests > 0 when there are tokens", "positions.num_requests");
  r.invalid(n <= 0 || indptr != 0, "positions.indptr is not null with requests", "positions.indptr");
  r.invalid(indptr % 4 == 0, "positions.indptr is 4-byte aligned", "positions.indptr");
  r.invalid(n == 0 || offsets != 0, "positions.offsets is not null with requests", "positions.offsets");
  r.invalid(offsets % 4 == 0, "positions.offsets is 4-byte aligned", "positions.offsets");
}

std::string describe(const RopePositions& p) {
  return "positions{pos_ids " + hex(uintptr_t(p.pos_ids)) + ", num_requests " + std::to_string(p.num_requests) +
         ", indptr " + hex(uintptr_t(p.indptr)) + ", offsets " + hex(uintptr_t(p.offsets)) + "}";
}

// A float32 cos/sin cache [max_position][rotary_dim].
struct Cache {
  uintptr_t address;
  int32_t max_position;
  int32_t rotary_dim;
  i128 bytes() const { return max_position > 0 ? i128(max_position) * rotary_dim * 4 : 0; }
};

Cache random_cache(Rng& rng, int32_t rotary_dim, const RopeTensors& t) {
  Cache cache{0, 0, rotary_dim};
  cache.max_position = rng.percent(85) ? int32_t(rng.range(1, 1 << 20)) : rng.edge_int32();
  switch (rng.below(10)) {
    case 0: cache.address = 0; break;
    case 1: cache.address = 0x600000000000ull + uintptr_t(rng.range(1, 15)); break;
    case 2: cache.address = uintptr_t(t.q_out); break;  // under an output
    case 3: cache.address = uintptr_t(t.k_out) - 16; break;
    default: cache.address = 0x600000000000ull + 16 * uintptr_t(rng.below(1 << 20)); break;
  }
  return cache;
}

void cache_rules(const Cache& cache, Rules& r) {
  r.invalid(cache.max_position > 0, "max_position > 0", "max_position");
  r.invalid(cache.address != 0, "cos_sin_cache is not null", "cos_sin_cache");
  r.invalid(cache.address % 16 == 0, "cos_sin_cache is 16-byte aligned", "cos_sin_cache");
}

// The C mirror of a RopeConfig, with booleans that may be neither 0 nor 1.
ptxattn_rope_config to_c(Rng& rng, const RopeConfig& rope) {
  ptxattn_rope_config c;
  c.struct_size = random_struct_size<ptxattn_rope_config>(rng);
  c.rotary_dim = rope.rotary_dim;
  c.interleave = rng.percent(90) ? int32_t(rope.interleave) : rng.pick({2, -1, INT32_MIN});
  c.theta = rope.theta;
  c.rope_scale = rope.rope_scale;
  c.llama31 = rng.percent(90) ? int32_t(rope.llama31) : rng.pick({2, -1, INT32_MAX});
  c.low_freq_factor = rope.low_freq_factor;
  c.high_freq_factor = rope.high_freq_factor;
  c.old_context_len = rope.old_context_len;
  return c;
}

ptxattn_rope_tensors to_c(Rng& rng, const RopeTensors& t) {
  return {random_struct_size<ptxattn_rope_tensors>(rng),
          int32_t(t.dtype),
          t.head_dim,
          t.num_qo_heads,
          t.num_kv_heads,
          t.num_tokens,
          t.q_in,
          t.k_in,
          t.q_out,
          t.k_out};
}

}  // namespace

void fuzz_rope(Rng& rng, Fuzzer& fuzzer) {
  const RopeTensors t = random_rope_tensors(rng);
  RopeConfig rope = random_rope(rng, known_head_dim(t.head_dim) ? t.head_dim : 128);
  if (rng.percent(40)) mutate_rope(rng, rope);
  const RopePositions positions = random_positions(rng);
  const Cache cache = random_cache(rng, rng.percent(85) ? rope.rotary_dim : rng.edge_int32(), t);
  const uintptr_t pos_ids = rng.percent(90) ? uintptr_t(positions.pos_ids ? positions.pos_ids : positions.indptr)
                                            : random_index_address(rng);
  const auto input = [&] {
    return describe(rope) + "\n    " + describe(t) + "\n    " + describe(positions) + "\n    cache{" +
           hex(cache.address) + ", max_position " + std::to_string(cache.max_position) + ", rotary_dim " +
           std::to_string(cache.rotary_dim) + "}, pos_ids " + hex(pos_ids);
  };
  fuzzer.show(input);

  Rules config;
  rope_rules(rope, config);
  fuzzer.check("validate_rope_config", ptxattn::validate_rope_config(rope), config, WhenValid::kOk, input);

  // apply_rope: launches when there are tokens.
  Rules apply = config;
  rope_tensor_rules(t, rope.rotary_dim, "rope.rotary_dim", apply);
  position_rules(positions, t.num_tokens, apply);
  bool launches = t.num_tokens > 0;
  if (fuzzer.may_call("apply_rope", apply, launches))
    fuzzer.check("apply_rope", ptxattn::apply_rope(t, positions, rope, nullptr), apply,
                 launches ? WhenValid::kLaunch : WhenValid::kOk, input);

  // build_rope_cos_sin_cache: always launches.
  Rules build = config;
  build.invalid(cache.rotary_dim == rope.rotary_dim, "rotary_dim == rope.rotary_dim", "rotary_dim");
  cache_rules(cache, build);
  float* cache_pointer = static_cast<float*>(as_mutable_pointer(cache.address));
  if (fuzzer.may_call("build_rope_cos_sin_cache", build, true))
    fuzzer.check("build_rope_cos_sin_cache",
                 ptxattn::build_rope_cos_sin_cache(cache_pointer, cache.max_position, cache.rotary_dim, rope, nullptr),
                 build, WhenValid::kLaunch, input);

  // apply_rope_with_cos_sin_cache: launches when there are tokens.
  Rules cached;
  rope_tensor_rules(t, cache.rotary_dim, "rotary_dim", cached);
  cache_rules(cache, cached);
  cached.invalid(t.num_tokens == 0 || pos_ids != 0, "pos_ids is not null when there are tokens", "pos_ids");
  cached.invalid(pos_ids % 4 == 0, "pos_ids is 4-byte aligned", "pos_ids");
  const Span cache_span{cache.address, cache.bytes()};
  cached.invalid(!overlaps({uintptr_t(t.q_out), q_bytes(t)}, cache_span), "tensors.q_out does not overlap the cache",
                 "tensors.q_out");
  cached.invalid(!overlaps({uintptr_t(t.k_out), k_bytes(t)}, cache_span), "tensors.k_out does not overlap the cache",
                 "tensors.k_out");
  if (fuzzer.may_call("apply_rope_with_cos_sin_cache", cached, launches))
    fuzzer.check("apply_rope_with_cos_sin_cache",
                 ptxattn::apply_rope_with_cos_sin_cache(t, static_cast<const int32_t*>(as_pointer(pos_ids)),
                                                        cache_pointer, cache.max_position, cache.rotary_dim,
                                                        rope.interleave, nullptr),
                 cached, launches ? WhenValid::kLaunch : WhenValid::kOk, input);
}

void fuzz_rope_c_api(Rng& rng, Fuzzer& fuzzer) {
  const RopeTensors t = random_rope_tensors(rng);
  RopeConfig rope = random_rope(rng, known_head_dim(t.head_dim) ? t.head_dim : 128);
  if (rng.percent(30)) mutate_rope(rng, rope);
  const ptxattn_rope_config c_rope = to_c(rng, rope);
  const ptxattn_rope_tensors c_tensors = to_c(rng, t);
  const RopePositions positions = random_positions(rng);
  const ptxattn_rope_positions c_positions{random_struct_size<ptxattn_rope_positions>(rng), positions.pos_ids,
                                           positions.num_requests, positions.indptr,
                                           positions.offsets};
  const Cache cache = random_cache(rng, rope.rotary_dim, t);
  const int32_t c_interleave = rng.percent(85) ? int32_t(rope.interleave) : rng.pick({2, -1, INT32_MIN});
  const ptxattn_rope_config* rope_arg = rng.percent(5) ? nullptr : &c_rope;
  const ptxattn_rope_tensors* tensors_arg = rng.percent(5) ? nullptr : &c_tensors;
  const ptxattn_rope_positions* positions_arg = rng.percent(5) ? nullptr : &c_positions;
  const auto input = [&] {
    return std::string(rope_arg ? "" : "rope NULL, ") + (tensors_arg ? "" : "tensors NULL, ") +
           (positions_arg ? "" : "positions NULL, ") + "struct_size rope " + std::to_string(c_rope.struct_size) +
           " tensors " + std::to_string(c_tensors.struct_size) + " positions " +
           std::to_string(c_positions.struct_size) + ", c.interleave " + std::to_string(c_rope.interleave) +
           ", c.llama31 " + std::to_string(c_rope.llama31) + ", interleave argument " + std::to_string(c_interleave) +
           "\n    " + describe(rope) + "\n    " + describe(t) + "\n    " + describe(positions) + "\n    cache{" +
           hex(cache.address) + ", max_position " + std::to_string(cache.max_position) + "}";
  };
  fuzzer.show(input);

  // The C checks: NULL structs, their layout, then booleans; the C++ rules follow.
  Rules c_rules;
  c_rules.invalid(rope_arg != nullptr, "C: rope is not NULL", "rope");
  struct_size_rule(c_rules, rope_arg, "C: rope.struct_size is sizeof(ptxattn_rope_config)");
  if (rope_arg != nullptr) {
    c_rules.invalid(c_rope.interleave == 0 || c_rope.interleave == 1, "C: rope.interleave is 0 or 1", "interleave");
    c_rules.invalid(c_rope.llama31 == 0 || c_rope.llama31 == 1, "C: rope.llama31 is 0 or 1", "llama31");
  }
  RopeConfig cpp_rope = rope;
  cpp_rope.interleave = c_rope.interleave == 1;
  cpp_rope.llama31 = c_rope.llama31 == 1;
  float* cache_pointer = static_cast<float*>(as_mutable_pointer(cache.address));

  {  // ptxattn_build_rope_cos_sin_cache
    Rules build = c_rules;
    if (rope_arg != nullptr) rope_rules(cpp_rope, build);
    cache_rules(cache, build);
    if (fuzzer.may_call("ptxattn_build_rope_cos_sin_cache", build, true)) {
      const Status got = c_status(fuzzer, "ptxattn_build_rope_cos_sin_cache",
                                  ptxattn_build_rope_cos_sin_cache(cache_pointer, cache.max_position, rope.rotary_dim,
                                                                   rope_arg, nullptr));
      fuzzer.check("ptxattn_build_rope_cos_sin_cache", got, build, WhenValid::kLaunch, input);
      if (c_rules.ok())
        same_answer(fuzzer, "ptxattn_build_rope_cos_sin_cache", got,
                    ptxattn::build_rope_cos_sin_cache(cache_pointer, cache.max_position, rope.rotary_dim, cpp_rope,
                                                      nullptr),
                    input);
    }
  }
  {  // ptxattn_apply_rope
    Rules apply;
    apply.invalid(tensors_arg != nullptr, "C: tensors is not NULL", "tensors");
    apply.invalid(positions_arg != nullptr, "C: positions is not NULL", "positions");
    struct_size_rule(apply, tensors_arg, "C: tensors.struct_size is sizeof(ptxattn_rope_tensors)");
    struct_size_rule(apply, positions_arg, "C: positions.struct_size is sizeof(ptxattn_rope_positions)");
    apply.append(c_rules);
    const bool c_ok = apply.ok();
    if (rope_arg != nullptr) rope_rules(cpp_rope, apply);
    if (tensors_arg != nullptr && rope_arg != nullptr) rope_tensor_rules(t, cpp_rope.rotary_dim, "rope.rotary_dim", apply);
    if (tensors_arg != nullptr && positions_arg != nullptr) position_rules(positions, t.num_tokens, apply);
    const bool launches = t.num_tokens > 0;
    if (fuzzer.may_call("ptxattn_apply_rope", apply, launches)) {
      const Status got = c_status(fuzzer, "ptxattn_apply_rope",
                                  ptxattn_apply_rope(tensors_arg, positions_arg, rope_arg, nullptr));
      fuzzer.check("ptxattn_apply_rope", got, apply, launches ? WhenValid::kLaunch : WhenValid::kOk, input);
      if (c_ok) same_answer(fuzzer, "ptxattn_apply_rope", got, ptxattn::apply_rope(t, positions, cpp_rope, nullptr), input);
    }
  }
  {  // ptxattn_apply_rope_with_cos_sin_cache
    Rules cached;
    cached.invalid(tensors_arg != nullptr, "C: tensors is not NULL", "tensors");
    struct_size_rule(cached, tensors_arg, "C: tensors.struct_size is sizeof(ptxattn_rope_tensors)");
    cached.invalid(c_interleave == 0 || c_interleave == 1, "C: interleave is 0 or 1", "interleave");
    const bool c_ok = cached.ok();
    if (tensors_arg != nullptr) rope_tensor_rules(t, rope.rotary_dim, "rotary_dim", cached);
    cache_rules(cache, cached);
    const uintptr_t pos_ids = uintptr_t(positions.pos_ids);
    cached.invalid(t.num_tokens == 0 || pos_ids != 0, "pos_ids is not null when there are tokens", "pos_ids");
    cached.invalid(pos_ids % 4 == 0, "pos_ids is 4-byte aligned", "pos_ids");
    if (tensors_arg != nullptr) {
      const Span cache_span{cache.address, cache.bytes()};
      cached.invalid(!overlaps({uintptr_t(t.q_out), q_bytes(t)}, cache_span),
                     "tensors.q_out does not overlap the cache", "tensors.q_out");
      cached.invalid(!overlaps({uintptr_t(t.k_out), k_bytes(t)}, cache_span),
                     "tensors.k_out does not overlap the cache", "tensors.k_out");
    }
    const bool launches = t.num_tokens > 0;
    if (fuzzer.may_call("ptxattn_apply_rope_with_cos_sin_cache", cached, launches)) {
      const Status got = c_status(fuzzer, "ptxattn_apply_rope_with_cos_sin_cache",
                                  ptxattn_apply_rope_with_cos_sin_cache(tensors_arg, positions.pos_ids, cache_pointer,
                                                                        cache.max_position, rope.rotary_dim,
                                                                        c_interleave, nullptr));
      fuzzer.check("ptxattn_apply_rope_with_cos_sin_cache", got, cached,
                   launches ? WhenValid::kLaunch : WhenValid::kOk, input);
      if (c_ok)
        same_answer(fuzzer, "ptxattn_apply_rope_with_cos_sin_cache", got,
                    ptxattn::apply_rope_with_cos_sin_cache(t, positions.pos_ids, cache_pointer, cache.max_position,
                                                           rope.rotary_dim, c_interleave == 1, nullptr),
                    input);
    }
  }
}

// ---------------------------------------------------------------------------
// Append
// ---------------------------------------------------------------------------

namespace {

// The arrays of one append batch; like the prefill Batch, they always hold
// what a well-formed kv_indptr claims.
struct AppendBatch {
  int32_t num_requests = 0;
  std::vector<int32_t> append_indptr, kv_indptr, kv_indices, last_page_len;
  bool null_append = false, null_kv = false, null_indices = false, null_last = false;

  AppendIndices view() const {
    AppendIndices i;
    i.num_requests = num_requests;
    i.append_indptr = null_append ? nullptr : append_indptr.data();
    i.kv_indptr = null_kv ? nullptr : kv_indptr.data();
    i.kv_indices = null_indices ? nullptr : kv_indices.data();
    i.kv_last_page_len = null_last ? nullptr : last_page_len.data();
    return i;
  }
};

AppendConfig random_append_config(Rng& rng) {
  AppendConfig c;
  c.dtype = random_built_dtype(rng);
  c.num_kv_heads = rng.percent(90) ? rng.pick({1, 2, 8, 32}) : rng.pick({int32_t(rng.range(1, 1024)), 65536});
  c.head_dim = rng.pick({64, 128, 256});
  c.kv_layout = KvLayout(rng.below(2));
  c.page_size = rng.percent(80) ? rng.pick({1, 7, 16, 64, 1024}) : int32_t(rng.range(1, 1024));
  c.num_pages = rng.percent(85) ? int32_t(rng.range(0, 64)) : rng.pick({int32_t(rng.range(0, 1 << 20)), INT32_MAX});
  switch (rng.below(12)) {  // one change, sometimes
    case 0: c.dtype = static_cast<DType>(rng.edge_int32()); break;
    case 1: c.kv_layout = static_cast<KvLayout>(rng.percent(50) ? rng.edge_int32() : 2); break;
    case 2: c.num_kv_heads = rng.edge_int32(); break;
    case 3: c.head_dim = rng.percent(50) ? rng.edge_int32() : rng.pick({32, 96, 512}); break;
    case 4: c.page_size = rng.edge_int32(); break;
    case 5: c.num_pages = rng.edge_int32(); break;
    default: break;
  }
  return c;
}

AppendBatch random_append_batch(Rng& rng, const AppendConfig& c) {
  AppendBatch batch;
  const int32_t n = rng.percent(10) ? 0 : int32_t(rng.range(1, 8));
  batch.num_requests = n;
  const int64_t page_size = c.page_size >= 1 && c.page_size <= 1024 ? c.page_size : 16;
  const int64_t pool = std::max<int64_t>(1, c.num_pages);
  const bool nothing_appended = rng.percent(40);  // plans that need no upload: made even without a GPU
  const bool distinct_pages = rng.percent(70);
  batch.append_indptr.push_back(0);
  batch.kv_indptr.push_back(0);
  int64_t next_page = int64_t(rng.below(uint64_t(pool)));
  for (int32_t b = 0; b < n; ++b) {
    const int64_t pages = rng.percent(15) ? 0 : rng.range(1, 6);
    const int64_t last = pages == 0 ? 0 : rng.range(1, page_size);
    const int64_t kv_len = pages == 0 ? 0 : page_size * (pages - 1) + last;
    const int64_t append = nothing_appended ? 0 : rng.percent(20) ? kv_len : rng.range(0, std::min<int64_t>(kv_len, 64));
    for (int64_t p = 0; p < pages; ++p)
      batch.kv_indices.push_back(int32_t(distinct_pages ? next_page++ % pool : int64_t(rng.below(uint64_t(pool)))));
    batch.kv_indptr.push_back(int32_t(batch.kv_indices.size()));
    batch.append_indptr.push_back(int32_t(batch.append_indptr.back() + append));
    batch.last_page_len.push_back(int32_t(last));
  }
  auto any_entry = [&](std::vector<int32_t>& v) -> int32_t& { return v[rng.below(v.size())]; };
  if (batch.kv_indices.empty()) batch.kv_indices.push_back(0);  // data() of an empty vector may be null
  if (batch.last_page_len.empty()) batch.last_page_len.push_back(0);
  for (int m = rng.pick({0, 0, 1, 1, 2}); m > 0; --m) {
    switch (rng.below(10)) {
      case 0: batch.num_requests = std::min(rng.edge_int32(), -1); break;
      case 1: (rng.percent(50) ? batch.null_append : batch.null_kv) = true; break;
      case 2: (rng.percent(50) ? batch.null_indices : batch.null_last) = true; break;
      case 3: any_entry(batch.append_indptr) = rng.edge_int32(); break;
      case 4: any_entry(batch.kv_indptr) = rng.edge_int32(); break;
      case 5:
        any_entry(batch.kv_indices) = rng.pick({-1, c.num_pages, INT32_MAX, INT32_MIN, rng.edge_int32()});
        break;
      case 6: any_entry(batch.last_page_len) = rng.pick({0, -1, wrap32(int64_t(c.page_size) + 1), rng.edge_int32()}); break;
      case 7: any_entry(batch.kv_indices) = batch.kv_indices[rng.below(batch.kv_indices.size())]; break;
      case 8: {  // appended rows right at, or past, INT32_MAX
        const int64_t heads = std::max<int64_t>(1, c.num_kv_heads);
        batch.append_indptr.back() = int32_t(std::min<int64_t>(kInt32Max, kInt32Max / heads + rng.range(0, 1)));
        break;
      }
      default: batch.append_indptr.back() = wrap32(int64_t(batch.append_indptr.back()) + 1); break;  // one token too many
    }
  }
  // Keep the arrays' promise (see AppendBatch).
  const std::vector<int32_t>& kv = batch.kv_indptr;
  bool well_formed = batch.num_requests >= 0 && !batch.null_kv && kv[0] == 0;
  for (int32_t b = 0; well_formed && b < batch.num_requests; ++b) well_formed = kv[b + 1] >= kv[b];
  if (well_formed && kv[batch.num_requests] > int64_t(batch.kv_indices.size())) {
    if (kv[batch.num_requests] <= (1 << 20))
      batch.kv_indices.resize(size_t(kv[batch.num_requests]), batch.kv_indices[0]);
    else
      batch.null_indices = true;
  }
  return batch;
}

void append_config_rules(const AppendConfig& c, Rules& r) {
  dtype_rules(r, c.dtype, "config.dtype is a DType", "config.dtype is built", "config.dtype");
  r.invalid(int(c.kv_layout) == 0 || int(c.kv_layout) == 1, "config.kv_layout is a KvLayout", "config.kv_layout");
  r.invalid(c.num_kv_heads >= 1 && c.num_kv_heads <= kMaxHeads, "config.num_kv_heads in [1, 65536]",
            "config.num_kv_heads");
  r.invalid(known_head_dim(c.head_dim), "config.head_dim is 64, 128 or 256", "config.head_dim");
  r.invalid(c.page_size >= 1 && c.page_size <= 1024, "config.page_size in [1, 1024]", "config.page_size");
  r.invalid(c.num_pages >= 0, "config.num_pages >= 0", "config.num_pages");
  if (c.page_size >= 1 && c.page_size <= 1024 && c.num_pages >= 0 && c.num_kv_heads >= 1)
    r.invalid(i128(c.num_pages) * c.page_size * c.num_kv_heads <= kInt32Max,
              "num_pages * page_size * num_kv_heads <= INT32_MAX", "num_pages");
}

// The rules of plan_append_paged_kv (ptxattn.hpp): indptrs from 0, never
// decreasing; pages in the pool; last-page lengths as in BatchIndices;
// append_len <= kv_len; no two appended tokens in one slot of one page.
// Returns the number of appended tokens when every rule holds, else -1.
int64_t append_rules(const AppendConfig& c, const AppendIndices& idx, Rules& r) {
  append_config_rules(c, r);
  const int32_t n = idx.num_requests;
  r.invalid(n >= 0, "indices.num_requests >= 0", "num_requests");
  if (n < 0) return -1;
  const bool append_ok = indptr_rules(idx.append_indptr, n, r, "indices.append_indptr is not null",
                                            "indices.append_indptr[0] == 0", "indices.append_indptr is non-decreasing",
                                            "append_indptr");
  const bool kv_ok = indptr_rules(idx.kv_indptr, n, r, "indices.kv_indptr is not null",
                                        "indices.kv_indptr[0] == 0", "indices.kv_indptr is non-decreasing",
                                        "kv_indptr");
  if (append_ok)
    r.invalid(i128(idx.append_indptr[n]) * c.num_kv_heads <= kInt32Max,
              "append_indptr[num_requests] * num_kv_heads <= INT32_MAX", "append_indptr");
  if (!kv_ok) return -1;
  const int64_t listed = idx.kv_indptr[n];
  r.invalid(listed == 0 || idx.kv_indices != nullptr, "kv_indices is not null when pages are listed", "kv_indices");
  if (idx.kv_indices != nullptr) {
    bool in_pool = true;
    for (int64_t i = 0; i < listed; ++i) in_pool = in_pool && idx.kv_indices[i] >= 0 && idx.kv_indices[i] < c.num_pages;
    r.invalid(in_pool, "every kv_indices entry in [0, num_pages)", "kv_indices");
  }
  r.invalid(n == 0 || idx.kv_last_page_len != nullptr, "kv_last_page_len is not null", "kv_last_page_len");
  if (!append_ok || (n > 0 && idx.kv_last_page_len == nullptr)) return -1;
  for (int32_t b = 0; b < n; ++b) {
    const int64_t pages = int64_t(idx.kv_indptr[b + 1]) - idx.kv_indptr[b];
    const int64_t last = idx.kv_last_page_len[b];
    const int64_t append = int64_t(idx.append_indptr[b + 1]) - idx.append_indptr[b];
    if (pages == 0) {
      r.invalid(last == 0, "kv_last_page_len is 0 for a request without pages", "kv_last_page_len");
      r.invalid(append == 0, "append_len <= kv_len", "append_len");
      continue;
    }
    const bool last_ok = last >= 1 && last <= c.page_size;
    r.invalid(last_ok, "kv_last_page_len in [1, page_size] for a request with pages", "kv_last_page_len");
    if (!last_ok) continue;
    const i128 kv_len = i128(c.page_size) * (pages - 1) + last;
    r.invalid(kv_len <= kInt32Max, "kv_len <= INT32_MAX", "kv_len");
    r.invalid(append <= kv_len, "append_len <= kv_len", "append_len");
  }
  if (!r.ok()) return -1;
  // Slots: token j of request b sits at position kv_len - append_len + j.
  std::vector<int64_t> slots;
  for (int32_t b = 0; b < n; ++b) {
    const int64_t pages = int64_t(idx.kv_indptr[b + 1]) - idx.kv_indptr[b];
    const int64_t kv_len = pages == 0 ? 0 : int64_t(c.page_size) * (pages - 1) + idx.kv_last_page_len[b];
    const int64_t append = int64_t(idx.append_indptr[b + 1]) - idx.append_indptr[b];
    for (int64_t pos = kv_len - append; pos < kv_len; ++pos)
      slots.push_back(int64_t(idx.kv_indices[idx.kv_indptr[b] + pos / c.page_size]) * c.page_size +
                      pos % c.page_size);
  }
  std::sort(slots.begin(), slots.end());
  r.invalid(std::adjacent_find(slots.begin(), slots.end()) == slots.end(),
            "no two appended tokens land in one slot of one page", "slot");
  return r.ok() ? int64_t(slots.size()) : -1;
}

std::string describe(const AppendConfig& c) {
  std::ostringstream out;
  out << "config{dtype " << int(c.dtype) << ", num_kv_heads " << c.num_kv_heads << ", head_dim " << c.head_dim
      << ", kv_layout " << int(c.kv_layout) << ", page_size " << c.page_size << ", num_pages " << c.num_pages << "}";
  return out.str();
}

std::string describe(const AppendIndices& idx) {
  const int32_t n = idx.num_requests;
  const int64_t entries = n >= 0 ? int64_t(n) + 1 : 0;
  bool listed = n >= 0 && idx.kv_indptr != nullptr && idx.kv_indptr[0] == 0;
  for (int32_t b = 0; listed && b < n; ++b) listed = idx.kv_indptr[b + 1] >= idx.kv_indptr[b];
  return "indices{num_requests " + std::to_string(n) + ", append_indptr " + list(idx.append_indptr, entries) +
         ", kv_indptr " + list(idx.kv_indptr, entries) + ", kv_indices " +
         (listed ? list(idx.kv_indices, idx.kv_indptr[n]) : idx.kv_indices ? "(unread)" : "null") +
         ", kv_last_page_len " + list(idx.kv_last_page_len, std::max(0, n)) + "}";
}

std::string describe(const AppendTensors& t) {
  std::ostringstream out;
  out << "tensors{k_new " << hex(uintptr_t(t.k_new)) << ", v_new " << hex(uintptr_t(t.v_new)) << ", k_cache "
      << hex(uintptr_t(t.k_cache)) << ", v_cache " << hex(uintptr_t(t.v_cache)) << ", num_append_tokens "
      << t.num_append_tokens << ", num_pages " << t.num_pages << ", q_in " << hex(uintptr_t(t.q_in)) << ", q_out "
      << hex(uintptr_t(t.q_out)) << ", num_qo_heads " << t.num_qo_heads << "}";
  return out.str();
}

}  // namespace

void fuzz_append(Rng& rng, Fuzzer& fuzzer) {
  const AppendConfig c = random_append_config(rng);
  const AppendBatch batch = random_append_batch(rng, c);
  const AppendIndices idx = batch.view();
  const auto input = [&] { return describe(c) + "\n    " + describe(idx); };
  fuzzer.show(input);

  Rules plan_rules;
  const int64_t appended = append_rules(c, idx, plan_rules);
  fuzzer.check("validate_append_indices", ptxattn::validate_append_indices(c, idx), plan_rules, WhenValid::kOk, input);
  AppendPlan plan;
  const Status planned = ptxattn::plan_append_paged_kv(c, idx, plan);
  fuzzer.check("plan_append_paged_kv", planned, plan_rules, WhenValid::kOkOrLaunch, input);
  fuzzer.require(plan.valid() == planned.ok(), "plan_append_paged_kv",
                 "plan.valid() exactly after a plan that succeeded", input);
  if (planned.ok())
    fuzzer.require(plan.num_append_tokens() == appended, "plan_append_paged_kv",
                   "plan.num_append_tokens() == append_indptr[num_requests]", input);

  // The C twins answer as the C++ calls; a struct of another layout is refused first.
  const ptxattn_append_config c_config{random_struct_size<ptxattn_append_config>(rng),
                                       int32_t(c.dtype),
                                       c.num_kv_heads,
                                       c.head_dim,
                                       int32_t(c.kv_layout),
                                       c.page_size,
                                       c.num_pages};
  const ptxattn_append_indices c_indices{random_struct_size<ptxattn_append_indices>(rng), idx.num_requests,
                                         idx.append_indptr, idx.kv_indptr, idx.kv_indices, idx.kv_last_page_len};
  Rules c_layout;
  struct_size_rule(c_layout, &c_config, "C: config.struct_size is sizeof(ptxattn_append_config)");
  struct_size_rule(c_layout, &c_indices, "C: indices.struct_size is sizeof(ptxattn_append_indices)");
  const auto c_input = [&] {
    return input() + "\n    struct_size config " + std::to_string(c_config.struct_size) + " indices " +
           std::to_string(c_indices.struct_size);
  };
  const Status c_validated = c_status(fuzzer, "ptxattn_validate_append_indices",
                                      ptxattn_validate_append_indices(&c_config, &c_indices));
  ptxattn_append_plan* c_plan = nullptr;
  fuzzer.require(ptxattn_append_plan_create(&c_plan) == PTXATTN_STATUS_OK && c_plan != nullptr,
                 "ptxattn_append_plan_create", "creating a plan succeeds", [] { return std::string(); });
  const Status c_planned = c_status(fuzzer, "ptxattn_plan_append_paged_kv",
                                    ptxattn_plan_append_paged_kv(c_plan, &c_config, &c_indices));
  if (c_layout.ok()) {
    same_answer(fuzzer, "ptxattn_validate_append_indices", c_validated, ptxattn::validate_append_indices(c, idx),
                c_input);
    same_answer(fuzzer, "ptxattn_plan_append_paged_kv", c_planned, planned, c_input);
  } else {
    fuzzer.check("ptxattn_validate_append_indices", c_validated, c_layout, WhenValid::kOk, c_input);
    fuzzer.check("ptxattn_plan_append_paged_kv", c_planned, c_layout, WhenValid::kOk, c_input);
  }

  // append_paged_kv_cache with this plan (made without a GPU when nothing is appended).
  const int64_t n = planned.ok() ? appended : rng.range(0, 8);
  AppendTensors t;
  t.num_append_tokens = rng.percent(85) ? n : rng.pick<int64_t>({n + 1, n - 1, rng.edge_int64()});
  t.num_pages = rng.percent(85) ? c.num_pages : rng.pick({wrap32(int64_t(c.num_pages) + 1), wrap32(int64_t(c.num_pages) - 1), rng.edge_int32()});
  const bool with_rope = rng.percent(50);
  RopeConfig rope = random_rope(rng, known_head_dim(c.head_dim) ? c.head_dim : 128);
  if (rng.percent(20)) mutate_rope(rng, rope);
  const bool with_q = with_rope ? rng.percent(60) : rng.percent(10);
  t.num_qo_heads = with_q ? (rng.percent(85) ? random_heads(rng) : rng.edge_int32()) : 0;
  const i128 kv_bytes = i128(t.num_append_tokens) * c.num_kv_heads * c.head_dim * 2;
  const i128 q_bytes = with_q ? i128(t.num_append_tokens) * t.num_qo_heads * c.head_dim * 2 : 0;
  const i128 pool_bytes = i128(c.num_pages) * c.page_size * c.num_kv_heads * c.head_dim * 2;
  const std::vector<uintptr_t> at = place_tensors(rng, {kv_bytes, kv_bytes, pool_bytes, pool_bytes, q_bytes, q_bytes});
  t.k_new = as_pointer(at[0]);
  t.v_new = as_pointer(at[1]);
  t.k_cache = as_mutable_pointer(at[2]);
  t.v_cache = as_mutable_pointer(at[3]);
  if (with_q) {
    t.q_in = as_pointer(at[4]);
    t.q_out = as_mutable_pointer(rng.percent(40) ? at[4] : at[5]);
  }
  const auto run_input = [&] {
    return input() + "\n    " + describe(t) + "\n    " + (with_rope ? describe(rope) : std::string("rope null"));
  };

  Rules run;
  if (!planned.ok()) {
    run.invalid(false, "append_paged_kv_cache needs a plan whose plan_append_paged_kv succeeded", "plan");
  } else {
    run.expect(t.num_append_tokens == appended, "tensors.num_append_tokens == the plan's", StatusCode::kPlanMismatch,
               "num_append_tokens");
    run.expect(t.num_pages == c.num_pages, "tensors.num_pages == config.num_pages", StatusCode::kPlanMismatch,
               "num_pages");
    if (with_rope) {
      rope_rules(rope, run);
      run.invalid(rope.rotary_dim >= 2 && rope.rotary_dim <= c.head_dim && rope.rotary_dim % 2 == 0,
                  "rope->rotary_dim even and in [2, config.head_dim]", "rotary_dim");
    }
    const bool q_given = t.q_in != nullptr || t.q_out != nullptr || t.num_qo_heads != 0;
    run.invalid(!q_given || with_rope, "Q fields only with a rope (fused variant)", "rope");
    if (q_given)
      run.invalid(t.num_qo_heads >= 1 && t.num_qo_heads <= kMaxHeads, "tensors.num_qo_heads in [1, 65536]",
                  "num_qo_heads");
    const Span k_new{uintptr_t(t.k_new), kv_bytes}, v_new{uintptr_t(t.v_new), kv_bytes},
        k_cache{uintptr_t(t.k_cache), pool_bytes}, v_cache{uintptr_t(t.v_cache), pool_bytes},
        q_in{uintptr_t(t.q_in), q_bytes}, q_out{uintptr_t(t.q_out), q_bytes};
    const struct {
      const Span& span;
      const char* null_rule;
      const char* align_rule;
      const char* needle;
    } pointers[] = {
        {k_new, "tensors.k_new is not null unless empty", "tensors.k_new is 16-byte aligned", "tensors.k_new"},
        {v_new, "tensors.v_new is not null unless empty", "tensors.v_new is 16-byte aligned", "tensors.v_new"},
        {k_cache, "tensors.k_cache is not null unless empty", "tensors.k_cache is 16-byte aligned", "tensors.k_cache"},
        {v_cache, "tensors.v_cache is not null unless empty", "tensors.v_cache is 16-byte aligned", "tensors.v_cache"},
        {q_in, "tensors.q_in is not null unless empty", "tensors.q_in is 16-byte aligned", "tensors.q_in"},
        {q_out, "tensors.q_out is not null unless empty", "tensors.q_out is 16-byte aligned", "tensors.q_out"},
    };
    for (const auto& p : pointers) {
      run.invalid(p.span.bytes == 0 || p.span.address != 0, p.null_rule, p.needle);
      run.invalid(p.span.address % 16 == 0, p.align_rule, p.needle);
    }
    run.invalid(!overlaps(k_cache, k_new) && !overlaps(k_cache, v_new) && !overlaps(k_cache, q_in) &&
                    !overlaps(k_cache, v_cache) && !overlaps(k_cache, q_out),
                "tensors.k_cache overlaps no other tensor", "tensors.k_cache");
    run.invalid(!overlaps(v_cache, k_new) && !overlaps(v_cache, v_new) && !overlaps(v_cache, q_in) &&
                    !overlaps(v_cache, q_out),
                "tensors.v_cache overlaps no other tensor", "tensors.v_cache");
    run.invalid((q_out.address == q_in.address || !overlaps(q_out, q_in)) && !overlaps(q_out, k_new) &&
                    !overlaps(q_out, v_new),
                "tensors.q_out is q_in exactly or overlaps no input", "tensors.q_out");
  }
  const bool launches = planned.ok() && appended > 0;
  if (fuzzer.may_call("append_paged_kv_cache", run, launches)) {
    fuzzer.show(run_input);
    const Status ran = ptxattn::append_paged_kv_cache(plan, t, with_rope ? &rope : nullptr, nullptr);
    fuzzer.check("append_paged_kv_cache", ran, run, launches ? WhenValid::kLaunch : WhenValid::kOk, run_input);
    if (c_layout.ok()) {  // the C plan is the C++ plan's twin
      const ptxattn_append_tensors c_tensors{random_struct_size<ptxattn_append_tensors>(rng),
                                             t.k_new,
                                             t.v_new,
                                             t.k_cache,
                                             t.v_cache,
                                             t.num_append_tokens,
                                             t.num_pages,
                                             t.q_in,
                                             t.q_out,
                                             t.num_qo_heads};
      const ptxattn_rope_config c_rope = to_c(rng, rope);
      Rules c_run;
      struct_size_rule(c_run, &c_tensors, "C: tensors.struct_size is sizeof(ptxattn_append_tensors)");
      if (with_rope) {
        struct_size_rule(c_run, &c_rope, "C: rope.struct_size is sizeof(ptxattn_rope_config)");
        c_run.invalid(c_rope.interleave == 0 || c_rope.interleave == 1, "C: rope.interleave is 0 or 1", "interleave");
        c_run.invalid(c_rope.llama31 == 0 || c_rope.llama31 == 1, "C: rope.llama31 is 0 or 1", "llama31");
      }
      const auto c_run_input = [&] {
        return run_input() + "\n    struct_size tensors " + std::to_string(c_tensors.struct_size) + " rope " +
               std::to_string(c_rope.struct_size) + ", c.interleave " + std::to_string(c_rope.interleave) +
               ", c.llama31 " + std::to_string(c_rope.llama31);
      };
      const Status c_ran =
          c_status(fuzzer, "ptxattn_append_paged_kv_cache",
                   ptxattn_append_paged_kv_cache(c_plan, &c_tensors, with_rope ? &c_rope : nullptr, nullptr));
      if (c_run.ok())
        same_answer(fuzzer, "ptxattn_append_paged_kv_cache", c_ran, ran, c_run_input);
      else
        fuzzer.check("ptxattn_append_paged_kv_cache", c_ran, c_run, WhenValid::kOk, c_run_input);
    }
  }
  ptxattn_append_plan_destroy(c_plan);
}

void fuzz_rope_work_split(Rng& rng, Fuzzer& fuzzer) {
  // The host half of every RoPE and append launch, for shapes the API accepts.
  ptxattn::detail::RopeParams p{};
  p.num_groups = int32_t(rng.range(1, ptxattn::detail::kRopeMaxGroups));
  p.head_dim = rng.pick({64, 128, 256});
  p.interleave = rng.percent(50);
  p.rotary_dim = 2 * int32_t(rng.range(1, p.head_dim / 2));
  int64_t rows_per_token = 0;
  for (int32_t g = 0; g < p.num_groups; ++g) {
    p.groups[g].heads = random_heads(rng);
    p.groups[g].rotate = rng.percent(70);
    rows_per_token += p.groups[g].heads;
  }
  const int64_t max_tokens = kInt32Max / rows_per_token;
  p.num_tokens = rng.percent(60) ? rng.range(1, 1000) : rng.percent(50) ? max_tokens : rng.range(1, max_tokens);
  const int64_t resident_threads = rng.pick<int64_t>({132 * 2048, 114 * 2048, 1, int64_t(1) << 40});
  const int32_t cta_threads = rng.pick({128, 256, 1024});
  const auto input = [&] {
    std::string text = "num_tokens " + std::to_string(p.num_tokens) + ", head_dim " + std::to_string(p.head_dim) +
                       ", rotary_dim " + std::to_string(p.rotary_dim) + ", interleave " +
                       std::to_string(p.interleave) + ", resident_threads " + std::to_string(resident_threads) +
                       ", cta_threads " + std::to_string(cta_threads) + ", groups";
    for (int32_t g = 0; g < p.num_groups; ++g)
      text += " {heads " + std::to_string(p.groups[g].heads) + ", rotate " + std::to_string(p.groups[g].rotate) + "}";
    return text;
  };
  fuzzer.show(input);
  ptxattn::detail::split_rope_work(p, resident_threads, cta_threads);

  // Units cover a row (head_dim / 8 of them when the rotary part is whole units), blocks cover the heads.
  i128 items = 0;
  bool blocks_ok = p.heads_per_block >= 1;
  for (int32_t g = 0; g < p.num_groups && blocks_ok; ++g) {
    const auto& group = p.groups[g];
    blocks_ok = group.units >= 1 && i128(group.head_blocks) * p.heads_per_block >= group.heads &&
                i128(group.head_blocks - 1) * p.heads_per_block < group.heads;
    items += i128(group.units) * group.head_blocks;
  }
  const i128 ctas = p.tokens_per_cta >= 1 ? (i128(p.num_tokens) + p.tokens_per_cta - 1) / p.tokens_per_cta : -1;
  fuzzer.require(blocks_ok && items == p.items_per_token && p.tokens_per_cta >= 1 &&
                     i128(p.tokens_per_cta) * p.items_per_token <= std::max<i128>(cta_threads, p.items_per_token),
                 "detail::split_rope_work", "head blocks cover each group; a CTA holds about cta_threads items", input);
  if (!blocks_ok || p.tokens_per_cta < 1) return;
  fuzzer.require(ctas == ptxattn::detail::rope_num_ctas(p), "detail::rope_num_ctas",
                 "enough CTAs for every token, no more", input);
  // The first and last item of the first and last CTA decode to real rows.
  for (const int64_t cta : {int64_t(0), int64_t(ctas - 1)}) {
    const int32_t cta_items = ptxattn::detail::rope_cta_items(p, cta);
    const i128 tokens = std::min<i128>(p.tokens_per_cta, i128(p.num_tokens) - i128(cta) * p.tokens_per_cta);
    fuzzer.require(cta_items == tokens * p.items_per_token, "detail::rope_cta_items",
                   "a CTA's items are its tokens times the items per token", input);
    for (const int32_t item : {0, cta_items - 1}) {
      const ptxattn::detail::RopeItem it = ptxattn::detail::rope_item(p, cta, item);
      const bool in_range = it.token >= 0 && it.token < p.num_tokens && it.group >= 0 && it.group < p.num_groups &&
                            it.unit >= 0 && it.unit < p.groups[it.group].units && it.head_begin >= 0 &&
                            it.head_begin < it.head_end && it.head_end <= p.groups[it.group].heads;
      fuzzer.require(in_range, "detail::rope_item", "an item decodes to a token, group, unit and heads that exist",
                     [&] { return input() + ", cta " + std::to_string(cta) + ", item " + std::to_string(item); });
    }
  }
}

void fuzz_misc(Rng& rng, Fuzzer& fuzzer) {
  const int32_t value = rng.edge_int32();
  const auto input = [&] { return "value " + std::to_string(value); };
  fuzzer.show(input);
  fuzzer.require(ptxattn_status_name(value) != nullptr, "ptxattn_status_name", "never NULL", input);
  fuzzer.require(ptxattn::status_code_name(static_cast<StatusCode>(value)) != nullptr, "status_code_name",
                 "never null", input);
  ptxattn_prefill_plan_destroy(nullptr);
  ptxattn_append_plan_destroy(nullptr);
  Rules create;
  create.invalid(false, "C: out is not NULL", "out");
  fuzzer.check("ptxattn_prefill_plan_create", c_status(fuzzer, "ptxattn_prefill_plan_create",
                                                       ptxattn_prefill_plan_create(nullptr)),
               create, WhenValid::kOk, input);
  fuzzer.check("ptxattn_append_plan_create", c_status(fuzzer, "ptxattn_append_plan_create",
                                                      ptxattn_append_plan_create(nullptr)),
               create, WhenValid::kOk, input);
  // An _init with a struct_size from another layout (value as a size).
  ptxattn_rope_config rope;
  const size_t size = rng.percent(50) ? sizeof(rope) : size_t(uint32_t(value));
  Rules init;
  init.invalid(size == sizeof(rope), "C: struct_size is sizeof(ptxattn_rope_config)", "struct_size");
  fuzzer.check("ptxattn_rope_config_init",
               c_status(fuzzer, "ptxattn_rope_config_init", ptxattn_rope_config_init(&rope, size)), init,
               WhenValid::kOk, [&] { return "struct_size " + std::to_string(size); });
  fuzzer.check("ptxattn_prefill_config_init",
               c_status(fuzzer, "ptxattn_prefill_config_init",
                        ptxattn_prefill_config_init(nullptr, sizeof(ptxattn_prefill_config))),
               create, WhenValid::kOk, input);
  fuzzer.require(ptxattn_last_error_message() != nullptr, "ptxattn_last_error_message", "never NULL", input);
}

}  // namespace fuzz
