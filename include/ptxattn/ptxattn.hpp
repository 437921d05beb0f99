// ptxattn: hand-written SM90 (Hopper) attention and RoPE kernels.
//
// C++ API. Every function validates its arguments before anything is launched
// and reports problems as a Status value (code + message naming the argument
// and the bad value); nothing here throws, aborts or clamps silently.
//
// Tensor conventions (device tensors are contiguous, row-major, but for the
// token rows of q and o and the pages (ragged: rows) of k and v, which may be
// strided: PrefillTensors::q_row_stride, kv_stride):
//   q, o        [num_q_tokens][num_qo_heads][head_dim]          (bf16 or fp16)
//   lse         [num_q_tokens][num_qo_heads]                    float32, NATURAL log
//   paged K/V   NHD: [num_pages][page_size][num_kv_heads][head_dim]
//               HND: [num_pages][num_kv_heads][page_size][head_dim]
//   ragged K/V  [num_kv_tokens][num_kv_heads][head_dim]          (rows by kv_indptr)
// Index arrays are int32. Queries of request b are rows qo_indptr[b]..qo_indptr[b+1].
// Paged KV (FlashInfer convention): request b owns pages
// kv_indices[kv_indptr[b] .. kv_indptr[b+1]), and its kv_len is
// page_size * (num_pages_b - 1) + kv_last_page_len[b] (0 when it owns no page).
// Ragged KV: request b owns K/V rows kv_indptr[b]..kv_indptr[b+1].
// Causal masking is bottom-right aligned: query i of a request sits at absolute
// position kv_len - qo_len + i and sees keys 0..that position.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>

#include "ptxattn.h"  // the C mirror of this API; PTXATTN_VERSION* and ptxattn_version() come from it

namespace ptxattn {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,  // a value the API contract forbids
  kUnsupported = 2,      // legal in principle, not built or not implemented
  kPlanMismatch = 3,     // a plan used with data it was not made for
  kCudaError = 4,        // a CUDA runtime or driver call failed
  kNoDevice = 5,         // no usable SM90 GPU
};

struct Status {
  StatusCode code = StatusCode::kOk;
  std::string message;

  bool ok() const { return code == StatusCode::kOk; }
  static Status Ok() { return {}; }
};

const char* status_code_name(StatusCode code);

enum class DType : int { kBF16 = 0, kFP16 = 1 };
enum class KvLayout : int { kNHD = 0, kHND = 1 };
enum class KvFormat : int { kPaged = 0, kRagged = 1 };

// Which producer fills the K/V shared-memory ring. kAuto picks by page size
// (docs/kernels.md has the measured threshold); the others force one path
// (tests use this so the path the threshold does not pick stays tested).
enum class KvLoadPath : int { kAuto = 0, kTma = 1, kGather = 2 };

// How CTAs take the work items (a 128-row query tile of one request for one
// qo head, or for a KV group's qo heads when GqaPacking packs them, over one
// chunk of the tile's KV blocks when kv_splits splits them). Every schedule
// starts items in one order: KV heads grouped into sections whose K and V
// fit in the L2, longest items first, so CTAs reading the same K/V run
// together. kPersistent: one CTA per SM (or max_ctas), each walking a list
// the plan balances; kOneItemPerCta: one CTA per item; kDynamic: one CTA per
// SM (or max_ctas), each claiming the next item of the order at run time as
// it finishes loading the last, so CTAs on SMs that stream faster take more
// items (the standard KV block only: it refuses kv_block kWide, and graph
// plans).
// kAuto is dynamic for unsplit batches of short queries (decode and
// speculative verification: every qo_len at most kDynamicScheduleMaxQoLen)
// on the gather path outside graph plans and max_ctas, and persistent
// elsewhere wherever the plan lists the items (up to 2^22 of them;
// docs/kernels.md, "Schedules");
// the others force one, as KvLoadPath does. Results are bit-identical under
// every schedule.
enum class WorkSchedule : int { kAuto = 0, kOneItemPerCta = 1, kPersistent = 2, kDynamic = 3 };
constexpr int32_t kDynamicScheduleMaxQoLen = 16;

// Which KV block the kernel walks (PrefillPlan::chosen_block_kv; docs/kernels.md
// has the table). kStandard: 128 rows (64 at head_dim 256). kWide: 176 rows,
// for head_dim 128 with ragged K/V on the TMA path, no causal mask, no
// window shorter than the batch's longest kv_len and a schedule other than
// kDynamic; elsewhere plan_prefill
// refuses it (kUnsupported, naming the obstacle). kAuto takes the wide block
// where it can and the batch's work lies in long KV ranges (the KV length of
// its average score, each request's kv_len weighted by qo_len x kv_len, is
// 8192 or more: shorter ones ran faster with the standard block;
// docs/kernels.md, "Batch prefill"); the others force one, as KvLoadPath does, so
// benchmarks time both on one shape and tests cover both. The two blocks split the online softmax at
// other keys: their results differ in rounding.
enum class KvBlock : int { kAuto = 0, kStandard = 1, kWide = 2 };

