// Merge target of ptxattn-fuzz: merge_states and merge_state, C++ and C. The
// rules restate ptxattn.hpp ("Merging attention states") and README
// "Validation" in __int128 arithmetic.
#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "ptxattn/ptxattn.h"

namespace fuzz {
namespace {

using ptxattn::MergeStatesTensors;
using ptxattn::MergeStateTensors;
using ptxattn::StateDType;

bool known_state_dtype(StateDType d) { return int(d) >= 0 && int(d) <= 2; }
i128 element_bytes(StateDType d) { return d == StateDType::kFP32 ? 4 : 2; }

StateDType random_state_dtype(Rng& rng) {
  return rng.percent(95) ? StateDType(rng.below(3)) : static_cast<StateDType>(rng.edge_int32());
}

// One merge, either entry point: the shape and every tensor's place.
struct Merge {
  bool stacked = true;  // merge_states; else merge_state (two states)
  StateDType v_dtype = StateDType::kBF16, out_dtype = StateDType::kBF16;
  int32_t num_states = 2, num_heads = 1, head_dim = 64;
  int64_t num_tokens = 0;
  // Inputs: v, lse (stacked) or v_a, lse_a, v_b, lse_b; then v_out, lse_out.
  std::vector<const char*> names;
  std::vector<Span> spans;

