// Prefill targets of ptxattn-fuzz: validate_prefill_config,
// validate_batch_indices, tma_load_path_supported, plan_prefill, run_prefill,
// validate_prefill_tensors, their C mirrors, and the plan's per-tile key range.
//
// The rules below restate README "Validation" in __int128 arithmetic. They are
// order-free: every rule an input breaks is listed, and a refusal must match
// one of them; the library may check in any order.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "prefill_params.hpp"  // kv_block_range, kPrefillBlockQ
#include "ptxattn/ptxattn.h"
#include "validate.hpp"        // validate_prefill_tensors

namespace fuzz {
namespace {

using ptxattn::BatchIndices;
using ptxattn::DType;
using ptxattn::GqaPacking;
using ptxattn::KvBlock;
using ptxattn::KvFormat;
using ptxattn::KvLayout;
using ptxattn::KvLoadPath;
using ptxattn::PlanCapacity;
using ptxattn::PlanWorkspace;
using ptxattn::PrefillConfig;
using ptxattn::PrefillPlan;
using ptxattn::PrefillTensors;
using ptxattn::WorkSchedule;
using ptxattn::WorkspaceSizes;

// Longest page list the fuzzer lays out: enough for a kv_len of 2^30 at page
// size 1024 and past it. Most batches list at most kUsualListedPages: long
// lists cost the library and the rules alike, and would dominate the run.
constexpr int64_t kMaxListedPages = int64_t(1) << 21;
constexpr int64_t kUsualListedPages = int64_t(1) << 16;
// Up to this many query tiles (128 rows each) plan_prefill is called on a
// valid batch; beyond, only the validators are (the plan's tile loop would
// dominate the run).
constexpr int64_t kMaxPlannedTiles = int64_t(1) << 16;
// The most work items (tiles x qo heads) the persistent schedule lists
// (docs/kernels.md, "Schedules"): beyond, only one item per CTA is available.
constexpr int64_t kMaxListedItems = int64_t(1) << 22;
// Valid plans that would list more items than this (one item per CTA, or any
// schedule with a GPU) are not made either: listing them would dominate the
// run (at 2^20, a forced one item per CTA made the prefill targets 4 times
// slower). Persistent plans without a GPU stop before listing, so they are
// made up to kMaxListedItems and past it.
constexpr int64_t kMaxCheaplyListedItems = int64_t(1) << 16;
// The split rule's partial states (the chunks of each query row of a split
// tile) per SM at most (docs/kernels.md, "Split-KV").
constexpr int64_t kAutoSplitStatesPerSm = 512;

// What this build compiled (meson options head_dims, dtypes): the same
// defines the library sees, not its helpers.
bool head_dim_built(int64_t head_dim) {
#ifdef PTXATTN_ENABLE_HD64
  if (head_dim == 64) return true;
#endif
#ifdef PTXATTN_ENABLE_HD128
  if (head_dim == 128) return true;
#endif
#ifdef PTXATTN_ENABLE_HD256
  if (head_dim == 256) return true;
#endif
  return false;
}

int32_t random_built_head_dim(Rng& rng) {
  std::vector<int32_t> built;
  for (int32_t head_dim : {64, 128, 256})
    if (head_dim_built(head_dim)) built.push_back(head_dim);
  return built[rng.below(built.size())];
}

bool in_enum(int value, int count) { return value >= 0 && value < count; }

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

// A config that breaks no rule.
PrefillConfig random_config(Rng& rng) {
  PrefillConfig c;
  c.dtype = random_built_dtype(rng);
  c.num_kv_heads = rng.percent(90) ? rng.pick({1, 2, 4, 8, 16, 32}) : int32_t(rng.range(1, 128));
  c.num_qo_heads = c.num_kv_heads * (rng.percent(90) ? rng.pick({1, 1, 2, 4, 8, 16}) : int32_t(rng.range(1, 64)));
  if (rng.percent(2)) {  // so many heads that a few dozen tiles reach the schedule's item limit
    c.num_kv_heads = rng.pick({1, 8, 64});
    c.num_qo_heads = rng.pick({4096, 8192, 16384, 32768, 65536});
  }
  c.head_dim = random_built_head_dim(rng);
  c.kv_format = rng.percent(70) ? KvFormat::kPaged : KvFormat::kRagged;
  c.kv_layout = c.kv_format == KvFormat::kPaged && rng.percent(40) ? KvLayout::kHND : KvLayout::kNHD;
  c.page_size = rng.percent(80) ? rng.pick({1, 2, 7, 16, 32, 64, 128, 256, 1024}) : int32_t(rng.range(1, 1024));
  const int64_t max_pages = kInt32Max / (int64_t(c.page_size) * c.num_kv_heads);
  c.num_pages = int32_t(rng.percent(80)   ? rng.range(0, std::min<int64_t>(64, max_pages))
                        : rng.percent(50) ? max_pages
                                          : rng.range(0, max_pages));
  if (c.kv_format == KvFormat::kRagged && rng.percent(30)) {  // paged-only fields: ignored
    c.page_size = rng.edge_int32();
    c.num_pages = rng.edge_int32();
  }
  c.options.causal = rng.percent(50);
  c.options.window_left = rng.percent(50) ? -1
                          : rng.percent(60)
                              ? int32_t(rng.range(0, 5000))
                              : rng.pick({0, 1, 127, 128, (1 << 30) - 1, 1 << 30, INT32_MAX - 1, INT32_MAX});
  c.options.logits_soft_cap = rng.percent(70) ? 0.0f : rng.pick({30.0f, 50.0f, 1e-3f, 1e-45f, 3.4e38f});
  c.options.sm_scale = rng.percent(70) ? 0.0f : rng.pick({0.125f, 1.0f, 1e-20f, 100.0f});
  c.options.return_lse = rng.percent(50);
  c.load_path = KvLoadPath(rng.below(3));
  c.schedule = WorkSchedule(rng.below(4));
  c.kv_block = KvBlock(rng.pick({0, 0, 0, 1, 2}));  // mostly auto: a forced wide block is mostly refused
  if (c.schedule != WorkSchedule::kOneItemPerCta && rng.percent(30))
    c.max_ctas = rng.percent(70) ? rng.pick({1, 2, 3, 16, 132, 264}) : int32_t(rng.range(1, INT32_MAX));
  if (rng.percent(20)) c.kv_splits = rng.pick({1, 2, 7, 64});
  c.gqa_packing = GqaPacking(rng.pick({0, 0, 1, 2}));
  if (rng.percent(20)) c.kv_stages = rng.pick({2, 3, 4});
  return c;
}

// One change, usually to a value that breaks a rule or sits next to a limit.
void mutate_config(Rng& rng, PrefillConfig& c) {
  switch (rng.below(20)) {
    case 0: c.dtype = static_cast<DType>(rng.percent(50) ? rng.edge_int32() : int32_t(rng.range(0, 2))); break;
    case 1: c.kv_format = static_cast<KvFormat>(rng.percent(50) ? rng.edge_int32() : int32_t(rng.range(0, 2))); break;
    case 2: c.kv_layout = static_cast<KvLayout>(rng.percent(50) ? rng.edge_int32() : int32_t(rng.range(0, 2))); break;
    case 3: c.load_path = static_cast<KvLoadPath>(rng.percent(50) ? rng.edge_int32() : int32_t(rng.range(0, 3))); break;
    case 4: c.num_qo_heads = rng.edge_int32(); break;
    case 5: c.num_kv_heads = rng.edge_int32(); break;
    case 6: c.head_dim = rng.percent(50) ? rng.edge_int32() : rng.pick({32, 64, 96, 128, 192, 256, 512}); break;
    case 7: c.page_size = rng.edge_int32(); break;
    case 8: c.num_pages = rng.edge_int32(); break;
    case 9: {  // the pool right at, or one page past, INT32_MAX rows
      if (c.page_size >= 1 && c.num_kv_heads >= 1) {
        const int64_t max_pages = kInt32Max / (int64_t(c.page_size) * c.num_kv_heads);
        c.num_pages = int32_t(std::min<int64_t>(kInt32Max, max_pages + rng.range(0, 1)));
      }
      break;
    }
    case 10: c.options.window_left = rng.edge_int32(); break;
    case 11: c.options.logits_soft_cap = rng.edge_float(); break;
    case 12: c.options.sm_scale = rng.edge_float(); break;
    case 13: c.schedule = static_cast<WorkSchedule>(rng.percent(50) ? rng.edge_int32() : int32_t(rng.range(0, 4))); break;
    case 14:  // negative, an edge value, or a limit on the schedule that has none
      if (rng.percent(40)) {
        c.schedule = WorkSchedule::kOneItemPerCta;
        c.max_ctas = rng.pick({1, 2, 132, INT32_MAX, rng.edge_int32()});
      } else {
        c.max_ctas = rng.percent(50) ? rng.edge_int32() : rng.pick({-1, 0, 1, INT32_MIN, INT32_MAX});
      }
      break;
    case 15: c.kv_block = static_cast<KvBlock>(rng.percent(50) ? rng.edge_int32() : int32_t(rng.range(0, 3))); break;
    case 16: c.kv_splits = rng.percent(50) ? rng.edge_int32() : rng.pick({-1, 0, 1, 64, 65}); break;
    case 17: c.gqa_packing = static_cast<GqaPacking>(rng.percent(50) ? rng.edge_int32() : int32_t(rng.range(0, 3))); break;
    case 18: c.kv_stages = rng.percent(50) ? rng.edge_int32() : rng.pick({-1, 0, 1, 2, 3, 4, 5}); break;
    default:  // ragged with HND, or a format switch that leaves the other fields as they are
      c.kv_format = c.kv_format == KvFormat::kPaged ? KvFormat::kRagged : KvFormat::kPaged;
      if (rng.percent(50)) c.kv_layout = KvLayout::kHND;
      break;
  }
}

void config_rules(const PrefillConfig& c, Rules& r) {
  const int dtype = int(c.dtype), format = int(c.kv_format), layout = int(c.kv_layout);
  r.invalid(in_enum(dtype, 2), "config.dtype is a DType", "config.dtype");
  r.invalid(in_enum(format, 2), "config.kv_format is a KvFormat", "config.kv_format");
  r.invalid(in_enum(layout, 2), "config.kv_layout is a KvLayout", "config.kv_layout");
  r.invalid(in_enum(int(c.load_path), 3), "config.load_path is a KvLoadPath", "config.load_path");
  r.invalid(in_enum(int(c.schedule), 4), "config.schedule is a WorkSchedule", "config.schedule");
  r.invalid(in_enum(int(c.kv_block), 3), "config.kv_block is a KvBlock", "config.kv_block");
  r.invalid(c.max_ctas >= 0, "config.max_ctas >= 0", "config.max_ctas");
  r.invalid(c.max_ctas <= 0 || c.schedule != WorkSchedule::kOneItemPerCta,
            "config.max_ctas > 0 only without schedule = kOneItemPerCta", "config.max_ctas");
  r.invalid(c.kv_splits >= 0 && c.kv_splits <= ptxattn::detail::kMaxKvSplits, "config.kv_splits in [0, 64]",
            "config.kv_splits");
  r.invalid(in_enum(int(c.gqa_packing), 3), "config.gqa_packing is a GqaPacking", "config.gqa_packing");
  r.invalid(c.kv_stages >= 0, "config.kv_stages >= 0", "config.kv_stages");
  r.invalid(c.num_qo_heads > 0, "config.num_qo_heads > 0", "num_qo_heads");
  r.invalid(c.num_kv_heads > 0, "config.num_kv_heads > 0", "num_kv_heads");
  if (c.num_qo_heads > 0 && c.num_kv_heads > 0)
    r.invalid(c.num_qo_heads % c.num_kv_heads == 0, "num_qo_heads is a multiple of num_kv_heads", "num_qo_heads");
  r.invalid(c.head_dim > 0, "config.head_dim > 0", "head_dim");
  const bool known_head_dim = c.head_dim == 64 || c.head_dim == 128 || c.head_dim == 256;
  if (c.head_dim > 0)
    r.expect(known_head_dim, "config.head_dim is 64, 128 or 256", StatusCode::kUnsupported, "head_dim");
  if (known_head_dim)
    r.expect(head_dim_built(c.head_dim), "config.head_dim is built", StatusCode::kUnsupported, "head_dim");
  if (in_enum(dtype, 2)) r.expect(dtype_built(dtype), "config.dtype is built", StatusCode::kUnsupported, "dtype");
  if (c.kv_format == KvFormat::kPaged) {
    const bool page_size_ok = c.page_size >= 1 && c.page_size <= 1024;
    r.invalid(page_size_ok, "paged: config.page_size in [1, 1024]", "page_size");
    r.invalid(c.num_pages >= 0, "paged: config.num_pages >= 0", "num_pages");
    if (page_size_ok && c.num_pages >= 0 && c.num_kv_heads > 0)
      r.invalid(i128(c.num_pages) * c.page_size * c.num_kv_heads <= kInt32Max,
                "paged: num_pages * page_size * num_kv_heads <= INT32_MAX", "num_pages");
  } else if (c.kv_format == KvFormat::kRagged) {
    r.expect(c.kv_layout == KvLayout::kNHD, "ragged: config.kv_layout is NHD", StatusCode::kUnsupported, "kv_layout");
  }
  r.invalid(c.options.window_left >= -1, "config.options.window_left >= -1", "window_left");
  r.invalid(std::isfinite(c.options.logits_soft_cap) && c.options.logits_soft_cap >= 0.0f,
            "config.options.logits_soft_cap finite and >= 0", "logits_soft_cap");
  r.invalid(std::isfinite(c.options.sm_scale) && c.options.sm_scale >= 0.0f, "config.options.sm_scale finite and >= 0",
            "sm_scale");
}

// Which KV block size the kernel of a head dim uses (docs/kernels.md): 64 rows at head_dim 256, else 128.
int64_t block_kv(int64_t head_dim) { return head_dim == 256 ? 64 : 128; }

// Whether a valid config and a batch with a well-formed kv_indptr can take
// the wide KV block on `path`, from KvBlock's documentation: head_dim 128,
// ragged K/V on the TMA path, no causal mask, no window shorter than the
// longest kv_len and a schedule other than kDynamic.
bool wide_block_fits(const PrefillConfig& c, const BatchIndices& idx, KvLoadPath path) {
  if (c.head_dim != 128 || c.kv_format != KvFormat::kRagged || path != KvLoadPath::kTma || c.options.causal ||
      c.schedule == WorkSchedule::kDynamic)
    return false;
  int64_t max_kv_len = 0;
  for (int32_t b = 0; b < idx.num_requests; ++b)
    max_kv_len = std::max<int64_t>(max_kv_len, int64_t(idx.kv_indptr[b + 1]) - idx.kv_indptr[b]);
  return c.options.window_left < 0 || c.options.window_left >= max_kv_len;
}

// Whether the batch's work lies in long KV ranges, from KvBlock's
// documentation: the KV length of its average score (each request's kv_len
// weighted by qo_len x kv_len) is 8192 or more. Ragged K/V: kv_len is the
// request's kv_indptr span.
bool long_kv_ranges(const BatchIndices& idx) {
  long double scores = 0, weighted = 0;
  for (int32_t b = 0; b < idx.num_requests; ++b) {
    const long double qo_len = int64_t(idx.qo_indptr[b + 1]) - idx.qo_indptr[b];
    const long double kv_len = int64_t(idx.kv_indptr[b + 1]) - idx.kv_indptr[b];
    scores += qo_len * kv_len;
    weighted += qo_len * kv_len * kv_len;
  }
  return scores > 0 && weighted >= 8192 * scores;
}

// The KV block a plan walks, from chosen_block_kv's and KvBlock's
// documentation: 176 where kWide is forced (the plan refuses it where it does
// not fit) or kAuto finds that it fits and the KV ranges are long, else
// block_kv(head_dim).
int64_t expected_block_kv(const PrefillConfig& c, const BatchIndices& idx, KvLoadPath path) {
  const bool wide = c.kv_block == KvBlock::kWide ||
                    (c.kv_block == KvBlock::kAuto && wide_block_fits(c, idx, path) && long_kv_ranges(idx));
  return wide ? 176 : block_kv(c.head_dim);
}

// The K/V stages of each head dim's ring (PrefillConfig::kv_stages).
int32_t default_kv_stages(int32_t head_dim) { return head_dim == 64 ? 4 : 2; }

// tma_load_path_supported for a valid config, from its header comment:
// ragged always; paged when a KV block is a whole number of pages or a page a whole number of blocks.
bool tma_supported(const PrefillConfig& c) {
  if (c.kv_format == KvFormat::kRagged) return true;
  const int64_t block = block_kv(c.head_dim);
  return c.page_size % block == 0 || block % c.page_size == 0;
}

// The load path a valid config's plan takes (KvLoadPath; docs/kernels.md,
// "Load paths": kAuto takes TMA for pages of 64 or more where it serves them).
KvLoadPath resolved_path(const PrefillConfig& c) {
  if (c.kv_format == KvFormat::kRagged) return c.load_path == KvLoadPath::kGather ? KvLoadPath::kGather : KvLoadPath::kTma;
  if (c.load_path != KvLoadPath::kAuto) return c.load_path;
  return tma_supported(c) && c.page_size >= 64 ? KvLoadPath::kTma : KvLoadPath::kGather;
}

std::string describe(const PrefillConfig& c) {
  std::ostringstream out;
  out << "config{dtype " << int(c.dtype) << ", heads " << c.num_qo_heads << "/" << c.num_kv_heads << ", head_dim "
      << c.head_dim << ", kv_format " << int(c.kv_format) << ", kv_layout " << int(c.kv_layout) << ", page_size "
      << c.page_size << ", num_pages " << c.num_pages << ", causal " << c.options.causal << ", window_left "
      << c.options.window_left << ", soft_cap " << float_text(c.options.logits_soft_cap) << ", sm_scale "
      << float_text(c.options.sm_scale) << ", return_lse " << c.options.return_lse << ", load_path "
      << int(c.load_path) << ", schedule " << int(c.schedule) << ", max_ctas " << c.max_ctas << ", kv_block "
      << int(c.kv_block) << ", kv_splits " << c.kv_splits << ", gqa_packing " << int(c.gqa_packing) << ", kv_stages "
      << c.kv_stages << "}";
  return out.str();
}

// ---------------------------------------------------------------------------
// Batch indices
// ---------------------------------------------------------------------------

// The index arrays of one batch. They always hold at least what they claim
// (num_requests + 1 indptr entries, kv_indptr[num_requests] pages for a
// well-formed paged kv_indptr), so that any read the contract allows is in
// bounds: ASan then flags only the library's own out-of-bounds reads.
struct Batch {
  int32_t num_requests = 0;
  std::vector<int32_t> qo_indptr, kv_indptr, kv_indices, last_page_len;
  bool null_qo = false, null_kv = false, null_indices = false, null_last = false;
  // The block-table form: kv_lens (num_requests entries; empty: null) and the row stride.
  std::vector<int32_t> kv_lens;
  int32_t block_table_stride = 0;