// How a 128-row query tile is filled (PrefillPlan::chosen_tile_heads).
// kOff: token-major, 128 tokens of one qo head. kOn: GQA-packed, the
// (token, qo head) pairs of one KV group's heads, the head fastest: 128 /
// group tokens of `group` heads (group = num_qo_heads / num_kv_heads, which
// must then divide 128), so one pass over a KV head's blocks serves all its
// qo heads and a decode step fills `group` rows of a tile instead of one.
// kAuto packs where the batch's query tiles then hold fewer padding rows
// (docs/kernels.md, "GQA packing"); the others force one, for tests and
// benchmarks. The two differ in the order of nothing a row computes: their
// results are bit-identical.
enum class GqaPacking : int { kAuto = 0, kOff = 1, kOn = 2 };

struct PrefillOptions {
  bool causal = false;
  int32_t window_left = -1;      // keys >= pos - window_left are visible; -1: off
  float logits_soft_cap = 0.0f;  // > 0: s = cap * tanh(s / cap) before masking; 0: off
  float sm_scale = 0.0f;         // 0: default 1/sqrt(head_dim)
  bool return_lse = false;       // write lse (natural log); -inf for fully masked rows
};

// What the plan is made for; run() checks its tensors against it.
struct PrefillConfig {
  DType dtype = DType::kBF16;
  int32_t num_qo_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;  // 64, 128 or 256
  KvFormat kv_format = KvFormat::kPaged;
  KvLayout kv_layout = KvLayout::kNHD;  // paged only
  int32_t page_size = 0;                // paged only
  int32_t num_pages = 0;                // paged only: pool size (pages in k_cache and v_cache)
  PrefillOptions options;
  KvLoadPath load_path = KvLoadPath::kAuto;
  WorkSchedule schedule = WorkSchedule::kAuto;
  KvBlock kv_block = KvBlock::kAuto;
  // Persistent and dynamic schedules: at most this many CTAs (0: one per SM
  // of the current device), e.g. to leave SMs to concurrent kernels. > 0
  // makes kAuto persistent; kOneItemPerCta refuses it.
  int32_t max_ctas = 0;
  // Split-KV: cut each query tile's KV range into chunks, run the chunks as
  // separate work items that write float32 partial states into the plan's
  // workspace (its own or the caller's), and merge them (merge_states)
  // after the kernel. 0: the plan's rule (PrefillPlan::chosen_kv_splits;
  // docs/kernels.md, "Split-KV": only batches whose longest work item
  // exceeds an SM's even share of the work are split: few items, or a few
  // long among short; the longest tile gets the chosen count, the others
  // chunks in proportion to their KV ranges, one for a short one); 1:
  // never; 2..64: exactly that many for every tile (for tests and
  // benchmarks; a chunk may then hold no KV block, and its rows merge as
  // empty states). Results are bit-identical from run to run for a given
  // plan; different chunks differ in rounding.
  int32_t kv_splits = 0;
  GqaPacking gqa_packing = GqaPacking::kAuto;
  // K/V stages in the kernel's shared-memory ring. 0: the head dim's ring
  // (PrefillPlan::chosen_kv_stages; docs/kernels.md, "K/V stages": 4 at
  // head_dim 64, 2 at 128 and 256). Otherwise exactly this many, where a
  // kernel with that ring is built: the head dim's count, or 3 at head_dim
  // 128 on the gather path with the standard block (for tests and
  // benchmarks). The count moves only when loads are issued, never the
  // arithmetic: every count gives the same bits.
  int32_t kv_stages = 0;
};