  i128 rows() const { return i128(std::max<int64_t>(num_tokens, 0)) * std::max(num_heads, 0); }
  int inputs() const { return stacked ? 2 : 4; }
};

Merge random_merge(Rng& rng, bool stacked) {
  Merge m;
  m.stacked = stacked;
  m.v_dtype = random_state_dtype(rng);
  m.out_dtype = random_state_dtype(rng);
  m.head_dim = rng.percent(85) ? rng.pick({8, 40, 64, 128, 256, 1024}) : rng.edge_int32();
  m.num_heads = rng.percent(85) ? int32_t(rng.range(1, 64)) : rng.edge_int32();
  m.num_states = stacked ? (rng.percent(85) ? int32_t(rng.range(1, 16)) : rng.pick({0, 4095, 4096, 4097, -1})) : 2;
  const uint64_t kind = rng.below(100);
  const int64_t max_tokens = m.num_heads > 0 ? kInt32Max / m.num_heads : 1;
  m.num_tokens = kind < 20 ? 0 : kind < 70 ? rng.range(1, 64) : kind < 85 ? max_tokens + rng.range(-1, 1)
                                                                          : rng.edge_int64();
  // Sizes from rows capped at 2^40 so the products fit __int128: past
  // INT32_MAX rows the library refuses before it looks at a pointer, and
  // the cap keeps zero and non-zero sizes apart.
  const i128 rows = std::min<i128>(m.rows(), i128(1) << 40);
  const i128 states = stacked ? std::max(m.num_states, 0) : 1;
  const i128 v_in = rows * states * std::max(m.head_dim, 0) * element_bytes(m.v_dtype);
  const i128 lse_in = rows * states * 4;
  const i128 v_out = rows * std::max(m.head_dim, 0) * element_bytes(m.out_dtype), lse_out = rows * 4;
  std::vector<i128> bytes;
  if (stacked) {
    m.names = {"tensors.v", "tensors.lse"};
    bytes = {v_in, lse_in};
  } else {
    m.names = {"tensors.v_a", "tensors.lse_a", "tensors.v_b", "tensors.lse_b"};
    bytes = {v_in, lse_in, v_in, lse_in};
  }
  m.names.insert(m.names.end(), {"tensors.v_out", "tensors.lse_out"});
  bytes.insert(bytes.end(), {v_out, lse_out});
  const std::vector<uintptr_t> at = place_tensors(rng, bytes);
  for (size_t i = 0; i < at.size(); ++i) m.spans.push_back({at[i], bytes[i]});
  if (rng.percent(20)) m.spans.back().address = 0;  // lse_out not wanted
  return m;
}

void merge_rules(const Merge& m, Rules& r) {
  r.invalid(known_state_dtype(m.v_dtype), "tensors.v_dtype is a StateDType", "tensors.v_dtype");
  r.invalid(known_state_dtype(m.out_dtype), "tensors.out_dtype is a StateDType", "tensors.out_dtype");
  r.invalid(m.head_dim >= 8 && m.head_dim <= 1024 && m.head_dim % 8 == 0,
            "tensors.head_dim is a multiple of 8 in [8, 1024]", "tensors.head_dim");
  r.invalid(m.num_heads >= 1, "tensors.num_heads >= 1", "tensors.num_heads");
  r.invalid(m.num_tokens >= 0, "tensors.num_tokens >= 0", "tensors.num_tokens");
  r.invalid(i128(m.num_tokens) * m.num_heads <= kInt32Max, "tensors.num_tokens * num_heads <= INT32_MAX",
            "tensors.num_tokens");
  if (m.stacked)
    r.invalid(m.num_states >= 1 && m.num_states <= 4096, "tensors.num_states in [1, 4096]", "tensors.num_states");
  const size_t v_out = m.spans.size() - 2, lse_out = m.spans.size() - 1;
  for (size_t i = 0; i < m.spans.size(); ++i) {
    const Span& s = m.spans[i];
    if (i != lse_out)  // lse_out: null means not written
      r.invalid(s.bytes == 0 || s.address != 0, "a tensor is not null unless empty (lse_out: may be null)", m.names[i]);
    r.invalid(s.address % 16 == 0, "every pointer is 16-byte aligned", m.names[i]);
  }
  for (size_t out : {v_out, lse_out})
    for (int in = 0; in < m.inputs(); ++in)
      r.invalid(!overlaps(m.spans[out], m.spans[in]), "an output overlaps no input", m.names[out]);
  r.invalid(!overlaps(m.spans[v_out], m.spans[lse_out]), "tensors.v_out and tensors.lse_out do not overlap",
            "tensors.v_out|tensors.lse_out");
}

std::string describe(const Merge& m) {
  std::ostringstream out;
  out << (m.stacked ? "merge_states" : "merge_state") << " tensors{v_dtype " << int(m.v_dtype) << ", out_dtype "
      << int(m.out_dtype) << ", num_states " << m.num_states << ", num_heads " << m.num_heads << ", head_dim "
      << m.head_dim << ", num_tokens " << m.num_tokens;
  for (size_t i = 0; i < m.spans.size(); ++i) out << ", " << m.names[i] << " " << hex(m.spans[i].address);
  out << "}";
  return out.str();
}

const void* input(const Merge& m, int i) { return as_pointer(m.spans[i].address); }
void* output(const Merge& m, int i) { return as_mutable_pointer(m.spans[m.inputs() + i].address); }

MergeStatesTensors stacked_tensors(const Merge& m) {
  return {m.v_dtype,  m.out_dtype,  m.num_states,
          m.num_heads, m.head_dim, m.num_tokens,
          input(m, 0), static_cast<const float*>(input(m, 1)), output(m, 0),
          static_cast<float*>(output(m, 1))};
}

MergeStateTensors pair_tensors(const Merge& m) {
  return {m.v_dtype,   m.out_dtype,  m.num_heads,
          m.head_dim,  m.num_tokens, input(m, 0),
          static_cast<const float*>(input(m, 1)), input(m, 2), static_cast<const float*>(input(m, 3)),
          output(m, 0), static_cast<float*>(output(m, 1))};
}

}  // namespace

void fuzz_merge(Rng& rng, Fuzzer& fuzzer) {
  const bool stacked = rng.percent(60);
  const Merge m = random_merge(rng, stacked);
  const bool c_null = rng.percent(5);
  const MergeStatesTensors cpp_stacked = stacked_tensors(m);
  const MergeStateTensors cpp_pair = pair_tensors(m);
  const ptxattn_merge_states_tensors c_stacked{random_struct_size<ptxattn_merge_states_tensors>(rng),
                                               int32_t(m.v_dtype), int32_t(m.out_dtype), m.num_states, m.num_heads,
                                               m.head_dim, m.num_tokens, cpp_stacked.v, cpp_stacked.lse,
                                               cpp_stacked.v_out, cpp_stacked.lse_out};
  const ptxattn_merge_state_tensors c_pair{random_struct_size<ptxattn_merge_state_tensors>(rng),
                                           int32_t(m.v_dtype), int32_t(m.out_dtype), m.num_heads, m.head_dim,
                                           m.num_tokens, cpp_pair.v_a, cpp_pair.lse_a, cpp_pair.v_b, cpp_pair.lse_b,
                                           cpp_pair.v_out, cpp_pair.lse_out};
  const uint32_t c_struct_size = stacked ? c_stacked.struct_size : c_pair.struct_size;
  const auto input_text = [&] {
    return describe(m) + (c_null ? "\n    C: tensors NULL" : "\n    C: struct_size " + std::to_string(c_struct_size));
  };
  fuzzer.show(input_text);

  Rules rules;
  merge_rules(m, rules);
  const bool launches = m.num_tokens > 0;
  const WhenValid when_valid = launches ? WhenValid::kLaunch : WhenValid::kOk;
  const char* entry = stacked ? "merge_states" : "merge_state";
  if (!fuzzer.may_call(entry, rules, launches)) return;
  const Status cpp = stacked ? ptxattn::merge_states(cpp_stacked, nullptr) : ptxattn::merge_state(cpp_pair, nullptr);
  fuzzer.check(entry, cpp, rules, when_valid, input_text);

  // The C twin: NULL and another layout first, then the same answer as C++.
  Rules c_rules;
  c_rules.invalid(!c_null, "C: tensors is not NULL", "tensors");
  const size_t own_size = stacked ? sizeof(ptxattn_merge_states_tensors) : sizeof(ptxattn_merge_state_tensors);
  c_rules.invalid(c_null || c_struct_size == own_size, "C: tensors.struct_size is sizeof(its struct)",
                  "struct_size");
  const bool c_ok = c_rules.ok();
  c_rules.append(rules);
  const char* c_entry = stacked ? "ptxattn_merge_states" : "ptxattn_merge_state";
  const int code = stacked ? ptxattn_merge_states(c_null ? nullptr : &c_stacked, nullptr)
                           : ptxattn_merge_state(c_null ? nullptr : &c_pair, nullptr);
  const Status c = c_status(fuzzer, c_entry, code);
  fuzzer.check(c_entry, c, c_rules, when_valid, input_text);
  if (c_ok) same_answer(fuzzer, c_entry, c, cpp, input_text);
}

}  // namespace fuzz