  BatchIndices view() const {
    return {num_requests,
            null_qo ? nullptr : qo_indptr.data(),
            null_kv ? nullptr : kv_indptr.data(),
            null_indices ? nullptr : kv_indices.data(),
            null_last ? nullptr : last_page_len.data(),
            kv_lens.empty() ? nullptr : kv_lens.data(),
            block_table_stride};
  }
};

bool block_table_form(const BatchIndices& idx) { return idx.block_table_stride != 0 || idx.kv_lens != nullptr; }

// Page-table entries (paged) or K/V rows (ragged) a plan of a valid batch
// holds: num_requests x block_table_stride in the block-table form, else
// kv_indptr[num_requests].
int64_t kv_units(const BatchIndices& idx) {
  return block_table_form(idx) ? int64_t(idx.num_requests) * idx.block_table_stride : idx.kv_indptr[idx.num_requests];
}

// Turns a well-formed paged batch into the block-table form, mostly valid:
// each request's kv_len, rows of at least its pages, the CSR arrays null.
void to_block_table(Rng& rng, const PrefillConfig& c, Batch& batch) {
  const int32_t n = batch.num_requests;
  const int64_t page_size = std::max(1, c.page_size);
  int64_t widest = 0;
  for (int32_t b = 0; b < n; ++b) {
    const int64_t pages = int64_t(batch.kv_indptr[b + 1]) - batch.kv_indptr[b];
    const int64_t len = pages == 0 ? 0 : page_size * (pages - 1) + batch.last_page_len[b];
    batch.kv_lens.push_back(int32_t(std::min<int64_t>(len, kInt32Max)));
    widest = std::max(widest, pages);
  }
  if (batch.kv_lens.empty()) batch.kv_lens.push_back(0);  // data() of an empty vector may be null
  batch.block_table_stride = int32_t(rng.percent(85) ? std::min<int64_t>(widest + rng.range(0, 3), kInt32Max)
                                                     : rng.pick<int64_t>({0, -1, std::max<int64_t>(widest - 1, 0),
                                                                          kInt32Max, rng.edge_int32()}));
  batch.null_kv = batch.null_indices = batch.null_last = rng.percent(92);
}

// Lengths of one request.
struct Lengths {
  int64_t qo, kv;
};

Lengths random_lengths(Rng& rng, int mode, const PrefillConfig& c) {
  const int64_t heads = std::max<int64_t>(1, c.num_qo_heads);
  switch (mode) {
    case 0: {  // short
      const int64_t qo = rng.range(0, 300);
      return {qo, rng.percent(60) ? qo + rng.range(0, 900) : rng.range(0, 1200)};
    }
    case 1: {  // long
      const int64_t qo = rng.range(0, 20000);
      return {qo, qo + rng.range(0, 2000000)};
    }
    default: {  // at the limits
      const int64_t kv = rng.percent(20) ? rng.range(0, 5000)
                                         : rng.pick<int64_t>({kMaxTokens - 1, kMaxTokens, kMaxTokens + 1,
                                                              kMaxTokens - rng.range(0, 100000), kInt32Max});
      const int64_t qo = rng.pick<int64_t>({0, 1, rng.range(0, 1000), kv, kMaxTokens, kMaxTokens + 1,
                                            kInt32Max / heads - 1, kInt32Max / heads, kInt32Max / heads + 1});
      return {qo, kv};
    }
  }
}

// A batch for config c, mostly valid for it.
Batch random_batch(Rng& rng, const PrefillConfig& c) {
  const bool ragged = c.kv_format == KvFormat::kRagged;
  const int64_t page_size = c.page_size >= 1 && c.page_size <= 1024 ? c.page_size : 16;
  Batch batch;
  const uint64_t size_kind = rng.below(100);
  const int32_t n = size_kind < 10 ? 0 : size_kind < 80 ? int32_t(rng.range(1, 8))
                                   : size_kind < 97     ? int32_t(rng.range(9, 64))
                                                        : int32_t(rng.range(65, 2048));
  batch.num_requests = n;
  // Short requests; long ones; or one request at the limits among short ones
  // (so that a limit is often the only rule the batch breaks).
  const int mode = rng.percent(60) ? 0 : rng.percent(50) ? 1 : 2;
  const int32_t at_limits = mode == 2 && n > 0 ? int32_t(rng.below(uint64_t(n))) : -1;
  int64_t qo_sum = 0, kv_sum = 0;
  int64_t pages_left = mode == 2 && rng.percent(10) ? kMaxListedPages : kUsualListedPages;
  batch.qo_indptr.push_back(0);
  batch.kv_indptr.push_back(0);
  for (int32_t b = 0; b < n; ++b) {
    const Lengths len = random_lengths(rng, mode == 2 ? (b == at_limits ? 2 : 0) : rng.percent(80) ? mode : 0, c);
    qo_sum += len.qo;
    // Sums past INT32_MAX wrap (as a careless caller's would) and make the indptr decrease.
    batch.qo_indptr.push_back(int32_t(uint32_t(uint64_t(qo_sum))));
    if (ragged) {
      kv_sum += len.kv;
      batch.kv_indptr.push_back(int32_t(uint32_t(uint64_t(kv_sum))));
      continue;
    }
    int64_t pages = (len.kv + page_size - 1) / page_size;
    int64_t last = len.kv == 0 ? 0 : len.kv - page_size * (pages - 1);
    if (pages > pages_left) pages = pages_left, last = pages == 0 ? 0 : page_size;
    pages_left -= pages;
    kv_sum += pages;
    batch.kv_indptr.push_back(int32_t(kv_sum));
    batch.last_page_len.push_back(int32_t(last));
  }
  if (ragged) {
    // Paged-only arrays: the library must not read them.
    batch.kv_indices.assign(1, rng.edge_int32());
    batch.last_page_len.assign(1, rng.edge_int32());
    batch.null_indices = rng.percent(50);
    batch.null_last = rng.percent(50);
    if (rng.percent(3)) batch.block_table_stride = 1;  // the paged-only form on ragged K/V
    return batch;
  }
  const int64_t pool = std::max<int64_t>(1, c.num_pages);
  batch.kv_indices.resize(size_t(kv_sum));
  const uint64_t fill = rng.below(3);
  const int32_t one_page = int32_t(rng.below(uint64_t(pool)));
  for (int64_t i = 0; i < kv_sum; ++i)  // random pages, one page repeated, or consecutive ones
    batch.kv_indices[size_t(i)] = kv_sum > 4096 || fill == 1 ? one_page
                                  : fill == 0               ? int32_t(rng.below(uint64_t(pool)))
                                                            : int32_t((one_page + i) % pool);
  if (batch.last_page_len.empty()) batch.last_page_len.push_back(0);  // data() of an empty vector may be null
  if (batch.kv_indices.empty()) batch.kv_indices.push_back(0);
  if (rng.percent(12)) to_block_table(rng, c, batch);
  return batch;
}

// One change, usually one that breaks a rule.
void mutate_batch(Rng& rng, const PrefillConfig& c, Batch& batch) {
  const int32_t n = batch.num_requests;
  auto any_entry = [&](std::vector<int32_t>& v) -> int32_t& { return v[rng.below(v.size())]; };
  switch (rng.below(12)) {
    case 0: batch.num_requests = rng.percent(50) ? -1 : std::min(rng.edge_int32(), -1); break;
    case 1: batch.num_requests = n > 0 ? int32_t(rng.range(0, n - 1)) : 0; break;  // arrays longer than needed
    case 2: (rng.percent(50) ? batch.null_qo : batch.null_kv) = true; break;
    case 3: (rng.percent(50) ? batch.null_indices : batch.null_last) = true; break;
    case 4: any_entry(batch.qo_indptr) = rng.edge_int32(); break;
    case 5: any_entry(batch.kv_indptr) = rng.edge_int32(); break;
    case 6: {  // one entry one below its predecessor
      std::vector<int32_t>& v = rng.percent(50) ? batch.qo_indptr : batch.kv_indptr;
      if (v.size() >= 2) {
        const size_t i = 1 + rng.below(v.size() - 1);
        v[i] = v[i - 1] == INT32_MIN ? v[i - 1] : v[i - 1] - 1;
      }
      break;
    }
    case 7: (rng.percent(50) ? batch.qo_indptr : batch.kv_indptr)[0] = rng.pick({1, -1, rng.edge_int32()}); break;
    case 8:
      any_entry(batch.kv_indices) = rng.pick({-1, c.num_pages, wrap32(int64_t(c.num_pages) - 1), INT32_MAX, INT32_MIN,
                                              rng.edge_int32()});
      break;
    case 9:
      any_entry(batch.last_page_len) = rng.pick({0, -1, c.page_size, wrap32(int64_t(c.page_size) + 1), 1, rng.edge_int32()});
      break;
    case 10:  // a page shared by two places (allowed), or a block-table length at an edge
      if (!batch.kv_lens.empty())
        any_entry(batch.kv_lens) = rng.pick<int32_t>({-1, 0, int32_t(kMaxTokens), wrap32(int64_t(kMaxTokens) + 1), INT32_MAX,
                                             rng.edge_int32()});
      else
        any_entry(batch.kv_indices) = batch.kv_indices[rng.below(batch.kv_indices.size())];
      break;
    default: {  // a total near a limit: the last request grows to it
      std::vector<int32_t>& v = rng.percent(50) ? batch.qo_indptr : batch.kv_indptr;
      const int64_t heads = std::max<int64_t>(1, rng.percent(50) ? c.num_qo_heads : c.num_kv_heads);
      v.back() = int32_t(std::max<int64_t>(
          v.back(), rng.pick<int64_t>({kMaxTokens, kMaxTokens + 1, kInt32Max / heads, kInt32Max / heads + 1})));
      break;
    }
  }
}

// Keeps the promise of Batch: a well-formed paged kv_indptr never lists more
// pages than kv_indices holds. Past kMaxListedPages, kv_indices becomes null
// instead (a page table given at run, which the library must not read).
void keep_claims(const PrefillConfig& c, Batch& batch) {
  if (c.kv_format == KvFormat::kRagged || batch.null_kv || batch.num_requests < 0) return;
  const std::vector<int32_t>& kv = batch.kv_indptr;
  if (kv[0] != 0) return;
  for (int32_t b = 0; b < batch.num_requests; ++b)
    if (kv[b + 1] < kv[b]) return;
  const int64_t claimed = kv[batch.num_requests];
  if (claimed <= int64_t(batch.kv_indices.size())) return;
  if (claimed <= kMaxListedPages)
    batch.kv_indices.resize(size_t(claimed), batch.kv_indices[0]);
  else
    batch.null_indices = true;
}

// The batch rules of README "Validation" (the config rules are separate).
void batch_rules(const PrefillConfig& c, const BatchIndices& idx, Rules& r) {
  const int32_t n = idx.num_requests;
  r.invalid(n >= 0, "indices.num_requests >= 0", "num_requests");
  if (n < 0) return;
  const bool qo_ok = indptr_rules(idx.qo_indptr, n, r, "indices.qo_indptr is not null", "indices.qo_indptr[0] == 0",
                                  "indices.qo_indptr is non-decreasing", "qo_indptr");
  if (qo_ok) {
    const int64_t q_tokens = idx.qo_indptr[n];
    r.invalid(q_tokens <= kMaxTokens, "qo_indptr[num_requests] <= 2^30", "qo_indptr");
    r.invalid(i128(q_tokens) * c.num_qo_heads <= kInt32Max, "qo_indptr[num_requests] * num_qo_heads <= INT32_MAX",
              "qo_indptr");
  }
  std::vector<int64_t> kv_len(size_t(n), -1);  // -1: unknown (a rule about it is broken)
  if (block_table_form(idx)) {
    // BatchIndices' block-table form: paged, the table at run, lengths from kv_lens.
    const int64_t stride = idx.block_table_stride;
    r.invalid(c.kv_format == KvFormat::kPaged, "block-table form: paged K/V only", "block-table form is for paged");
    r.invalid(stride > 0, "block-table form: block_table_stride > 0", "block_table_stride");
    r.invalid(idx.kv_indptr == nullptr && idx.kv_indices == nullptr && idx.kv_last_page_len == nullptr,
              "block-table form: kv_indptr, kv_indices and kv_last_page_len are null",
              "must be null in the block-table form");
    r.invalid(n == 0 || idx.kv_lens != nullptr, "block-table form: kv_lens is not null", "kv_lens is null");
    r.invalid(i128(n) * stride <= kInt32Max, "block-table form: num_requests * block_table_stride <= INT32_MAX",
              "table entries exceed INT32_MAX");
    for (int32_t b = 0; idx.kv_lens != nullptr && b < n; ++b) {
      const int64_t len = idx.kv_lens[b];
      const bool len_ok = len >= 0 && len <= kMaxTokens;
      r.invalid(len_ok, "block-table form: kv_lens[b] in [0, 2^30]", "kv_lens[");
      if (!len_ok || c.page_size < 1) continue;
      r.invalid((len + c.page_size - 1) / c.page_size <= stride,
                "block-table form: ceil(kv_lens[b] / page_size) <= block_table_stride",
                "more than a row of the block table holds");
      r.invalid(len == 0 || c.num_pages >= 1, "block-table form: num_pages >= 1 where a request has keys",
                "no page the table can name");
      kv_len[size_t(b)] = len;
    }
  } else if (!indptr_rules(idx.kv_indptr, n, r, "indices.kv_indptr is not null", "indices.kv_indptr[0] == 0",
                           "indices.kv_indptr is non-decreasing", "kv_indptr")) {
    return;
  } else if (c.kv_format == KvFormat::kRagged) {
    const int64_t rows = idx.kv_indptr[n];
    r.invalid(rows <= kMaxTokens, "ragged: kv_indptr[num_requests] <= 2^30", "kv_indptr");
    r.invalid(i128(rows) * c.num_kv_heads <= kInt32Max, "ragged: kv_indptr[num_requests] * num_kv_heads <= INT32_MAX",
              "kv_indptr");
    for (int32_t b = 0; b < n; ++b) kv_len[size_t(b)] = int64_t(idx.kv_indptr[b + 1]) - idx.kv_indptr[b];
  } else if (c.kv_format == KvFormat::kPaged) {
    // kv_indices null: the page table comes at run, and nothing of it is
    // checked here, but a bad entry then reads page 0, which must exist.
    const int64_t pages_listed = idx.kv_indptr[n];
    r.invalid(pages_listed == 0 || idx.kv_indices != nullptr || c.num_pages >= 1,
              "paged: a page table at run (kv_indices null) with pages listed needs num_pages >= 1", "kv_indices");
    if (idx.kv_indices != nullptr) {
      bool in_pool = true;
      for (int64_t i = 0; i < pages_listed; ++i)
        in_pool = in_pool && idx.kv_indices[i] >= 0 && idx.kv_indices[i] < c.num_pages;
      r.invalid(in_pool, "paged: every kv_indices entry in [0, num_pages)", "kv_indices");
    }
    r.invalid(n == 0 || idx.kv_last_page_len != nullptr, "paged: kv_last_page_len is not null", "kv_last_page_len");
    if (idx.kv_last_page_len != nullptr) {
      for (int32_t b = 0; b < n; ++b) {
        const int64_t pages = int64_t(idx.kv_indptr[b + 1]) - idx.kv_indptr[b];
        const int64_t last = idx.kv_last_page_len[b];
        if (pages == 0) {
          r.invalid(last == 0, "paged: kv_last_page_len is 0 for a request without pages", "kv_last_page_len");
          if (last == 0) kv_len[size_t(b)] = 0;
          continue;
        }
        const bool last_ok = last >= 1 && last <= c.page_size;
        r.invalid(last_ok, "paged: kv_last_page_len in [1, page_size] for a request with pages", "kv_last_page_len");
        if (!last_ok) continue;
        const i128 len = i128(c.page_size) * (pages - 1) + last;
        r.invalid(len <= kMaxTokens, "paged: kv_len <= 2^30", "kv_len");
        if (len <= kMaxTokens) kv_len[size_t(b)] = int64_t(len);
      }
    }
  }
  if (c.options.causal && qo_ok) {
    bool fits = true;
    for (int32_t b = 0; b < n; ++b)
      if (kv_len[size_t(b)] >= 0)
        fits = fits && int64_t(idx.qo_indptr[b + 1]) - idx.qo_indptr[b] <= kv_len[size_t(b)];
    r.invalid(fits, "causal: qo_len <= kv_len for every request", "causal");
  }
}

// Whether the GQA group packs into a 128-row tile (GqaPacking's comment).
bool packable_group(const PrefillConfig& c) { return 128 % (c.num_qo_heads / c.num_kv_heads) == 0; }

// The qo heads per tile a valid plan takes, from GqaPacking's comment: kOff
// one; kOn the group; kAuto the group where the batch's tiles then hold
// fewer rows (group x ceil(qo_len / 128) tiles token-major against
// ceil(qo_len x group / 128) packed), else one.
int32_t tile_heads(const PrefillConfig& c, const BatchIndices& idx) {
  const int32_t group = c.num_qo_heads / c.num_kv_heads;
  if (c.gqa_packing == GqaPacking::kOff || !packable_group(c)) return 1;
  if (c.gqa_packing == GqaPacking::kOn) return group;
  i128 token_major = 0, packed = 0;
  for (int32_t b = 0; b < idx.num_requests; ++b) {
    const i128 qo = i128(idx.qo_indptr[b + 1]) - idx.qo_indptr[b];
    token_major += group * ((qo + 127) / 128);
    packed += (qo * group + 127) / 128;
  }
  return packed < token_major ? group : 1;
}

// Query tiles of a valid batch: 128 rows each, of tile_heads(c, idx) heads
// (kPrefillBlockQ / heads tokens).
int64_t count_tiles(const PrefillConfig& c, const BatchIndices& idx) {
  const int64_t heads = tile_heads(c, idx);
  int64_t tiles = 0;
  for (int32_t b = 0; b < idx.num_requests; ++b)
    tiles += ((int64_t(idx.qo_indptr[b + 1]) - idx.qo_indptr[b]) * heads + 127) / 128;
  return tiles;
}

// Work items per tile: one per group of tile heads.
int64_t item_heads(const PrefillConfig& c, const BatchIndices& idx) { return c.num_qo_heads / tile_heads(c, idx); }

// What plan_prefill adds to the validators: a forced TMA path must fit the
// pages, and a forced wide KV block the config and batch (on the path ragged
// K/V take: TMA unless gather is forced). The latter is stated only where
// kv_indptr is well formed, as the kv_lens come from it.
void plan_rules(const PrefillConfig& c, const BatchIndices& idx, Rules& r) {
  Rules config;
  config_rules(c, config);
  if (!config.ok()) return;
  if (c.load_path == KvLoadPath::kTma)
    r.expect(tma_supported(c), "load_path = kTma: page_size divides, or is a multiple of, the KV block",
             StatusCode::kUnsupported, "load_path");
  if (c.gqa_packing == GqaPacking::kOn)
    r.expect(packable_group(c), "gqa_packing = kOn: the GQA group divides 128", StatusCode::kUnsupported,
             "gqa_packing = kOn");
  if (c.kv_stages > 0)
    r.expect(c.kv_stages == default_kv_stages(c.head_dim) ||
                 (c.kv_stages == 3 && c.head_dim == 128 && resolved_path(c) == KvLoadPath::kGather &&
                  c.kv_block != KvBlock::kWide),
             "kv_stages names a built ring: the head dim's (4 at 64, 2 at 128 and 256), or 3 at head_dim 128 on the "
             "gather path with the standard block",
             StatusCode::kUnsupported, "kv_stages");
  Rules kv;
  if (c.kv_block != KvBlock::kWide || idx.num_requests < 0) return;
  // The block-table form is paged (never wide) and has no kv_indptr to read.
  const bool kv_known = block_table_form(idx) ? c.kv_format == KvFormat::kPaged
                                              : indptr_rules(idx.kv_indptr, idx.num_requests, kv, "", "", "", "");
  if (!kv_known) return;
  const KvLoadPath path = c.load_path == KvLoadPath::kGather ? KvLoadPath::kGather : KvLoadPath::kTma;
  r.expect(wide_block_fits(c, idx, path),
           "kv_block = kWide: head_dim 128, ragged K/V on the TMA path, no causal mask, no window below the longest "
           "kv_len, a schedule other than kDynamic",
           StatusCode::kUnsupported, "kv_block = kWide");
}


// The schedule a plan of `items` work items (tiles x qo heads x chunks)
// must run under, from WorkSchedule's and max_ctas's comments and
// docs/kernels.md "Schedules": a forced one is kept; kAuto is persistent with
// max_ctas > 0, one item per CTA past kMaxListedItems (the only schedule
// there), dynamic where every qo_len is at most kDynamicScheduleMaxQoLen on
// the gather path without split-KV, and persistent otherwise.
WorkSchedule required_schedule(const PrefillConfig& c, const BatchIndices& idx, int64_t items, KvLoadPath path,
                               int32_t kv_splits) {
  if (c.schedule != WorkSchedule::kAuto) return c.schedule;
  if (c.max_ctas > 0) return WorkSchedule::kPersistent;
  if (items > kMaxListedItems) return WorkSchedule::kOneItemPerCta;
  int64_t max_qo_len = 0;
  for (int32_t b = 0; b < idx.num_requests; ++b)
    max_qo_len = std::max<int64_t>(max_qo_len, int64_t(idx.qo_indptr[b + 1]) - idx.qo_indptr[b]);
  const bool dynamic =
      max_qo_len <= ptxattn::kDynamicScheduleMaxQoLen && path == KvLoadPath::kGather && kv_splits == 1;
  return dynamic ? WorkSchedule::kDynamic : WorkSchedule::kPersistent;
}

// KV chunks per query tile that the rules can count on: a forced kv_splits,
// else 1 (the plan's rule may split, within kAutoSplitStatesPerSm partial
// states per SM, which the rules do not count on).
int64_t forced_splits(const PrefillConfig& c) { return c.kv_splits > 1 ? c.kv_splits : 1; }

// What plan_prefill adds for the schedule, once the config is valid and the
// query tiles can be counted: a forced kv_splits lists at most
// kMaxListedItems split tiles and 2^31 - 1 work items; the persistent
// schedule lists at most kMaxListedItems work items (split ones), so forcing
// it, or asking kAuto for it with max_ctas > 0, is unsupported past them.
void schedule_rules(const PrefillConfig& c, const BatchIndices& idx, Rules& r) {
  Rules config;
  config_rules(c, config);
  if (!config.ok() || idx.num_requests < 0) return;
  Rules qo;
  if (!indptr_rules(idx.qo_indptr, idx.num_requests, qo, "", "", "", "")) return;
  const i128 splits = forced_splits(c);
  if (splits > 1) {
    const i128 split_tiles = i128(count_tiles(c, idx)) * splits;
    r.expect(split_tiles <= kMaxListedItems, "kv_splits > 1: at most 2^22 split tiles", StatusCode::kUnsupported,
             "config.kv_splits");
    if (split_tiles > kMaxListedItems) return;
    r.invalid(split_tiles * item_heads(c, idx) <= kInt32Max, "kv_splits > 1: at most 2^31 - 1 work items",
              "config.kv_splits");
  }
  const i128 items = i128(count_tiles(c, idx)) * item_heads(c, idx) * splits;
  if (c.schedule == WorkSchedule::kPersistent || c.schedule == WorkSchedule::kDynamic)
    r.expect(items <= kMaxListedItems, "schedule = kPersistent or kDynamic: at most 2^22 work items (tiles x qo heads)",
             StatusCode::kUnsupported, "schedule");
  if (c.schedule == WorkSchedule::kAuto && c.max_ctas > 0)
    r.expect(items <= kMaxListedItems, "max_ctas > 0 (persistent): at most 2^22 work items (tiles x qo heads)",
             StatusCode::kUnsupported, "max_ctas");
}

// Whether a plan the rules accept would list so many items that making it
// would dominate the run (kMaxCheaplyListedItems).
bool lists_too_many(const Fuzzer& fuzzer, const PrefillConfig& c, const BatchIndices& idx) {
  const int64_t items = count_tiles(c, idx) * item_heads(c, idx) * forced_splits(c);
  if (items <= kMaxCheaplyListedItems || items > kMaxListedItems) return false;
  // Without a GPU only forced one-item-per-CTA plans get made (the others
  // ask for the SM count), and below kMaxListedItems kAuto never takes it.
  return fuzzer.have_gpu() || c.schedule == WorkSchedule::kOneItemPerCta;
}

std::string describe(const BatchIndices& idx, const PrefillConfig& c) {
  std::ostringstream out;
  const int32_t n = idx.num_requests;
  const int64_t entries = n >= 0 ? int64_t(n) + 1 : 0;
  out << "indices{num_requests " << n << ", qo_indptr " << list(idx.qo_indptr, entries);
  if (block_table_form(idx)) {
    out << ", kv_lens " << list(idx.kv_lens, std::max(0, n)) << ", block_table_stride " << idx.block_table_stride
        << ", kv_indptr " << (idx.kv_indptr ? "(set)" : "null") << ", kv_indices "
        << (idx.kv_indices ? "(set)" : "null") << ", kv_last_page_len " << (idx.kv_last_page_len ? "(set)" : "null")
        << "}";
    return out.str();
  }
  out << ", kv_indptr " << list(idx.kv_indptr, entries);
  if (c.kv_format != KvFormat::kRagged) {
    bool listed = n >= 0 && idx.kv_indptr != nullptr && idx.kv_indptr[0] == 0;
    for (int32_t b = 0; listed && b < n; ++b) listed = idx.kv_indptr[b + 1] >= idx.kv_indptr[b];
    out << ", kv_indices " << (listed ? list(idx.kv_indices, idx.kv_indptr[n]) : idx.kv_indices ? "(unread)" : "null")
        << ", kv_last_page_len " << list(idx.kv_last_page_len, std::max(0, n));
  }
  out << "}";
  return out.str();
}

// ---------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------

struct TensorBytes {
  i128 q, o, kv, lse;
};

// The stride of contiguous k and v: the elements of one page (paged) or row
// (ragged). In 128 bits: a random config's factors may each reach INT32_MAX.
i128 contiguous_kv_stride(const PrefillConfig& c) {
  return (c.kv_format == KvFormat::kPaged ? i128(c.page_size) : i128(1)) * c.num_kv_heads * c.head_dim;
}

// Element counts from the shapes the tensors claim, as README's tensor
// conventions define them: q and o span (tokens - 1) row strides and one
// row, k and v (pages or rows - 1) strides and one page or row (a stride of
// 0 is a row, or a page).
TensorBytes tensor_bytes(const PrefillConfig& c, const PrefillTensors& t) {
  const i128 row = i128(c.num_qo_heads) * c.head_dim;
  auto span = [&](int64_t stride) {
    return t.num_q_tokens <= 0 ? i128(0) : ((t.num_q_tokens - 1) * (stride != 0 ? i128(stride) : row) + row) * 2;
  };
  // Factors clamped to 2^62 keep the product within 128 bits; a span that
  // large is refused whatever its exact size.
  const i128 cap = i128(1) << 62;
  auto clamp = [&](i128 x) { return std::max(-cap, std::min(cap, x)); };
  const i128 unit = clamp(contiguous_kv_stride(c));
  const i128 kv_stride = t.kv_stride != 0 ? clamp(t.kv_stride) : unit;
  const i128 kv = t.num_kv_rows <= 0 ? i128(0) : ((i128(t.num_kv_rows) - 1) * kv_stride + unit) * 2;
  return {span(t.q_row_stride), span(t.o_row_stride), kv,
          c.options.return_lse ? i128(t.num_q_tokens) * c.num_qo_heads * 4 : 0};
}

// Tensors for a plan of config c with plan_q query tokens and plan_kv K/V rows (ragged) or pages used (paged).
PrefillTensors random_tensors(Rng& rng, const PrefillConfig& c, int64_t plan_q, int64_t plan_kv) {
  PrefillTensors t;
  t.num_q_tokens = rng.percent(85) ? plan_q : rng.pick<int64_t>({plan_q + 1, plan_q - 1, 0, rng.edge_int64()});
  if (c.kv_format == KvFormat::kPaged) {
    t.num_kv_rows = rng.percent(85) ? c.num_pages
                                    : rng.pick<int64_t>({int64_t(c.num_pages) + 1, int64_t(c.num_pages) - 1, 0,
                                                         plan_kv, rng.edge_int64()});
  } else {
    const int64_t max_rows = kInt32Max / std::max<int64_t>(1, c.num_kv_heads);
    t.num_kv_rows = rng.percent(85)
                        ? plan_kv + rng.pick<int64_t>({0, 0, rng.range(0, 100), rng.range(0, max_rows - plan_kv)})
                        : rng.pick<int64_t>({plan_kv - 1, max_rows, max_rows + 1, rng.edge_int64()});
  }
  // Row strides of q and o: mostly contiguous, else fused-QKV-like, padded or broken.
  const int64_t row = int64_t(c.num_qo_heads) * c.head_dim;
  for (int64_t* stride : {&t.q_row_stride, &t.o_row_stride})
    if (rng.percent(25))
      *stride = rng.pick<int64_t>({row, row + 8 * rng.range(1, 64), row + 4, row - 8, -8, kInt32Max & ~int64_t(7),
                                   kInt32Max + int64_t(1), rng.edge_int64()});
  // The stride of k and v: mostly contiguous, else a combined K/V cache's, padded or broken.
  const int64_t unit = int64_t(std::clamp<i128>(contiguous_kv_stride(c), -kInt32Max, kInt32Max));
  if (rng.percent(25))
    t.kv_stride = rng.pick<int64_t>({unit, 2 * unit, unit + 8 * rng.range(1, 64), unit + 4, unit - 8, -8,
                                     kInt32Max & ~int64_t(7), kInt32Max + int64_t(1), rng.edge_int64()});
  const TensorBytes bytes = tensor_bytes(c, t);
  const std::vector<uintptr_t> at = place_tensors(rng, {bytes.q, bytes.kv, bytes.kv, bytes.o, bytes.lse});
  t.q = as_pointer(at[0]);
  t.k = as_pointer(at[1]);
  t.v = as_pointer(at[2]);
  t.o = as_mutable_pointer(at[3]);
  t.lse = static_cast<float*>(as_mutable_pointer(c.options.return_lse || rng.percent(50) ? at[4] : 0));
  // A page table at run: mostly none, else anywhere, misaligned or over an output.
  if (rng.percent(40)) {
    const uintptr_t table = rng.pick<uintptr_t>(
        {uintptr_t(0x7000000000), uintptr_t(0x7000000002), at[3], at[4], uintptr_t(rng.edge_int64()) & ~uintptr_t(3)});
    t.kv_indices = static_cast<const int32_t*>(as_pointer(table));
  }
  return t;
}

// device_page_table: the plan was made without host kv_indices (paged), so
// the run gives the page table.
void tensor_rules(const PrefillConfig& c, int64_t plan_q, int64_t plan_kv, const PrefillTensors& t,
                  bool device_page_table, Rules& r) {
  r.expect(t.num_q_tokens == plan_q, "tensors.num_q_tokens == the plan's qo_indptr[num_requests]",
           StatusCode::kPlanMismatch, "num_q_tokens");
  if (c.kv_format == KvFormat::kPaged) {
    r.expect(t.num_kv_rows == c.num_pages, "paged: tensors.num_kv_rows == config.num_pages", StatusCode::kPlanMismatch,
             "num_kv_rows");
  } else {
    r.expect(t.num_kv_rows >= plan_kv, "ragged: tensors.num_kv_rows >= the plan's kv_indptr[num_requests]",
             StatusCode::kPlanMismatch, "num_kv_rows");
    r.invalid(i128(t.num_kv_rows) * c.num_kv_heads <= kInt32Max,
              "ragged: tensors.num_kv_rows * num_kv_heads <= INT32_MAX", "num_kv_rows");
  }
  const int64_t row = int64_t(c.num_qo_heads) * c.head_dim;
  r.invalid(t.q_row_stride == 0 || (t.q_row_stride >= row && t.q_row_stride <= kInt32Max && t.q_row_stride % 8 == 0),
            "tensors.q_row_stride is 0 or a multiple of 8 in [num_qo_heads * head_dim, INT32_MAX]",
            "tensors.q_row_stride");
  r.invalid(t.o_row_stride == 0 || (t.o_row_stride >= row && t.o_row_stride <= kInt32Max && t.o_row_stride % 8 == 0),
            "tensors.o_row_stride is 0 or a multiple of 8 in [num_qo_heads * head_dim, INT32_MAX]",
            "tensors.o_row_stride");
  const i128 unit = contiguous_kv_stride(c);
  r.invalid(t.kv_stride == 0 || (t.kv_stride >= unit && t.kv_stride <= kInt32Max && t.kv_stride % 8 == 0),
            "tensors.kv_stride is 0 or a multiple of 8 in [a page's (a row's) elements, INT32_MAX]",
            "tensors.kv_stride");
  const TensorBytes bytes = tensor_bytes(c, t);
  const Span q{uintptr_t(t.q), bytes.q}, k{uintptr_t(t.k), bytes.kv}, v{uintptr_t(t.v), bytes.kv},
      o{uintptr_t(t.o), bytes.o}, lse{uintptr_t(t.lse), bytes.lse};
  r.invalid(q.bytes == 0 || q.address != 0, "tensors.q is not null unless empty", "tensors.q");
  r.invalid(k.bytes == 0 || k.address != 0, "tensors.k is not null unless empty", "tensors.k");
  r.invalid(v.bytes == 0 || v.address != 0, "tensors.v is not null unless empty", "tensors.v");
  r.invalid(o.bytes == 0 || o.address != 0, "tensors.o is not null unless empty", "tensors.o");
  r.invalid(lse.bytes == 0 || lse.address != 0, "tensors.lse is not null with return_lse (unless empty)",
            "tensors.lse");
  r.invalid(q.address % 16 == 0, "tensors.q is 16-byte aligned", "tensors.q");
  r.invalid(k.address % 16 == 0, "tensors.k is 16-byte aligned", "tensors.k");
  r.invalid(v.address % 16 == 0, "tensors.v is 16-byte aligned", "tensors.v");
  r.invalid(o.address % 16 == 0, "tensors.o is 16-byte aligned", "tensors.o");
  r.invalid(lse.address % 16 == 0, "tensors.lse is 16-byte aligned", "tensors.lse");
  r.invalid(!overlaps(o, q) && !overlaps(o, k) && !overlaps(o, v), "tensors.o overlaps no input", "tensors.o");
  r.invalid(!overlaps(lse, q) && !overlaps(lse, k) && !overlaps(lse, v), "tensors.lse overlaps no input",
            "tensors.lse");
  r.invalid(!overlaps(o, lse), "tensors.o and tensors.lse do not overlap", "tensors.o|tensors.lse");
  const uintptr_t table = uintptr_t(t.kv_indices);
  if (device_page_table) {
    const Span kv_indices{table, i128(plan_kv) * 4};
    r.invalid(plan_kv == 0 || table != 0, "page table at run: tensors.kv_indices is not null when pages are listed",
              "tensors.kv_indices");
    r.invalid(table % 4 == 0, "page table at run: tensors.kv_indices is 4-byte aligned", "tensors.kv_indices");
    r.invalid(!overlaps(o, kv_indices) && !overlaps(lse, kv_indices), "tensors.o and tensors.lse overlap no page table",
              "tensors.kv_indices");
  } else {
    r.invalid(table == 0, "tensors.kv_indices is null without a page table at run", "tensors.kv_indices");
  }
}

std::string describe(const PrefillTensors& t) {
  std::ostringstream out;
  out << "tensors{q " << hex(uintptr_t(t.q)) << ", k " << hex(uintptr_t(t.k)) << ", v " << hex(uintptr_t(t.v))
      << ", o " << hex(uintptr_t(t.o)) << ", lse " << hex(uintptr_t(t.lse)) << ", num_q_tokens " << t.num_q_tokens
      << ", num_kv_rows " << t.num_kv_rows << ", kv_indices " << hex(uintptr_t(t.kv_indices)) << ", q_row_stride "
      << t.q_row_stride << ", o_row_stride " << t.o_row_stride << ", kv_stride " << t.kv_stride << "}";
  return out.str();
}

// A plan's reported shape against the batch it was made from (ok plans only).
void check_plan(Fuzzer& fuzzer, const char* entry, const PrefillPlan& plan, const PrefillConfig& c,
                const BatchIndices& idx, const std::function<std::string()>& input) {
  const int32_t n = idx.num_requests;
  fuzzer.require(plan.valid(), entry, "plan.valid() after a plan that succeeded", input);
  fuzzer.require(plan.num_q_tokens() == idx.qo_indptr[n], entry, "plan.num_q_tokens() == qo_indptr[num_requests]",
                 input);
  fuzzer.require(plan.num_kv_rows() == kv_units(idx), entry,
                 "plan.num_kv_rows() == kv_indptr[num_requests], or num_requests x block_table_stride", input);
  fuzzer.require((plan.num_work_tiles() == 0) == (idx.qo_indptr[n] == 0), entry,
                 "plan.num_work_tiles() is 0 exactly when there are no query rows", input);
  const KvLoadPath path = plan.chosen_load_path();
  fuzzer.require((path == KvLoadPath::kTma || path == KvLoadPath::kGather) &&
                     (c.load_path == KvLoadPath::kAuto || path == c.load_path) &&
                     (path == KvLoadPath::kGather || tma_supported(c)),
                 entry, "plan.chosen_load_path() is the forced one, or one that serves the config", input);
  fuzzer.require(plan.chosen_kv_stages() == (c.kv_stages > 0 ? c.kv_stages : default_kv_stages(c.head_dim)), entry,
                 "plan.chosen_kv_stages() is the forced count, else the head dim's", input);
  fuzzer.require(plan.chosen_block_kv() == expected_block_kv(c, idx, path), entry,
                 "plan.chosen_block_kv() is 176 exactly where kv_block = kWide, or kAuto and the config and batch fit "
                 "the wide block (ragged head_dim 128 on the TMA path with no mask cutting blocks short)",
                 input);
  const WorkSchedule schedule = plan.chosen_schedule();
  fuzzer.require(plan.chosen_tile_heads() == tile_heads(c, idx), entry,
                 "plan.chosen_tile_heads() is 1 with gqa_packing kOff, the group with kOn, and with kAuto the group "
                 "where packed tiles are fewer",
                 input);
  const int64_t groups = c.num_qo_heads / plan.chosen_tile_heads();
  const int32_t splits = plan.chosen_kv_splits();
  const WorkSchedule required = required_schedule(c, idx, plan.num_work_tiles() * groups, path, splits);
  fuzzer.require(c.kv_splits > 0 ? splits == c.kv_splits : splits >= 1 && splits <= ptxattn::detail::kMaxKvSplits,
                 entry, "plan.chosen_kv_splits() is the forced count; kAuto: 1 to 64", input);
  const int64_t query_tiles = count_tiles(c, idx), work_tiles = plan.num_work_tiles();
  fuzzer.require(c.kv_splits > 0 || splits == 1
                     ? work_tiles == query_tiles * splits
                     : work_tiles > query_tiles && work_tiles <= query_tiles * splits &&
                           (work_tiles - query_tiles) * c.num_qo_heads <= kAutoSplitStatesPerSm * 1024,
                 entry,
                 "plan.num_work_tiles() is the query tiles times the chunk count, forced or 1; split by the rule, "
                 "more than the query tiles (the longest is split), at most that many times, and the partial "
                 "states within 512 per SM of at most 1024 SMs (a split tile's chunks beyond its first hold a "
                 "state of each qo head at least)",
                 input);
  fuzzer.require(schedule == required, entry,
                 "plan.chosen_schedule() is the forced one; kAuto: persistent with max_ctas > 0, one item per CTA "
                 "past 2^22 items, dynamic where every qo_len is at most 16 on the gather path without split-KV, "
                 "persistent otherwise",
                 input);
  const int64_t items = plan.num_work_tiles() * groups, ctas = plan.num_ctas();
  fuzzer.require((ctas == 0) == (items == 0), entry, "plan.num_ctas() is 0 exactly when there is no work item",
                 input);
  if (schedule == WorkSchedule::kOneItemPerCta)
    fuzzer.require(ctas == items, entry, "one item per CTA: plan.num_ctas() == num_work_tiles() x head groups",
                   input);
  if ((schedule == WorkSchedule::kPersistent || schedule == WorkSchedule::kDynamic) && items > 0)
    fuzzer.require(ctas >= 1 && ctas <= items && (c.max_ctas == 0 || ctas <= c.max_ctas), entry,
                   "persistent and dynamic: plan.num_ctas() in [1, work items], and at most max_ctas when > 0",
                   input);
}

}  // namespace

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

void fuzz_prefill(Rng& rng, Fuzzer& fuzzer) {
  PrefillConfig c = random_config(rng);
  for (int m = rng.pick({0, 0, 0, 1, 1, 2, 3}); m > 0; --m) mutate_config(rng, c);
  Batch batch = random_batch(rng, c);
  for (int m = rng.pick({0, 0, 1, 1, 2, 3}); m > 0; --m) mutate_batch(rng, c, batch);
  keep_claims(c, batch);
  const BatchIndices idx = batch.view();
  const auto input = [&] { return describe(c) + "\n    " + describe(idx, c); };
  fuzzer.show(input);

  Rules config;
  config_rules(c, config);
  fuzzer.check("validate_prefill_config", ptxattn::validate_prefill_config(c), config, WhenValid::kOk, input);
  Rules batch_and_config = config;
  batch_rules(c, idx, batch_and_config);
  fuzzer.check("validate_batch_indices", ptxattn::validate_batch_indices(c, idx), batch_and_config, WhenValid::kOk,
               input);

  const bool tma = ptxattn::tma_load_path_supported(c);  // any config: must not crash
  if (config.ok())
    fuzzer.require(tma == tma_supported(c), "tma_load_path_supported",
                   "ragged always; paged when page_size divides, or is a multiple of, the KV block", input);

  Rules plan_ok = batch_and_config;
  plan_rules(c, idx, plan_ok);
  if (plan_ok.ok() && count_tiles(c, idx) > kMaxPlannedTiles) return;
  schedule_rules(c, idx, plan_ok);
  if (plan_ok.ok() && lists_too_many(fuzzer, c, idx)) return;
  PrefillPlan plan;
  const Status planned = ptxattn::plan_prefill(c, idx, plan);
  fuzzer.check("plan_prefill", planned, plan_ok, WhenValid::kOkOrLaunch, input);
  fuzzer.require(plan.valid() == planned.ok(), "plan_prefill", "plan.valid() exactly after a plan that succeeded",
                 input);

  // run_prefill: with the plan (ok only without a GPU when the batch is empty), or refused for lack of one.
  Rules run;
  PrefillTensors t;
  bool launches = false;
  if (planned.ok()) {
    check_plan(fuzzer, "plan_prefill", plan, c, idx, input);
    const int64_t plan_q = idx.qo_indptr[idx.num_requests], plan_kv = kv_units(idx);
    t = random_tensors(rng, c, plan_q, plan_kv);
    tensor_rules(c, plan_q, plan_kv, t, c.kv_format == KvFormat::kPaged && idx.kv_indices == nullptr, run);
    launches = plan.num_work_tiles() > 0;
  } else {
    t = random_tensors(rng, random_config(rng), rng.range(0, 100), rng.range(0, 100));
    run.invalid(false, "run_prefill needs a plan whose plan_prefill succeeded", "plan");
  }
  if (!fuzzer.may_call("run_prefill", run, launches)) return;
  fuzzer.check("run_prefill", ptxattn::run_prefill(plan, t, nullptr), run,
               launches ? WhenValid::kLaunch : WhenValid::kOk, [&] { return input() + "\n    " + describe(t); });
}

void fuzz_prefill_tensors(Rng& rng, Fuzzer& fuzzer) {
  // validate_prefill_tensors is internal: its config and plan counts come
  // from a successful plan, so they keep the plan's rules here.
  const PrefillConfig c = random_config(rng);
  const int64_t max_q = std::min(kMaxTokens, kInt32Max / c.num_qo_heads);
  const int64_t plan_q = rng.percent(70) ? rng.range(0, 500) : rng.pick<int64_t>({max_q, max_q - 1, rng.range(0, max_q)});
  int64_t plan_kv;
  if (c.kv_format == KvFormat::kPaged) {
    plan_kv = rng.range(0, rng.percent(70) ? 500 : kMaxListedPages);
  } else {
    const int64_t max_kv = std::min(kMaxTokens, kInt32Max / c.num_kv_heads);
    plan_kv = rng.percent(70) ? rng.range(0, 500) : rng.pick<int64_t>({max_kv, max_kv - 1, rng.range(0, max_kv)});
  }
  const PrefillTensors t = random_tensors(rng, c, plan_q, plan_kv);
  const bool device_page_table = c.kv_format == KvFormat::kPaged && rng.percent(50);
  const auto input = [&] {
    return describe(c) + "\n    plan{num_q_tokens " + std::to_string(plan_q) + ", num_kv_rows " +
           std::to_string(plan_kv) + "}\n    " + describe(t);
  };
  fuzzer.show(input);
  Rules rules;
  tensor_rules(c, plan_q, plan_kv, t, device_page_table, rules);
  fuzzer.check("validate_prefill_tensors",
               ptxattn::validate_prefill_tensors(c, plan_q, plan_kv, t, device_page_table), rules, WhenValid::kOk,
               input);
}

namespace {

void bool_rule(Rules& r, int32_t value, const char* rule, const char* needle) {
  r.invalid(value == 0 || value == 1, rule, needle);
}

int32_t c_bool(Rng& rng, bool value) {
  return rng.percent(85) ? int32_t(value) : rng.pick({2, -1, INT32_MIN, INT32_MAX, rng.edge_int32()});
}

// The C struct of a C++ config, struct_size the library's and its booleans 0 or 1.
ptxattn_prefill_config to_c(const PrefillConfig& cpp) {
  ptxattn_prefill_config config;
  config.struct_size = sizeof(ptxattn_prefill_config);
  config.dtype = int32_t(cpp.dtype);
  config.num_qo_heads = cpp.num_qo_heads;
  config.num_kv_heads = cpp.num_kv_heads;
  config.head_dim = cpp.head_dim;
  config.kv_format = int32_t(cpp.kv_format);
  config.kv_layout = int32_t(cpp.kv_layout);
  config.page_size = cpp.page_size;
  config.num_pages = cpp.num_pages;
  config.options.causal = int32_t(cpp.options.causal);
  config.options.window_left = cpp.options.window_left;
  config.options.logits_soft_cap = cpp.options.logits_soft_cap;
  config.options.sm_scale = cpp.options.sm_scale;
  config.options.return_lse = int32_t(cpp.options.return_lse);
  config.load_path = int32_t(cpp.load_path);
  config.schedule = int32_t(cpp.schedule);
  config.max_ctas = cpp.max_ctas;
  config.kv_block = int32_t(cpp.kv_block);
  config.kv_splits = cpp.kv_splits;
  config.gqa_packing = int32_t(cpp.gqa_packing);
  config.kv_stages = cpp.kv_stages;
  return config;
}

}  // namespace

void fuzz_prefill_c_api(Rng& rng, Fuzzer& fuzzer) {
  PrefillConfig cpp = random_config(rng);
  for (int m = rng.pick({0, 0, 1, 2}); m > 0; --m) mutate_config(rng, cpp);
  Batch batch = random_batch(rng, cpp);
  for (int m = rng.pick({0, 0, 1, 2}); m > 0; --m) mutate_batch(rng, cpp, batch);
  keep_claims(cpp, batch);
  const BatchIndices idx = batch.view();

  ptxattn_prefill_config config = to_c(cpp);
  config.struct_size = random_struct_size<ptxattn_prefill_config>(rng);
  config.options.causal = c_bool(rng, cpp.options.causal);
  config.options.return_lse = c_bool(rng, cpp.options.return_lse);
  const ptxattn_batch_indices indices{random_struct_size<ptxattn_batch_indices>(rng),
                                      idx.num_requests,
                                      idx.qo_indptr,
                                      idx.kv_indptr,
                                      idx.kv_indices,
                                      idx.kv_last_page_len,
                                      idx.kv_lens,
                                      idx.block_table_stride};

  ptxattn_prefill_plan* plan = nullptr;
  fuzzer.require(ptxattn_prefill_plan_create(&plan) == PTXATTN_STATUS_OK && plan != nullptr,
                 "ptxattn_prefill_plan_create", "creating a plan succeeds", [] { return std::string(); });
  ptxattn_prefill_plan* plan_arg = rng.percent(5) ? nullptr : plan;
  const ptxattn_prefill_config* config_arg = rng.percent(5) ? nullptr : &config;
  const ptxattn_batch_indices* indices_arg = rng.percent(5) ? nullptr : &indices;
  const auto input = [&] {
    return std::string("plan ") + (plan_arg ? "made" : "NULL") + ", config " + (config_arg ? "" : "NULL, ") +
           "struct_size config " + std::to_string(config.struct_size) + " indices " +
           std::to_string(indices.struct_size) + ", c.causal " + std::to_string(config.options.causal) +
           ", c.return_lse " +
           std::to_string(config.options.return_lse) + ", " + describe(cpp) + "\n    " +
           (indices_arg ? describe(idx, cpp) : "indices NULL");
  };
  fuzzer.show(input);

  Rules rules;
  rules.invalid(plan_arg != nullptr, "C: plan is not NULL", "plan");
  rules.invalid(config_arg != nullptr, "C: config is not NULL", "config");
  rules.invalid(indices_arg != nullptr, "C: indices is not NULL", "indices");
  struct_size_rule(rules, config_arg, "C: config.struct_size is sizeof(ptxattn_prefill_config)");
  struct_size_rule(rules, indices_arg, "C: indices.struct_size is sizeof(ptxattn_batch_indices)");
  bool_rule(rules, config.options.causal, "C: config.options.causal is 0 or 1", "causal");
  bool_rule(rules, config.options.return_lse, "C: config.options.return_lse is 0 or 1", "return_lse");
  const bool c_checks_pass = rules.ok();
  cpp.options.causal = config.options.causal == 1;
  cpp.options.return_lse = config.options.return_lse == 1;
  if (config_arg != nullptr) config_rules(cpp, rules);
  if (config_arg != nullptr && indices_arg != nullptr) {
    batch_rules(cpp, idx, rules);
    plan_rules(cpp, idx, rules);
  }
  if (rules.ok() && count_tiles(cpp, idx) > kMaxPlannedTiles) {
    ptxattn_prefill_plan_destroy(plan);
    return;
  }
  if (config_arg != nullptr && indices_arg != nullptr) schedule_rules(cpp, idx, rules);
  if (rules.ok() && lists_too_many(fuzzer, cpp, idx)) {
    ptxattn_prefill_plan_destroy(plan);
    return;
  }
  const Status planned = c_status(fuzzer, "ptxattn_plan_prefill", ptxattn_plan_prefill(plan_arg, config_arg, indices_arg));
  fuzzer.check("ptxattn_plan_prefill", planned, rules, WhenValid::kOkOrLaunch, input);
  if (c_checks_pass) {  // the C++ call on the same input answers the same
    PrefillPlan cpp_plan;
    const Status expected = ptxattn::plan_prefill(cpp, idx, cpp_plan);
    fuzzer.require(planned.code == expected.code && planned.message == expected.message, "ptxattn_plan_prefill",
                   "the C API answers as the C++ API", [&] {
                     return input() + "\n    C: " + code_name(planned.code) + " \"" + planned.message + "\"; C++: " +
                            code_name(expected.code) + " \"" + expected.message + "\"";
                   });
  }

  // ptxattn_run_prefill with this plan (or a NULL one) and random tensors.
  const bool plan_made = planned.ok() && plan_arg != nullptr;
  const int64_t plan_q = plan_made ? idx.qo_indptr[idx.num_requests] : 0;
  const int64_t plan_kv = plan_made ? kv_units(idx) : 0;
  const PrefillTensors t = random_tensors(rng, cpp, plan_q, plan_kv);
  const ptxattn_prefill_tensors tensors{random_struct_size<ptxattn_prefill_tensors>(rng),
                                        t.q,
                                        t.k,
                                        t.v,
                                        t.o,
                                        t.lse,
                                        t.num_q_tokens,
                                        t.num_kv_rows,
                                        t.kv_indices,
                                        t.q_row_stride,
                                        t.o_row_stride,
                                        t.kv_stride};
  const ptxattn_prefill_plan* run_plan = rng.percent(5) ? nullptr : plan;
  const ptxattn_prefill_tensors* tensors_arg = rng.percent(5) ? nullptr : &tensors;
  Rules run;
  run.invalid(run_plan != nullptr, "C: plan is not NULL", "plan");
  run.invalid(tensors_arg != nullptr, "C: tensors is not NULL", "tensors");
  struct_size_rule(run, tensors_arg, "C: tensors.struct_size is sizeof(ptxattn_prefill_tensors)");
  if (run_plan != nullptr) {
    run.invalid(plan_made, "run_prefill needs a plan whose plan_prefill succeeded", "plan");
    if (plan_made && tensors_arg != nullptr)
      tensor_rules(cpp, plan_q, plan_kv, t, cpp.kv_format == KvFormat::kPaged && idx.kv_indices == nullptr, run);
  }
  const bool launches = plan_q > 0;
  if (fuzzer.may_call("ptxattn_run_prefill", run, launches)) {
    const Status ran = c_status(fuzzer, "ptxattn_run_prefill", ptxattn_run_prefill(run_plan, tensors_arg, nullptr));
    fuzzer.check("ptxattn_run_prefill", ran, run, launches ? WhenValid::kLaunch : WhenValid::kOk,
                 [&] { return input() + "\n    run plan " + (run_plan ? "made" : "NULL") + ", " +
                              (tensors_arg ? describe(t) : "tensors NULL") + ", tensors.struct_size " +
                              std::to_string(tensors.struct_size); });
  }
  ptxattn_prefill_plan_destroy(plan);
}

void fuzz_kv_block_range(Rng& rng, Fuzzer& fuzzer) {
  // A request and window as a valid plan hands them over: lengths <= 2^30,
  // qo_len <= kv_len when causal, windows -1 or below the batch's longest kv_len.
  ptxattn::detail::RequestInfo r{};
  const bool causal = rng.percent(50);
  auto length = [&] {
    return int32_t(rng.percent(50) ? rng.range(0, 5000)
                                   : rng.pick<int64_t>({kMaxTokens, kMaxTokens - 1, rng.range(0, kMaxTokens)}));
  };
  r.kv_len = length();
  r.qo_len = std::max(1, causal ? int32_t(rng.range(0, r.kv_len)) : length());
  if (causal && r.qo_len > r.kv_len) r.kv_len = r.qo_len;
  const int32_t window = rng.percent(30) ? -1
                         : rng.percent(50) ? int32_t(rng.range(0, 5000))
                                           : int32_t(rng.pick<int64_t>({kMaxTokens - 1, rng.range(0, kMaxTokens - 1)}));
  const int64_t q_blocks = (int64_t(r.qo_len) + 127) / 128;
  const int32_t q_block = int32_t(rng.percent(50) ? rng.pick<int64_t>({0, q_blocks - 1}) : rng.range(0, q_blocks - 1));
  const int32_t block_kv = rng.pick({64, 128, 176});  // every block a kernel walks
  const auto input = [&] {
    return "request{qo_len " + std::to_string(r.qo_len) + ", kv_len " + std::to_string(r.kv_len) + "}, q_block " +
           std::to_string(q_block) + ", block_kv " + std::to_string(block_kv) + ", causal " + std::to_string(causal) +
           ", window_left " + std::to_string(window);
  };
  fuzzer.show(input);
  const ptxattn::detail::KvBlockRange got =
      ptxattn::detail::kv_block_range(r, q_block, ptxattn::detail::kPrefillBlockQ, block_kv, causal, window);

  // The keys some query row of the tile sees (bottom-right aligned positions), as whole KV blocks.
  const i128 q_first = i128(q_block) * 128, q_last = std::min<i128>(q_first + 128, r.qo_len) - 1;
  const i128 pos_first = i128(r.kv_len) - r.qo_len + q_first, pos_last = i128(r.kv_len) - r.qo_len + q_last;
  const i128 key_end = causal ? std::min<i128>(r.kv_len, pos_last + 1) : r.kv_len;
  const i128 key_first = window >= 0 ? std::max<i128>(0, pos_first - window) : 0;
  const i128 count = key_end > key_first ? (key_end + block_kv - 1) / block_kv - key_first / block_kv : 0;
  fuzzer.require(got.count() == count && (count == 0 || got.first == key_first / block_kv), "detail::kv_block_range",
                 "the tile's KV blocks are those holding a key one of its queries sees", [&] {
                   return input() + "; got [" + std::to_string(got.first) + ", " + std::to_string(got.end) +
                          "), expected " + std::to_string(int64_t(count)) + " blocks from " +
                          std::to_string(int64_t(key_first / block_kv));
                 });
}

void fuzz_workspace(Rng& rng, Fuzzer& fuzzer) {
  // A config, with the per-batch choices forced half the time (what a graph
  // plan needs), and a capacity, mostly valid.
  PrefillConfig c = random_config(rng);
  const bool forced = rng.percent(50);
  if (forced) {
    c.kv_splits = rng.pick({1, 1, 2, 3, 7, 16});
    c.gqa_packing = rng.percent(50) ? GqaPacking::kOn : GqaPacking::kOff;
    c.kv_block = KvBlock::kStandard;
    c.schedule = WorkSchedule::kAuto;
  }
  const int64_t heads = std::max(1, c.num_qo_heads);
  PlanCapacity cap;
  cap.max_requests = rng.percent(92) ? int32_t(rng.range(0, 64)) : rng.pick({-1, INT32_MIN, rng.edge_int32()});
  cap.max_q_tokens = rng.percent(92) ? rng.range(0, 3000)
                                     : rng.pick<int64_t>({-1, kMaxTokens, kMaxTokens + 1, kInt32Max / heads,
                                                          kInt32Max / heads + 1, rng.edge_int64()});
  cap.max_kv_entries = rng.percent(50) ? 0 : rng.percent(90) ? rng.range(1, 4000)
                                                             : rng.pick<int64_t>({-1, kInt32Max, kInt32Max + 1});
  cap.max_kv_units = rng.percent(92) ? rng.range(0, 100000) : rng.pick<int64_t>({-1, kInt32Max + 1, rng.edge_int64()});
  cap.num_sms = rng.percent(95) ? rng.pick({132, 114, 78, 8, 1}) : rng.pick({-1, INT32_MIN});
  const auto input = [&] {
    std::ostringstream out;
    out << describe(c) << "\n    capacity{max_requests " << cap.max_requests << ", max_q_tokens " << cap.max_q_tokens
        << ", max_kv_entries " << cap.max_kv_entries << ", num_sms " << cap.num_sms << ", max_kv_units "
        << cap.max_kv_units << "}";
    return out.str();
  };
  fuzzer.show(input);
  Rules rules;
  config_rules(c, rules);
  rules.invalid(cap.max_requests >= 0, "capacity.max_requests >= 0", "capacity.max_requests");
  rules.invalid(cap.max_q_tokens >= 0 && cap.max_q_tokens <= kMaxTokens, "capacity.max_q_tokens in [0, 2^30]",
                "capacity.max_q_tokens");
  rules.invalid(i128(cap.max_q_tokens) * c.num_qo_heads <= kInt32Max,
                "capacity.max_q_tokens * num_qo_heads <= INT32_MAX", "capacity.max_q_tokens");
  rules.invalid(cap.max_kv_entries >= 0 && cap.max_kv_entries <= kInt32Max, "capacity.max_kv_entries in [0, INT32_MAX]",
                "capacity.max_kv_entries");
  rules.invalid(cap.num_sms >= 0, "capacity.num_sms >= 0", "capacity.num_sms");
  rules.invalid(cap.max_kv_units >= 0 && cap.max_kv_units <= kInt32Max, "capacity.max_kv_units in [0, INT32_MAX]",
                "capacity.max_kv_units");
  WorkspaceSizes sizes;
  const Status sized = ptxattn::prefill_workspace_size(c, cap, &sizes);
  fuzzer.check("prefill_workspace_size", sized, rules, WhenValid::kOk, input);

  // The C call on the same input (its structs sometimes of another layout, or NULL) answers the same.
  ptxattn_prefill_config c_config = to_c(c);
  c_config.struct_size = random_struct_size<ptxattn_prefill_config>(rng);
  const ptxattn_plan_capacity c_capacity{random_struct_size<ptxattn_plan_capacity>(rng), cap.max_requests,
                                         cap.max_q_tokens, cap.max_kv_entries, cap.num_sms, cap.max_kv_units};
  ptxattn_workspace_sizes c_sizes{random_struct_size<ptxattn_workspace_sizes>(rng), 0, 0};
  const ptxattn_plan_capacity* capacity_arg = rng.percent(4) ? nullptr : &c_capacity;
  ptxattn_workspace_sizes* sizes_arg = rng.percent(4) ? nullptr : &c_sizes;
  Rules c_rules;
  struct_size_rule(c_rules, &c_config, "C: config.struct_size is sizeof(ptxattn_prefill_config)");
  c_rules.invalid(capacity_arg != nullptr, "C: capacity is not NULL", "capacity");
  c_rules.invalid(sizes_arg != nullptr, "C: sizes is not NULL", "sizes");
  struct_size_rule(c_rules, capacity_arg, "C: capacity.struct_size is sizeof(ptxattn_plan_capacity)");
  struct_size_rule(c_rules, sizes_arg, "C: sizes.struct_size is sizeof(ptxattn_workspace_sizes)");
  const bool c_checks_pass = c_rules.ok();
  if (c_checks_pass) c_rules = rules;
  const Status c_sized = c_status(fuzzer, "ptxattn_prefill_workspace_size",
                                  ptxattn_prefill_workspace_size(&c_config, capacity_arg, sizes_arg));
  fuzzer.check("ptxattn_prefill_workspace_size", c_sized, c_rules, WhenValid::kOk, input);
  if (c_checks_pass)
    fuzzer.require(c_sized.code == sized.code && c_sized.message == sized.message &&
                       (!sized.ok() || (c_sizes.device_bytes == sizes.device_bytes &&
                                        c_sizes.host_bytes == sizes.host_bytes)),
                   "ptxattn_prefill_workspace_size", "the C API answers as the C++ API",
                   [&] { return input() + "\n    C: \"" + c_sized.message + "\"; C++: \"" + sized.message + "\""; });
  if (!sized.ok() || fuzzer.have_gpu()) return;  // below: made-up addresses, planned only where nothing uploads

  // A paged batch within the capacity (its table on the host or at run, as
  // a graph plan of it must take it), planned into a workspace of exactly
  // those sizes: whatever else it meets, it is never refused for them. The
  // plain plan takes one item per CTA and the graph plan has its SM count,
  // so both reach the workspace checks without a device.
  if (c.kv_format != KvFormat::kPaged || c.page_size < 1 || c.num_pages < 1) return;
  const bool table_at_run = cap.max_kv_entries == 0;
  Batch batch;
  batch.num_requests = int32_t(rng.range(0, std::min(cap.max_requests, 64)));
  batch.qo_indptr.push_back(0);
  batch.kv_indptr.push_back(0);
  int64_t tokens_left = cap.max_q_tokens, entries_left = table_at_run ? cap.max_kv_units : cap.max_kv_entries;
  for (int32_t b = 0; b < batch.num_requests; ++b) {
    const int64_t qo = rng.range(0, std::min<int64_t>(tokens_left, 200));
    const int64_t pages = std::min<int64_t>(entries_left, (qo + rng.range(0, 3000) + c.page_size - 1) / c.page_size);
    tokens_left -= qo, entries_left -= pages;
    batch.qo_indptr.push_back(batch.qo_indptr.back() + int32_t(qo));
    batch.kv_indptr.push_back(batch.kv_indptr.back() + int32_t(pages));
    batch.last_page_len.push_back(pages == 0 ? 0 : int32_t(rng.range(1, c.page_size)));
  }
  batch.kv_indices.assign(size_t(std::max(1, batch.kv_indptr.back())), 0);
  if (batch.last_page_len.empty()) batch.last_page_len.push_back(0);
  batch.null_indices = table_at_run;
  const BatchIndices idx = batch.view();
  Rules valid;
  batch_rules(c, idx, valid);
  if (!valid.ok()) return;  // e.g. causal with qo_len > kv_len: not what this checks
  PlanWorkspace workspace{reinterpret_cast<void*>(uintptr_t(1) << 44), sizes.device_bytes,
                          reinterpret_cast<void*>(uintptr_t(1) << 45), sizes.host_bytes, nullptr};
  PrefillConfig plain = c;
  plain.schedule = WorkSchedule::kOneItemPerCta;
  if (plain.kv_splits == 0) plain.kv_splits = 1;  // the rule asks the device for its SMs
  WorkspaceSizes plain_sizes;
  if (!ptxattn::prefill_workspace_size(plain, cap, &plain_sizes).ok()) return;
  workspace.device_bytes = plain_sizes.device_bytes, workspace.host_bytes = plain_sizes.host_bytes;
  PrefillPlan plan;
  const auto refused_for_size = [](const Status& s) {
    return s.message.find("workspace.device_bytes") != std::string::npos ||
           s.message.find("workspace.host_bytes") != std::string::npos;
  };
  const Status planned = ptxattn::plan_prefill(plain, idx, workspace, plan);
  fuzzer.require(!refused_for_size(planned), "plan_prefill(workspace)",
                 "a batch within the capacity fits a workspace of prefill_workspace_size's bytes",
                 [&] { return input() + "\n    " + describe(idx, plain) + "\n    " + planned.message; });
  // ... and ptxattn_plan_prefill_in answers as it does.
  const ptxattn_prefill_config c_plain = to_c(plain);
  const ptxattn_batch_indices c_indices{sizeof(ptxattn_batch_indices), idx.num_requests, idx.qo_indptr,
                                        idx.kv_indptr, idx.kv_indices, idx.kv_last_page_len, idx.kv_lens,
                                        idx.block_table_stride};
  const ptxattn_plan_workspace c_workspace{sizeof(ptxattn_plan_workspace), workspace.device, workspace.device_bytes,
                                           workspace.host, workspace.host_bytes, nullptr, nullptr};
  ptxattn_prefill_plan* c_plan = nullptr;
  fuzzer.require(ptxattn_prefill_plan_create(&c_plan) == PTXATTN_STATUS_OK && c_plan != nullptr,
                 "ptxattn_prefill_plan_create", "creates a plan", input);
  if (c_plan == nullptr) return;
  const Status c_planned = c_status(fuzzer, "ptxattn_plan_prefill_in",
                                    ptxattn_plan_prefill_in(c_plan, &c_plain, &c_indices, &c_workspace));
  fuzzer.require(c_planned.code == planned.code && c_planned.message == planned.message, "ptxattn_plan_prefill_in",
                 "the C API answers as the C++ API", [&] {
                   return input() + "\n    C: \"" + c_planned.message + "\"; C++: \"" + planned.message + "\"";
                 });
  if (c_planned.ok())
    fuzzer.require(ptxattn_check_page_table_errors(c_plan, nullptr) == PTXATTN_STATUS_OK,
                   "ptxattn_check_page_table_errors", "a plan that launches nothing has no page-table error", input);
  ptxattn_prefill_plan_destroy(c_plan);
  if (!forced) return;
  workspace.device_bytes = sizes.device_bytes, workspace.host_bytes = sizes.host_bytes;
  workspace.graph_capacity = &cap;
  const Status graph = ptxattn::plan_prefill(c, idx, workspace, plan);
  fuzzer.require(!refused_for_size(graph), "plan_prefill(graph)",
                 "a batch within a graph capacity fits a workspace of prefill_workspace_size's bytes",
                 [&] { return input() + "\n    " + describe(idx, c) + "\n    " + graph.message; });
}

}  // namespace fuzz