// Host copies of the batch index arrays (read only during plan_prefill).
// Paged K/V: the page table either comes here (kv_indices on the host: the
// plan checks every entry and keeps a device copy) or, with kv_indices null,
// at every run as a device array (PrefillTensors::kv_indices), which is how
// an engine that keeps its block tables on the GPU plans a step from lengths
// alone. A device page table is checked by the kernel as it reads it:
// check_page_table_errors says what it found.
//
// Paged K/V may instead come as a block table (the form of FA3 and vLLM):
// block_table_stride > 0 entries per request, request b's pages being
// entries [b * block_table_stride, + ceil(kv_lens[b] / page_size)) of the
// device table given at run, and kv_lens[b] its K/V tokens. kv_indptr,
// kv_indices and kv_last_page_len are then null.
struct BatchIndices {
  int32_t num_requests = 0;
  const int32_t* qo_indptr = nullptr;         // [num_requests + 1]
  const int32_t* kv_indptr = nullptr;         // [num_requests + 1]; null in the block-table form
  const int32_t* kv_indices = nullptr;        // paged: [kv_indptr[num_requests]], or null (device table at run)
  const int32_t* kv_last_page_len = nullptr;  // paged: [num_requests]; null in the block-table form
  const int32_t* kv_lens = nullptr;           // block-table form: K/V tokens per request [num_requests]
  int32_t block_table_stride = 0;             // block-table form: entries per request row (> 0); 0: CSR form
};

// Device tensors for one run. The counts restate the shapes the caller
// allocated; run() refuses a plan made for other shapes.
struct PrefillTensors {
  const void* q = nullptr;
  const void* k = nullptr;  // paged pool or ragged rows
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;  // required when options.return_lse
  int64_t num_q_tokens = 0;
  int64_t num_kv_rows = 0;  // paged: num_pages; ragged: rows in k and v (>= kv_indptr[num_requests])
  // Paged K/V planned without host kv_indices: the page table on the device,
  // int32 [kv_indptr[num_requests]] at the plan's positions (request b's
  // pages at kv_indptr[b] ..), or in the block-table form int32
  // [num_requests][block_table_stride]; 4-byte aligned. Null otherwise. The kernel
  // reads it during the run, so it may change between runs of one plan (a
  // captured graph reads it as it is at replay). An entry outside [0,
  // config.num_pages) is never used to address K or V: the kernel reads
  // page 0 in its place, so that request's output is wrong, and records the
  // entry for check_page_table_errors.
  const int32_t* kv_indices = nullptr;
  // Elements from one token's row of q (of o) to the next: 0 means
  // num_qo_heads x head_dim (contiguous). Otherwise at least that and a
  // multiple of 8 (16 bytes), e.g. q as a view into a fused QKV projection
  // [tokens][(num_qo_heads + 2 num_kv_heads) x head_dim]. Within a row the
  // heads stay contiguous; lse stays [num_q_tokens][num_qo_heads].
  int64_t q_row_stride = 0;
  int64_t o_row_stride = 0;
  // Elements from one page of k (and of v) to the next (paged), or from one
  // row to the next (ragged): 0 means contiguous (page_size x num_kv_heads x
  // head_dim, or num_kv_heads x head_dim). Otherwise at least that and a
  // multiple of 8, at most INT32_MAX; within a page (a row) the layout is
  // kv_layout's. E.g. FlashInfer's combined cache [num_pages][2][page
  // elements]: k = cache, v = cache + page elements, kv_stride = 2 x page
  // elements.
  int64_t kv_stride = 0;
};

class PrefillPlanImpl;

// The work schedule of one batch, made on the host. Its workspace (its own,
// or the caller's: PlanWorkspace) holds device copies of the index arrays
// and the tile list, so run() only launches (CUDA-graph capturable). A
// captured graph replays the run as captured: its grid, its tensor maps and
// the workspace addresses of that plan. Re-planning rewrites the workspace
// (a plan that owns it copies synchronously, unordered with work in flight
// on other streams, and reallocates it when a batch needs more; one in the
// caller's workspace copies in order on the caller's stream): re-plan only
// after the runs of the previous plan have finished or are ordered before
// the new copy, and do not replay a graph captured before a re-plan for
// another batch. With split-KV (chosen_kv_splits() > 1) the workspace also
// holds the chunks' float32 states, which each run writes and then merges
// (two launches on the run's stream), and under the dynamic schedule
// (chosen_schedule() kDynamic) the counter its CTAs claim items from, which
// each run zeroes and counts up: runs of such a plan must not overlap in
// time (on two streams, say; they would skip items or merge each other's
// states); separate plans may, and so may runs of other plans.
class PrefillPlan {
 public:
  PrefillPlan();
  ~PrefillPlan();
  PrefillPlan(PrefillPlan&&) noexcept;
  PrefillPlan& operator=(PrefillPlan&&) noexcept;
  PrefillPlan(const PrefillPlan&) = delete;
  PrefillPlan& operator=(const PrefillPlan&) = delete;

  bool valid() const;
  const PrefillConfig& config() const;
  KvLoadPath chosen_load_path() const;  // kTma or kGather after planning (paged and ragged)
  WorkSchedule chosen_schedule() const;  // kOneItemPerCta, kPersistent or kDynamic after planning
  int32_t chosen_block_kv() const;      // keys per KV block the kernel walks: 176, 128 or 64 (docs/kernels.md)
  int32_t chosen_kv_splits() const;     // KV chunks of the longest query tile (the most of any): 1 (no split) to 64
  int32_t chosen_kv_stages() const;     // K/V stages of the kernel's ring: 2 to 4 (docs/kernels.md)
  int32_t chosen_tile_heads() const;    // qo heads per query tile: 1 (token-major) or the GQA group (packed)
  int64_t num_q_tokens() const;         // qo_indptr[num_requests] (a graph plan: its capacity's max_q_tokens)
  int64_t num_kv_rows() const;          // paged: page-table entries (kv_indptr[num_requests], or num_requests x block_table_stride); ragged: kv rows; a graph plan's max_kv_units where its tensors hold them
  int64_t num_work_tiles() const;       // 128-row query tiles, each once per KV chunk of it (each runs once per group of tile heads)
  int64_t num_ctas() const;             // the launch grid (0 when there is no work; a graph plan's is fixed)

  PrefillPlanImpl* impl() const { return impl_.get(); }

 private:
  std::unique_ptr<PrefillPlanImpl> impl_;
};

// Validates config and indices (every rule in README "Validation") and builds
// the schedule. Uses the current CUDA device; allocates the plan's own
// workspace (growing it when a batch needs more) and copies synchronously.
Status plan_prefill(const PrefillConfig& config, const BatchIndices& indices, PrefillPlan& plan);

// ---- Plans in the caller's memory, ordered on the caller's stream ----
// The largest batch a workspace must serve.
struct PlanCapacity {
  int32_t max_requests = 0;
  int64_t max_q_tokens = 0;    // qo_indptr[num_requests] at most
  int64_t max_kv_entries = 0;  // host kv_indices entries the plan copies (0 when the page table comes at run)
  int32_t num_sms = 0;         // SMs of the device the plans run on (0: the current device's)
  // Graph plans only (PlanWorkspace::graph_capacity): the most K/V units a
  // batch may name where the captured tensors, not the plan, hold them:
  // page-table entries given at run (the captured table holds this many) or
  // ragged K/V rows (the captured k and v hold this many).
  int64_t max_kv_units = 0;
};

struct WorkspaceSizes {
  size_t device_bytes = 0;  // device memory, 256-byte aligned
  size_t host_bytes = 0;    // pinned host memory (cudaHostAlloc / cudaMallocHost): the upload's staging
};

// What a plan of `config` needs for any batch within `capacity` (with the
// config's kv_splits, gqa_packing and schedule: a forced kv_splits sizes
// that many partial states per token and head, the rule at most 512 x
// num_sms). Host only, no CUDA call unless num_sms is 0.
Status prefill_workspace_size(const PrefillConfig& config, const PlanCapacity& capacity, WorkspaceSizes* sizes);

struct PlanWorkspace {
  void* device = nullptr;      // device_bytes, 256-byte aligned, on the current device
  size_t device_bytes = 0;
  void* host = nullptr;        // host_bytes of pinned memory: the staging of the upload
  size_t host_bytes = 0;
  cudaStream_t stream = nullptr;  // the upload is ordered on it
  // CUDA graphs across batches: when set, the plan is laid out for this
  // capacity (size the workspace with prefill_workspace_size for it) and
  // its runs launch the same kernels with the same arguments for every
  // batch within it, reading the batch from the workspace. So a run
  // captured in a graph once replays correctly after plan_prefill has made
  // this plan (the same PrefillPlan, workspace and capacity) for any other
  // batch within the capacity, provided that:
  //  - the config asks for every choice the plan would otherwise make per
  //    batch: kv_splits 1 to 64, gqa_packing kOn or kOff, kv_block kStandard
  //    or kWide, and schedule kAuto or kPersistent, not kOneItemPerCta
  //    (kUnsupported otherwise); the window counts as shorter than the
  //    batch's keys unless it reaches 2^30, so kWide takes no window;
  //  - every batch takes its page table in the same form: on the host (the
  //    capacity's max_kv_entries > 0) or at run (max_kv_entries 0), and
  //    names at most max_kv_units entries given at run or ragged rows;
  //  - the run's tensors are the captured ones, at the same addresses: q, o
  //    (and lse) hold capacity.max_q_tokens rows (tensors.num_q_tokens is
  //    that), of which the batch's first qo_indptr[num_requests] are
  //    computed and the rest left as they are; K/V are the same pool, and a
  //    page table at run is read from the same address at every replay;
  //  - each re-plan is ordered after the previous replay and before the
  //    next (plan and replay on the same stream). A re-plan also clears the
  //    page-table error word: call check_page_table_errors before it.
  // A batch beyond the capacity is refused (kInvalidArgument).
  const PlanCapacity* graph_capacity = nullptr;
};

// plan_prefill without allocating and without waiting for the device: the
// plan lives in `workspace`, written by one copy from workspace.host issued
// on workspace.stream. Runs of the plan must be ordered after that copy (on
// the same stream, or after an event recorded there), and the workspace
// must outlive them and stay untouched meanwhile. Re-planning writes the
// staging buffer again only after the plan's previous copy has finished
// (it waits for that copy alone, so the host stays at most one plan ahead
// of the copies on the stream); a staging buffer must serve one plan at a
// time. A batch that needs more than the workspace holds is
// refused (kInvalidArgument, naming the bytes needed) before anything is
// written.
Status plan_prefill(const PrefillConfig& config, const BatchIndices& indices, const PlanWorkspace& workspace,
                    PrefillPlan& plan);

// Whether the TMA load path can serve `config` (ragged K/V always; paged when
// a KV block is a whole number of pages or a page a whole number of blocks).
bool tma_load_path_supported(const PrefillConfig& config);

// Launches the prefill on `stream`. Checks the tensors against the plan
// (pointers, 16-byte alignment, shapes) and, when there is work to launch,
// that the current device is the one the plan was made on (kPlanMismatch).
// Re-planning on another device frees a workspace the plan owns and
// allocates anew (a caller's workspace must be on the current device).
Status run_prefill(const PrefillPlan& plan, const PrefillTensors& tensors, cudaStream_t stream);

// The page-table entry outside the pool, of the lowest position, that the
// runs of `plan` met since it was made or last checked (only a device page
// table can hold one: host tables are checked by plan_prefill). Waits for
// `stream` (the runs must have been issued on it or finished before; not
// while a stream is being captured), then returns kInvalidArgument naming
// the entry, its value and its request, or Ok, and clears the record. A
// run with a bad entry computes its other requests correctly and never
// reads outside the pool. Where there is a table to check, refuses
// (kPlanMismatch) a current device other than the plan's, and
// (kInvalidArgument) a stream that is being captured.
Status check_page_table_errors(const PrefillPlan& plan, cudaStream_t stream);

// One API for every query length. Decode (qo_len 1), speculative
// verification (a few tokens per request) and prefill are all batches of
// this plan: for short queries it packs a KV group's qo heads into a tile
// (GqaPacking) and splits long KV ranges over idle SMs (kv_splits). These
// names say so; they are the same types and functions as the prefill ones.
using AttentionConfig = PrefillConfig;
using AttentionTensors = PrefillTensors;
using AttentionPlan = PrefillPlan;
inline Status plan_attention(const AttentionConfig& config, const BatchIndices& indices, AttentionPlan& plan) {
  return plan_prefill(config, indices, plan);
}
// (C: ptxattn_plan_prefill_in; the C aliases cover the calls without a workspace.)
inline Status plan_attention(const AttentionConfig& config, const BatchIndices& indices,
                             const PlanWorkspace& workspace, AttentionPlan& plan) {
  return plan_prefill(config, indices, workspace, plan);
}
inline Status run_attention(const AttentionPlan& plan, const AttentionTensors& tensors, cudaStream_t stream) {
  return run_prefill(plan, tensors, stream);
}

// Validation only (no CUDA calls): used by plan_prefill, exposed for tests
// and for callers that want to check inputs on a machine without a GPU.
Status validate_prefill_config(const PrefillConfig& config);
Status validate_batch_indices(const PrefillConfig& config, const BatchIndices& indices);

// ----------------------------------------------------------------------------
// RoPE (FlashInfer conventions).
// NeoX (interleave = false) rotates pairs (i, i + rotary_dim/2); GPT-J
// (interleave = true) rotates pairs (2j, 2j+1). Dims >= rotary_dim pass through
// bit-exactly. A pair (a, b) that uses frequency f at position p becomes
// (a·cos(p·f) - b·sin(p·f), b·cos(p·f) + a·sin(p·f)); NeoX pair i and GPT-J
// pair j use frequency index i resp. j.
// freq_i = theta^(-2i/rotary_dim) / rope_scale, or Llama-3.1 smoothing of
// theta^(-2i/rotary_dim) between low/high frequency factors when llama31 is set
// (rope_scale is then the Llama "factor": wavelengths above
// old_context_len / low_freq_factor are divided by it, below
// old_context_len / high_freq_factor kept, linear in 1/wavelength between).
//
// Accuracy (docs/validation.md "RoPE accuracy"): the angle in half turns,
// position · freq / pi, is reduced mod 2 in double (exactly), rounded to float
// and fed to sincospif, so cos and sin are within pi·2^-25 + 2^-24 (~1.5e-7) of
// the exact values for every angle below 2^24 radians: as accurate at position
// 1M as at 0. The rotation is float (fma), rounded once to the dtype.
// Index arrays and positions live on the device and are not range-checked by
// the host: see each function for what malformed ones do (never an
// out-of-bounds access).
struct RopeConfig {
  int32_t rotary_dim = 0;  // even, in [2, head_dim]
  bool interleave = false;
  float theta = 1e4f;       // > 0, finite
  float rope_scale = 1.0f;  // > 0, finite
  bool llama31 = false;
  float low_freq_factor = 1.0f;   // llama31: > 0
  float high_freq_factor = 4.0f;  // llama31: > low_freq_factor
  int32_t old_context_len = 8192; // llama31: > 0
};

// float32 [max_position][rotary_dim]: cos of the rotary_dim/2 frequencies, then
// sin; row p is position p. rotary_dim must equal rope.rotary_dim (rope.interleave
// is not used: the cache is the same for both pairings). max_position > 0; the
// cache pointer must be 16-byte aligned.
Status build_rope_cos_sin_cache(float* cos_sin_cache, int32_t max_position, int32_t rotary_dim,
                                const RopeConfig& rope, cudaStream_t stream);

// q/k ragged [num_tokens][heads][head_dim] (head_dim 64, 128 or 256), 16-byte
// aligned. An output may be its own input (in place, q_out == q_in); any other
// overlap between tensors is refused. Pointers may be null only when
// num_tokens == 0. Heads in [1, 65536] each, and
// num_tokens · (num_qo_heads + num_kv_heads) <= INT32_MAX.
struct RopeTensors {
  DType dtype = DType::kBF16;
  int32_t head_dim = 0;
  int32_t num_qo_heads = 0;
  int32_t num_kv_heads = 0;
  int64_t num_tokens = 0;
  const void* q_in = nullptr;
  const void* k_in = nullptr;
  void* q_out = nullptr;
  void* k_out = nullptr;
};

// Positions: either per-token pos_ids, or request indptr (num_requests + 1)
// with per-request offsets (position = offsets[b] + token - indptr[b] for the
// request b with indptr[b] <= token < indptr[b+1]). Exactly one of pos_ids and
// indptr is given; with indptr, offsets is required. Arrays are on the device.
// The device reads only indptr[0, num_requests) and offsets[0, num_requests);
// an indptr that is not non-decreasing from 0 to num_tokens gives unspecified
// positions (any position is valid input, so nothing is read or written out of
// bounds).
struct RopePositions {
  const int32_t* pos_ids = nullptr;  // [num_tokens], or null to use indptr + offsets
  int32_t num_requests = 0;
  const int32_t* indptr = nullptr;   // [num_requests + 1], indptr[num_requests] == num_tokens
  const int32_t* offsets = nullptr;  // [num_requests]
};

Status apply_rope(const RopeTensors& tensors, const RopePositions& positions, const RopeConfig& rope,
                  cudaStream_t stream);

// pos_ids + a cache from build_rope_cos_sin_cache (max_position rows of
// rotary_dim floats). A pos_id outside [0, max_position) reads nothing: that
// token's cos and sin are taken as NaN, so its rotary dims come out NaN in
// every head of q_out and k_out (dims >= rotary_dim are still copied).
Status apply_rope_with_cos_sin_cache(const RopeTensors& tensors, const int32_t* pos_ids,
                                     const float* cos_sin_cache, int32_t max_position,
                                     int32_t rotary_dim, bool interleave, cudaStream_t stream);

// ---- Appending new K/V tokens to the paged cache ----
// New tokens arrive ragged by append_indptr: rows append_indptr[b] ..
// append_indptr[b+1] of k_new / v_new [num_append_tokens][num_kv_heads][head_dim]
// belong to request b and are its LAST append_len_b tokens: the page table
// (kv_indptr, kv_indices, kv_last_page_len, as in BatchIndices) already counts
// them, so token j of the append sits at kv position
// kv_len_b - append_len_b + j, in page kv_indices[kv_indptr[b] + pos / page_size]
// at slot pos % page_size. Nothing else in the cache is written.
struct AppendConfig {
  DType dtype = DType::kBF16;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;                 // 64, 128 or 256
  KvLayout kv_layout = KvLayout::kNHD;
  int32_t page_size = 0;                // any size in [1, 1024]
  int32_t num_pages = 0;                // pool size (pages in k_cache and v_cache)
};

// Host copies of the index arrays (read only during plan_append_paged_kv).
struct AppendIndices {
  int32_t num_requests = 0;
  const int32_t* append_indptr = nullptr;     // [num_requests + 1]
  const int32_t* kv_indptr = nullptr;         // [num_requests + 1]
  const int32_t* kv_indices = nullptr;        // [kv_indptr[num_requests]]
  const int32_t* kv_last_page_len = nullptr;  // [num_requests]; 0 for a request without pages
};

class AppendPlanImpl;

// Where every appended token goes (page and position), validated on the host
// and uploaded, so append_paged_kv_cache only launches (CUDA-graph
// capturable). Re-planning follows PrefillPlan's rules: after the previous
// plan's runs have finished, and a graph captured before it is stale.
class AppendPlan {
 public:
  AppendPlan();
  ~AppendPlan();
  AppendPlan(AppendPlan&&) noexcept;
  AppendPlan& operator=(AppendPlan&&) noexcept;
  AppendPlan(const AppendPlan&) = delete;
  AppendPlan& operator=(const AppendPlan&) = delete;

  bool valid() const;
  const AppendConfig& config() const;
  int64_t num_append_tokens() const;  // append_indptr[num_requests]

  AppendPlanImpl* impl() const { return impl_.get(); }

 private:
  std::unique_ptr<AppendPlanImpl> impl_;
};

// Validates (config, indices: every rule below) and uploads the destinations.
// Rules: the pool, num_pages * page_size * num_kv_heads rows, fits INT32_MAX
// (as for prefill); indptrs start at 0 and never decrease; kv_indices in
// [0, num_pages); kv_last_page_len[b] in [1, page_size] (0 when request b owns
// no page); append_len_b <= kv_len_b; no two appended tokens land in the same
// slot of the same page. Uses the current CUDA device; allocates and copies
// synchronously.
Status plan_append_paged_kv(const AppendConfig& config, const AppendIndices& indices, AppendPlan& plan);

struct AppendTensors {
  const void* k_new = nullptr;  // [num_append_tokens][num_kv_heads][head_dim]
  const void* v_new = nullptr;
  void* k_cache = nullptr;      // paged pools (config.kv_layout), num_pages pages
  void* v_cache = nullptr;
  int64_t num_append_tokens = 0;  // restated; must equal the plan's
  int32_t num_pages = 0;          // restated; must equal config.num_pages
  // Fused variant only (rope != null): queries of the appended tokens, rotated
  // at the same positions as their keys. Null q_in: Q is left alone.
  const void* q_in = nullptr;   // [num_append_tokens][num_qo_heads][head_dim]
  void* q_out = nullptr;        // may equal q_in (in place)
  int32_t num_qo_heads = 0;
};

// Copies k_new / v_new into the cache slots the plan names. rope == null: K
// and V are copied bit-exactly. rope != null (fused): K is rotated at its kv
// position on the way in (and Q when tensors.q_in is set); V is copied.
// All tensors 16-byte aligned; the caches must not overlap any other tensor.
Status append_paged_kv_cache(const AppendPlan& plan, const AppendTensors& tensors, const RopeConfig* rope,
                             cudaStream_t stream);

// Validation only (no CUDA calls), as the entry points above run it.
Status validate_rope_config(const RopeConfig& rope);
Status validate_append_indices(const AppendConfig& config, const AppendIndices& indices);

// ----------------------------------------------------------------------------
// Merging attention states (cascade attention, split-KV): FlashInfer's
// merge_state / merge_states, with the NATURAL-log LSE used everywhere here.
// An attention state of one (token, head) is (v, lse): v [head_dim] is the
// attention output over some set of keys, lse = log Σ exp(score) over them.
// Merging states k = 0 .. n-1 gives the state over the union of their keys:
//   m = max_k lse_k,  w_k = exp(lse_k - m),
//   v_out = Σ_k w_k v_k / Σ_k w_k,  lse_out = m + log Σ_k w_k.
// FlashInfer's LSE is base 2: lse_ptxattn = lse_flashinfer · ln 2.
// - lse_k = -inf marks an EMPTY state (no visible key, e.g. a split-KV chunk
//   a query cannot see): it contributes nothing and its v is never used in
//   arithmetic, so it may hold anything (NaN included). All states of a
//   (token, head) empty: v_out = 0, lse_out = -inf (what prefill writes for a
//   fully masked row).
// - lse_k NaN or +inf in any state of a (token, head): v_out is NaN in every
//   element and lse_out is NaN for that (token, head), whatever the other
//   states hold.
// - Computed in float32, over the states in index order (online: the running
//   maximum is updated state by state), so results are bit-identical from
//   run to run; merge_state(a, b) gives the bits of merge_states over the
//   two states stacked. Accuracy: docs/validation.md ("Merging states").
// Limits: head_dim a multiple of 8 in [8, 1024]; num_states in [1, 4096];
// num_heads >= 1; num_tokens >= 0 (0: nothing is launched);
// num_tokens · num_heads <= INT32_MAX. Every pointer is a 16-byte aligned
// device pointer, null only when its tensor is empty (lse_out: null means
// not written); the outputs must not overlap an input or each other.

// Element type of a state's v (input) and of v_out. A separate enum from
// DType, which the attention kernels accept and which has no float32.
// The merge kernel is built for every StateDType (the meson option dtypes
// limits the prefill and RoPE kernels only).
enum class StateDType : int { kBF16 = 0, kFP16 = 1, kFP32 = 2 };

// n states stacked per token (a split-KV workspace holds them so).
struct MergeStatesTensors {
  StateDType v_dtype = StateDType::kBF16;    // of v
  StateDType out_dtype = StateDType::kBF16;  // of v_out; may differ from v_dtype
  int32_t num_states = 0;
  int32_t num_heads = 0;
  int32_t head_dim = 0;
  int64_t num_tokens = 0;
  const void* v = nullptr;     // [num_tokens][num_states][num_heads][head_dim]
  const float* lse = nullptr;  // [num_tokens][num_states][num_heads]
  void* v_out = nullptr;       // [num_tokens][num_heads][head_dim]
  float* lse_out = nullptr;    // [num_tokens][num_heads], or null
};

Status merge_states(const MergeStatesTensors& tensors, cudaStream_t stream);

// Two states in separate tensors (FlashInfer's merge_state): state 0 is
// (v_a, lse_a), state 1 is (v_b, lse_b).
struct MergeStateTensors {
  StateDType v_dtype = StateDType::kBF16;    // of v_a and v_b
  StateDType out_dtype = StateDType::kBF16;  // of v_out
  int32_t num_heads = 0;
  int32_t head_dim = 0;
  int64_t num_tokens = 0;
  const void* v_a = nullptr;     // [num_tokens][num_heads][head_dim]
  const float* lse_a = nullptr;  // [num_tokens][num_heads]
  const void* v_b = nullptr;
  const float* lse_b = nullptr;
  void* v_out = nullptr;         // [num_tokens][num_heads][head_dim]
  float* lse_out = nullptr;      // [num_tokens][num_heads], or null
};

Status merge_state(const MergeStateTensors& tensors, cudaStream_t stream);

// ----------------------------------------------------------------------------
// Bounded waits (build option bounded_waits; docs/kernels.md, "Bounded waits").
// In a library built with them, every mbarrier wait of the prefill kernel
// gives up after about 2 s, and the first thread whose wait ran out writes
// what it waited for into host-mapped memory and traps. The trap leaves the
// CUDA context unusable (every later CUDA call fails, until cudaDeviceReset);
// last_wait_timeout still reads the record, as it reads host memory only.

// True when this library was built with bounded waits.
bool bounded_waits_built();

// One timed-out wait, as the thread that timed out recorded it.
struct WaitTimeout {
  int device = -1;             // CUDA device ordinal the kernel ran on
  std::string kernel;          // e.g. "prefill (head_dim 128, bf16, TMA)"
  uint32_t block = 0;          // blockIdx.x (every ptxattn grid is one-dimensional)
  uint32_t thread = 0;         // threadIdx.x
  std::string barrier;         // "q_full", "k_full[s]", "v_full[s]", "k_empty[s]", "v_empty[s]" (s: ring stage),
                               // "item_full[i]" or "item_empty[i]" (the dynamic schedule's item slot i)
  uint32_t parity = 0;         // the phase parity the thread waited for
  uint32_t smem_address = 0;   // the barrier's shared-memory (shared::cta) address
  std::string message;         // all of the above in one line
};

// Fills *out with the timed-out wait recorded in this process (only the first
// timeout per device is recorded; with records on several devices, the lowest
// ordinal's) and returns true; false when none was recorded, or the library
// was built without bounded waits. Calls no CUDA function, so it works after
// the trap. The record outlives cudaDeviceReset, but a later timeout on a
// reset device ends in an illegal-address error instead of a new record.
bool last_wait_timeout(WaitTimeout* out);

}  // namespace ptxattn
