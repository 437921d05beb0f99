// ptxattn._ptxattn: the C++ API (include/ptxattn/ptxattn.hpp) for Python,
// over DLPack tensors (torch, CuPy, JAX, ...). python/ptxattn/__init__.py
// builds the FlashInfer-shaped entry points on top of it.
//
// What this layer adds to the C++ API's own validation: each tensor is on the
// CUDA device the plan was made on, has the dtype and shape the call implies,
// and is contiguous (row-major); index arrays are int32, one-dimensional and
// contiguous, on the host or on the device (then copied to the host,
// synchronously). A bad argument raises ValueError with a message naming it; a
// Status other than ok raises ValueError (invalid argument, unsupported, plan
// mismatch) or RuntimeError (no device, CUDA error) with the library's message.
#include <cuda_runtime_api.h>
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "ptxattn/ptxattn.hpp"

namespace nb = nanobind;
using namespace ptxattn;

namespace {

// Read-only views are accepted for inputs (JAX arrays are read-only).
using Input = nb::ndarray<nb::ro>;
using Output = nb::ndarray<>;

[[noreturn]] void bad_argument(const std::string& message) { throw nb::value_error(message.c_str()); }

void check(const Status& status) {
  if (status.ok()) return;
  if (status.code == StatusCode::kNoDevice || status.code == StatusCode::kCudaError)
    throw std::runtime_error(std::string(status_code_name(status.code)) + ": " + status.message);
  bad_argument(status.message);
}

DType parse_dtype(const std::string& name) {
  if (name == "bfloat16" || name == "bf16") return DType::kBF16;
  if (name == "float16" || name == "fp16" || name == "half") return DType::kFP16;
  bad_argument("dtype '" + name + "' is not one of bfloat16, float16");
}

KvLayout parse_layout(const std::string& name) {
  if (name == "NHD") return KvLayout::kNHD;
  if (name == "HND") return KvLayout::kHND;
  bad_argument("kv_layout '" + name + "' is not NHD or HND");
}

KvLoadPath parse_load_path(const std::string& name) {
  if (name == "auto") return KvLoadPath::kAuto;
  if (name == "tma") return KvLoadPath::kTma;
  if (name == "gather") return KvLoadPath::kGather;
  bad_argument("load_path '" + name + "' is not auto, tma or gather");
}

WorkSchedule parse_schedule(const std::string& name) {
  if (name == "auto") return WorkSchedule::kAuto;
  if (name == "one_item_per_cta") return WorkSchedule::kOneItemPerCta;
  if (name == "persistent") return WorkSchedule::kPersistent;
  if (name == "dynamic") return WorkSchedule::kDynamic;
  bad_argument("schedule '" + name + "' is not auto, one_item_per_cta, persistent or dynamic");
}

GqaPacking parse_gqa_packing(const std::string& name) {
  if (name == "auto") return GqaPacking::kAuto;
  if (name == "on") return GqaPacking::kOn;
  if (name == "off") return GqaPacking::kOff;
  bad_argument("gqa_packing '" + name + "' is not auto, on or off");
}

KvBlock parse_kv_block(const std::string& name) {
  if (name == "auto") return KvBlock::kAuto;
  if (name == "standard") return KvBlock::kStandard;
  if (name == "wide") return KvBlock::kWide;
  bad_argument("kv_block '" + name + "' is not auto, standard or wide");
}

template <typename Tensor>
std::string shape_string(const Tensor& t) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < t.ndim(); ++i) out << (i ? ", " : "") << t.shape(i);
  out << (t.ndim() == 1 ? ",)" : ")");
  return out.str();
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

// Row-major with no gaps (a dimension of extent 1 may have any stride).
template <typename Tensor>
bool contiguous(const Tensor& t) {
  int64_t expected = 1;
  for (size_t i = t.ndim(); i-- > 0;) {
    if (t.shape(i) != 1 && t.stride(i) != expected) return false;
    expected *= int64_t(t.shape(i));
  }
  return true;
}

nb::dlpack::dtype dlpack_dtype(DType dtype) {
  if (dtype == DType::kBF16) return {uint8_t(nb::dlpack::dtype_code::Bfloat), 16, 1};
  return {uint8_t(nb::dlpack::dtype_code::Float), 16, 1};
}

const char* dtype_name(DType dtype) { return dtype == DType::kBF16 ? "bfloat16" : "float16"; }

// A device tensor argument: on `device`, of `dtype`, of `shape`, contiguous.
template <typename Tensor>
void check_tensor(const Tensor& t, const char* name, int device, nb::dlpack::dtype dtype, const char* dtype_text,
                  const std::vector<int64_t>& shape, bool rows_strided = false) {
  const Tensor& view = t;
  if (view.device_type() != nb::device::cuda::value)
    bad_argument(std::string(name) + " must be a CUDA tensor (DLPack device type " +
                 std::to_string(view.device_type()) + ")");
  if (view.device_id() != device)
    bad_argument(std::string(name) + " is on CUDA device " + std::to_string(view.device_id()) +
                 ", the plan on device " + std::to_string(device));
  if (view.dtype() != dtype) bad_argument(std::string(name) + " must have dtype " + dtype_text);
  bool same_shape = view.ndim() == shape.size();
  for (size_t i = 0; same_shape && i < shape.size(); ++i) same_shape = int64_t(view.shape(i)) == shape[i];
  if (!same_shape)
    bad_argument(std::string(name) + " has shape " + shape_string(view) + ", expected " + shape_string(shape));
  if (!rows_strided && !contiguous(view)) bad_argument(std::string(name) + " must be contiguous (row-major)");
}

// As check_tensor, but the entries of the first dimension may lie any stride
// apart, each entry contiguous: q or out of attention [tokens][heads][head_dim]
// (q as a view into a fused QKV projection; `entries` "tokens"), or a K/V
// pool's pages or ragged rows (k and v as halves of a combined cache). The
// library checks the stride itself. Returns it in elements, 0 when the
// tensor is contiguous.
template <typename Tensor>
int64_t check_strided_entries(const Tensor& t, const char* name, const char* entries, int device,
                              nb::dlpack::dtype dtype, const char* dtype_text, const std::vector<int64_t>& shape) {
  const bool strided = t.ndim() == shape.size() && !contiguous(t);
  check_tensor(t, name, device, dtype, dtype_text, shape, /*rows_strided=*/strided);
  if (!strided) return 0;
  int64_t expected = 1;  // each entry contiguous: every dimension but the first
  for (size_t i = t.ndim(); i-- > 1;) {
    if (t.shape(i) != 1 && t.stride(i) != expected)
      bad_argument(std::string(name) + " must be contiguous, or strided between " + entries + " only (each of its " +
                   entries + " contiguous)");
    expected *= int64_t(t.shape(i));
  }
  if (t.shape(0) > 1 && t.stride(0) < expected)  // 0 (a broadcast) would read as contiguous; less overlaps
    bad_argument(std::string(name) + " has a stride of " + std::to_string(t.stride(0)) + " between " + entries +
                 ", less than one of its " + entries + " (" + std::to_string(expected) + " elements)");
  return t.shape(0) > 1 ? int64_t(t.stride(0)) : 0;
}

// The StateDType of a merge operand: bf16, fp16 or float32.
template <typename Tensor>
StateDType state_dtype(const Tensor& t, const char* name) {
  if (t.dtype() == dlpack_dtype(DType::kBF16)) return StateDType::kBF16;
  if (t.dtype() == dlpack_dtype(DType::kFP16)) return StateDType::kFP16;
  if (t.dtype() == nb::dtype<float>()) return StateDType::kFP32;
  bad_argument(std::string(name) + " must have dtype bfloat16, float16 or float32");
}

// The shape of a paged K or V pool (ptxattn.hpp's tensor conventions).
std::vector<int64_t> pool_shape(KvLayout layout, int64_t pages, int64_t page_size, int64_t heads, int64_t head_dim) {
  if (layout == KvLayout::kNHD) return {pages, page_size, heads, head_dim};
  return {pages, heads, page_size, head_dim};
}

// The page table's arrays hold exactly what kv_indptr says: kv_indptr[-1]
// page indices and one last-page length per request. The library takes bare
// pointers and reads that many entries, so a shorter array would be read past
// its end. (The library's validation checks that kv_indptr starts at 0 and
// never decreases before it reads kv_indices.)
// (A page table given at run, kv_indices null here, is checked at each run.)
void check_page_table_lengths(const std::vector<int32_t>& kv_indptr, const std::vector<int32_t>* kv_indices,
                              const std::vector<int32_t>& kv_last_page_len) {
  if (kv_indptr.empty()) return;  // refused with the indptr checks
  const int64_t pages = kv_indptr.back();
  if (kv_indices && (pages < 0 || int64_t(kv_indices->size()) != pages))
    bad_argument("kv_indices has " + std::to_string(kv_indices->size()) + " entries, but kv_indptr[-1] = " +
                 std::to_string(pages) + " pages");
  if (kv_last_page_len.size() != kv_indptr.size() - 1)
    bad_argument("kv_last_page_len has " + std::to_string(kv_last_page_len.size()) + " entries, expected one per " +
                 "request (" + std::to_string(kv_indptr.size() - 1) + ")");
}

// An int32 index array on the host or a CUDA device, copied to the host.
std::vector<int32_t> host_int32(const Input& a, const char* name) {
  if (a.dtype() != nb::dtype<int32_t>()) bad_argument(std::string(name) + " must have dtype int32");
  if (a.ndim() != 1) bad_argument(std::string(name) + " must be one-dimensional, has shape " + shape_string(a));
  if (a.shape(0) > 1 && a.stride(0) != 1) bad_argument(std::string(name) + " must be contiguous");
  std::vector<int32_t> host(a.shape(0));
  if (host.empty()) return host;
  if (a.device_type() == nb::device::cpu::value) {
    const int32_t* data = static_cast<const int32_t*>(a.data());
    host.assign(data, data + host.size());
  } else if (a.device_type() == nb::device::cuda::value) {
    const cudaError_t err = cudaMemcpy(host.data(), a.data(), host.size() * sizeof(int32_t), cudaMemcpyDefault);
    if (err != cudaSuccess)
      throw std::runtime_error(std::string("copying ") + name + " to the host: " + cudaGetErrorString(err));
  } else {
    bad_argument(std::string(name) + " must be on the host or a CUDA device");
  }
  return host;
}

int current_device() {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) return -1;
  return device;
}

// Makes `device` current for a scope (the caller's device again after).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) : previous_(current_device()) {
    if (device >= 0 && device != previous_) cudaSetDevice(device);
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

cudaStream_t as_stream(uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

// ---- Plans in callers' workspaces ----

// A plan in a caller's workspace is laid out from the buffer's first byte, so
// a plan into an overlapping buffer (another wrapper's, sharing it)
// overwrites it. The registry holds, for every live plan in a workspace, the
// bytes it occupies; a plan claiming any of them retires the plans there, and
// their runs are refused instead of reading another batch's schedule.
class WorkspaceClaims {
 public:
  static WorkspaceClaims& instance() {
    static WorkspaceClaims claims;
    return claims;
  }

  // Retires every claim overlapping [begin, begin + bytes) on `device`; returns the new claim's token.
  uint64_t claim(int device, uintptr_t begin, size_t bytes) {
    const std::lock_guard<std::mutex> lock(mutex_);
    const uintptr_t end = begin + bytes;
    claims_.erase(std::remove_if(claims_.begin(), claims_.end(),
                                 [&](const Claim& c) { return c.device == device && c.begin < end && begin < c.end; }),
                  claims_.end());
    claims_.push_back({device, begin, end, ++last_token_});
    return last_token_;
  }

  bool holds(uint64_t token) const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return std::any_of(claims_.begin(), claims_.end(), [&](const Claim& c) { return c.token == token; });
  }

  void release(uint64_t token) {
    const std::lock_guard<std::mutex> lock(mutex_);
    claims_.erase(std::remove_if(claims_.begin(), claims_.end(), [&](const Claim& c) { return c.token == token; }),
                  claims_.end());
  }

 private:
  struct Claim {
    int device;
    uintptr_t begin, end;
    uint64_t token;
  };
  mutable std::mutex mutex_;
  std::vector<Claim> claims_;
  uint64_t last_token_ = 0;
};

// ---- Prefill ----

class Prefill {
 public:
  Prefill() = default;
  Prefill(const Prefill&) = delete;
  Prefill& operator=(const Prefill&) = delete;
  ~Prefill() {
    WorkspaceClaims::instance().release(claim_);
    release_staging();
    if (staged_) cudaEventDestroy(staged_);
  }

  // kv_indices: the host page table, copied into the plan; with
  // table_at_run (every run then passes the device table) only checked: a
  // graph plan's host table, which the wrapper copies to its own. workspace: the
  // caller's device buffer, the plan then uploaded on `stream` from pinned
  // staging this object keeps; absent: the plan owns its workspace and
  // copies synchronously. capacity (max requests, max q tokens, max
  // page-table entries at run or ragged rows): a graph plan in `workspace`.
  void plan(const std::string& dtype, int32_t num_qo_heads, int32_t num_kv_heads, int32_t head_dim, bool paged,
            const std::string& kv_layout, int32_t page_size, int32_t num_pages, bool causal, int32_t window_left,
            float logits_soft_cap, float sm_scale, bool return_lse, const std::string& load_path,
            const std::string& schedule, int32_t max_ctas, const std::string& kv_block, int32_t kv_splits,
            const std::string& gqa_packing, int32_t kv_stages, const Input& qo_indptr, const Input& kv_indptr,
            const std::optional<Input>& kv_indices, const std::optional<Input>& kv_last_page_len, bool table_at_run,
            const std::optional<Output>& workspace, const std::optional<std::vector<int64_t>>& capacity,
            uintptr_t stream, int device) {
    PrefillConfig config;
    config.dtype = parse_dtype(dtype);
    config.num_qo_heads = num_qo_heads;
    config.num_kv_heads = num_kv_heads;
    config.head_dim = head_dim;
    config.kv_format = paged ? KvFormat::kPaged : KvFormat::kRagged;
    config.kv_layout = parse_layout(kv_layout);
    config.page_size = page_size;
    config.num_pages = num_pages;
    config.options = {causal, window_left, logits_soft_cap, sm_scale, return_lse};
    config.load_path = parse_load_path(load_path);
    config.schedule = parse_schedule(schedule);
    config.max_ctas = max_ctas;
    config.kv_block = parse_kv_block(kv_block);
    config.kv_splits = kv_splits;
    config.gqa_packing = parse_gqa_packing(gqa_packing);
    config.kv_stages = kv_stages;
    const std::vector<int32_t> qo = host_int32(qo_indptr, "qo_indptr");
    const std::vector<int32_t> kv = host_int32(kv_indptr, "kv_indptr");
    std::vector<int32_t> indices, last_page_len;
    if (paged) {
      if (!kv_last_page_len || (!kv_indices && !table_at_run))
        bad_argument("a paged plan needs kv_indices and kv_last_page_len");
      if (kv_indices) indices = host_int32(*kv_indices, "kv_indices");
      last_page_len = host_int32(*kv_last_page_len, "kv_last_page_len");
    } else if (kv_indices || kv_last_page_len || table_at_run) {
      bad_argument("a ragged plan takes no kv_indices or kv_last_page_len");
    }
    if (qo.size() != kv.size())
      bad_argument("qo_indptr has " + std::to_string(qo.size()) + " entries, kv_indptr " + std::to_string(kv.size()));
    if (qo.empty()) bad_argument("qo_indptr must have num_requests + 1 >= 1 entries");
    if (paged) check_page_table_lengths(kv, kv_indices ? &indices : nullptr, last_page_len);
    const BatchIndices batch{int32_t(qo.size() - 1), qo.data(), kv.data(),
                             paged && !table_at_run ? indices.data() : nullptr,
                             paged ? last_page_len.data() : nullptr};
    if (capacity && !workspace) bad_argument("a graph plan needs a workspace");
    if (capacity && capacity->size() != 3) bad_argument("capacity is (max_requests, max_q_tokens, max_kv_units)");
    BatchIndices checked = batch;  // with the host table, also where the runs read it from the device
    if (paged && kv_indices) checked.kv_indices = indices.data();
    check(validate_batch_indices(config, checked));  // before the device is touched
    const DeviceGuard guard(device);
    if (!workspace) {
      check(plan_prefill(config, batch, plan_));
      WorkspaceClaims::instance().release(claim_);
      claim_ = 0;
    } else {
      PlanCapacity bound;  // what the staging must hold: the graph capacity, else this batch
      if (capacity) {
        bound = {int32_t(std::min<int64_t>((*capacity)[0], INT32_MAX)), (*capacity)[1], 0, 0, (*capacity)[2]};
      } else {
        bound = {batch.num_requests, qo.back(), paged && !table_at_run ? int64_t(indices.size()) : 0, 0, 0};
      }
      WorkspaceSizes sizes;
      check(prefill_workspace_size(config, bound, &sizes));
      ensure_staging(sizes.host_bytes);
      const Output& buffer = *workspace;
      if (buffer.device_type() != nb::device::cuda::value || buffer.device_id() != current_device())
        bad_argument("the workspace must be a CUDA buffer on the plan's device (" + std::to_string(current_device()) +
                     ")");
      if (!contiguous(buffer)) bad_argument("the workspace must be contiguous");
      const PlanWorkspace in{buffer.data(), buffer.nbytes(), staging_, staging_bytes_, as_stream(stream),
                             capacity ? &bound : nullptr};
      check(plan_prefill(config, batch, in, plan_));
      WorkspaceClaims::instance().release(claim_);
      claim_ = WorkspaceClaims::instance().claim(current_device(), reinterpret_cast<uintptr_t>(buffer.data()),
                                                 sizes.device_bytes);
      // The staging is read by the copy just issued: ensure_staging waits for
      // this event before it frees or replaces the buffer.
      if (cudaEventRecord(staged_, as_stream(stream)) != cudaSuccess)
        throw std::runtime_error("recording the plan's upload");
    }
    device_ = current_device();
  }

  void run(const Input& q, const Input& k, const Input& v, const Output& o, const std::optional<Output>& lse,
           const std::optional<Input>& kv_table, uintptr_t stream) const {
    if (!plan_.valid()) bad_argument("run before a successful plan");
    check_workspace_claim();
    const PrefillConfig& c = plan_.config();
    const nb::dlpack::dtype element = dlpack_dtype(c.dtype);
    const int64_t tokens = plan_.num_q_tokens(), hd = c.head_dim;
    const char* type = dtype_name(c.dtype);
    const int64_t q_stride = check_strided_entries(q, "q", "tokens", device_, element, type, {tokens, c.num_qo_heads, hd});
    const int64_t o_stride = check_strided_entries(o, "out", "tokens", device_, element, type, {tokens, c.num_qo_heads, hd});
    const bool paged = c.kv_format == KvFormat::kPaged;
    const int64_t kv_rows = paged ? c.num_pages : k.ndim() == 3 ? int64_t(k.shape(0)) : 0;
    const std::vector<int64_t> kv_shape = paged ? pool_shape(c.kv_layout, c.num_pages, c.page_size, c.num_kv_heads, hd)
                                                : std::vector<int64_t>{kv_rows, c.num_kv_heads, hd};
    const char* entries = paged ? "pages" : "rows";
    const int64_t k_stride = check_strided_entries(k, paged ? "k_cache" : "k", entries, device_, element, type, kv_shape);
    const int64_t v_stride = check_strided_entries(v, paged ? "v_cache" : "v", entries, device_, element, type, kv_shape);
    if (k_stride != v_stride && kv_rows > 1)
      bad_argument(std::string(paged ? "k_cache and v_cache" : "k and v") + " must have one stride between their " +
                   entries + " (" + std::to_string(k_stride) + " and " + std::to_string(v_stride) + " elements)");
    if (c.options.return_lse) {
      if (!lse) bad_argument("the plan returns lse: pass an lse tensor");
      check_tensor(*lse, "lse", device_, nb::dtype<float>(), "float32", {tokens, c.num_qo_heads});
    }
    PrefillTensors tensors{q.data(), k.data(), v.data(), o.data(), lse ? static_cast<float*>(lse->data()) : nullptr,
                           tokens, kv_rows};
    tensors.q_row_stride = q_stride, tensors.o_row_stride = o_stride;
    tensors.kv_stride = k_stride;
    if (kv_table) {
      // The library reads plan_.num_kv_rows() entries from it: the table must hold them.
      check_tensor(*kv_table, "kv_indices", device_, nb::dtype<int32_t>(), "int32",
                   {kv_table->ndim() == 1 ? int64_t(kv_table->shape(0)) : -1});
      if (int64_t(kv_table->shape(0)) < plan_.num_kv_rows())
        bad_argument("kv_indices (the page table at run) has " + std::to_string(kv_table->shape(0)) +
                     " entries, the plan reads " + std::to_string(plan_.num_kv_rows()));
      tensors.kv_indices = static_cast<const int32_t*>(kv_table->data());
    }
    const DeviceGuard guard(device_);
    check(run_prefill(plan_, tensors, as_stream(stream)));
  }

  // The first page-table entry outside the pool that runs met since the
  // plan or the last check (waits for `stream`), or None.
  std::optional<std::string> page_table_error(uintptr_t stream) const {
    if (!plan_.valid()) bad_argument("check before a successful plan");
    check_workspace_claim();
    const DeviceGuard guard(device_);
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(as_stream(stream), &capture) == cudaSuccess && capture != cudaStreamCaptureStatusNone)
      bad_argument("page_table_error() waits for the stream: not while it is being captured");
    const Status status = check_page_table_errors(plan_, as_stream(stream));
    if (status.code == StatusCode::kInvalidArgument) return status.message;  // the entry found
    check(status);
    return std::nullopt;
  }

  int device() const { return device_; }
  const PrefillPlan& planned() const { return plan_; }

 private:
  // A plan in a caller's workspace is still there (no later plan overwrote it).
  void check_workspace_claim() const {
    if (claim_ != 0 && !WorkspaceClaims::instance().holds(claim_))
      bad_argument("this plan's workspace was overwritten by a later plan into an overlapping buffer (another "
                   "wrapper sharing it): plan again, or give each wrapper a buffer of its own");
  }

  // Pinned staging of at least `bytes`, once the upload that last read it is done.
  void ensure_staging(size_t bytes) {
    if (!staged_ && cudaEventCreateWithFlags(&staged_, cudaEventDisableTiming) != cudaSuccess)
      throw std::runtime_error("creating the plan's upload event");
    if (bytes <= staging_bytes_) return;
    release_staging();
    if (cudaHostAlloc(&staging_, bytes, cudaHostAllocDefault) != cudaSuccess) {
      staging_ = nullptr;
      throw std::runtime_error("allocating " + std::to_string(bytes) + " bytes of pinned staging");
    }
    staging_bytes_ = bytes;
  }

  void release_staging() {
    if (staged_) cudaEventSynchronize(staged_);
    if (staging_) cudaFreeHost(staging_);
    staging_ = nullptr, staging_bytes_ = 0;
  }

  PrefillPlan plan_;
  int device_ = -1;
  uint64_t claim_ = 0;  // WorkspaceClaims' token of the plan in a caller's workspace (0: none)
  void* staging_ = nullptr;
  size_t staging_bytes_ = 0;
  cudaEvent_t staged_ = nullptr;  // recorded after each upload from staging_
};

// ---- RoPE ----

RopeConfig rope_config(int32_t rotary_dim, bool interleave, float theta, float rope_scale, bool llama31,
                       float low_freq_factor, float high_freq_factor, int32_t old_context_len) {
  return {rotary_dim, interleave, theta, rope_scale, llama31, low_freq_factor, high_freq_factor, old_context_len};
}

// q/k and their outputs: [tokens, heads, head_dim] of one dtype on one device.
RopeTensors rope_tensors(const Input& q, const Input& k, const Output& q_out, const Output& k_out, int* device) {
  const Input& q_view = q;
  const Input& k_view = k;
  if (q_view.ndim() != 3 || k_view.ndim() != 3)
    bad_argument("q and k must be [num_tokens, num_heads, head_dim]; q has shape " + shape_string(q_view) +
                 ", k " + shape_string(k_view));
  const DType dtype = q_view.dtype() == dlpack_dtype(DType::kBF16) ? DType::kBF16 : DType::kFP16;
  *device = q_view.device_id();
  const int64_t tokens = q_view.shape(0), hd = q_view.shape(2);
  const int64_t qo_heads = q_view.shape(1), kv_heads = k_view.shape(1);
  check_tensor(q, "q", *device, dlpack_dtype(dtype), "bfloat16 or float16", {tokens, qo_heads, hd});
  check_tensor(k, "k", *device, dlpack_dtype(dtype), dtype_name(dtype), {tokens, kv_heads, hd});
  check_tensor(q_out, "q_out", *device, dlpack_dtype(dtype), dtype_name(dtype), {tokens, qo_heads, hd});
  check_tensor(k_out, "k_out", *device, dlpack_dtype(dtype), dtype_name(dtype), {tokens, kv_heads, hd});
  return {dtype, int32_t(hd), int32_t(qo_heads), int32_t(kv_heads), tokens, q.data(), k.data(), q_out.data(),
          k_out.data()};
}

// An int32 device array of `length` entries on `device` (positions, indptr, offsets).
const int32_t* device_int32(const Input& a, const char* name, int device, int64_t length) {
  check_tensor(a, name, device, nb::dtype<int32_t>(), "int32", {length});
  return static_cast<const int32_t*>(a.data());
}

// ---- Append ----

class Append {
 public:
  void plan(const std::string& dtype, int32_t num_kv_heads, int32_t head_dim, const std::string& kv_layout,
            int32_t page_size, int32_t num_pages, const Input& append_indptr, const Input& kv_indptr,
            const Input& kv_indices, const Input& kv_last_page_len, int device) {
    const AppendConfig config{parse_dtype(dtype), num_kv_heads, head_dim, parse_layout(kv_layout), page_size,
                              num_pages};
    const std::vector<int32_t> append = host_int32(append_indptr, "append_indptr");
    const std::vector<int32_t> kv = host_int32(kv_indptr, "kv_indptr");
    const std::vector<int32_t> indices = host_int32(kv_indices, "kv_indices");
    const std::vector<int32_t> last = host_int32(kv_last_page_len, "kv_last_page_len");
    if (append.size() != kv.size() || append.empty())
      bad_argument("append_indptr and kv_indptr must both have num_requests + 1 >= 1 entries; they have " +
                   std::to_string(append.size()) + " and " + std::to_string(kv.size()));
    check_page_table_lengths(kv, &indices, last);
    const AppendIndices batch{int32_t(append.size() - 1), append.data(), kv.data(), indices.data(), last.data()};
    check(validate_append_indices(config, batch));
    const DeviceGuard guard(device);
    check(plan_append_paged_kv(config, batch, plan_));
    device_ = current_device();
  }

  void run(const Input& k_new, const Input& v_new, const Output& k_cache, const Output& v_cache,
           const std::optional<Input>& q_in, const std::optional<Output>& q_out, std::optional<RopeConfig> rope,
           uintptr_t stream) const {
    if (!plan_.valid()) bad_argument("append before a successful plan");
    const AppendConfig& c = plan_.config();
    const nb::dlpack::dtype element = dlpack_dtype(c.dtype);
    const int64_t n = plan_.num_append_tokens(), hd = c.head_dim;
    check_tensor(k_new, "append_key", device_, element, dtype_name(c.dtype), {n, c.num_kv_heads, hd});
    check_tensor(v_new, "append_value", device_, element, dtype_name(c.dtype), {n, c.num_kv_heads, hd});
    const std::vector<int64_t> pool = pool_shape(c.kv_layout, c.num_pages, c.page_size, c.num_kv_heads, hd);
    check_tensor(k_cache, "k_cache", device_, element, dtype_name(c.dtype), pool);
    check_tensor(v_cache, "v_cache", device_, element, dtype_name(c.dtype), pool);
    AppendTensors t{k_new.data(), v_new.data(), k_cache.data(), v_cache.data(), n, c.num_pages};
    if (q_in || q_out) {
      if (!q_in || !q_out) bad_argument("q and q_out go together");
      const int64_t heads = q_in->ndim() == 3 ? int64_t(q_in->shape(1)) : 0;
      check_tensor(*q_in, "q", device_, element, dtype_name(c.dtype), {n, heads, hd});
      check_tensor(*q_out, "q_out", device_, element, dtype_name(c.dtype), {n, heads, hd});
      t.q_in = q_in->data();
      t.q_out = q_out->data();
      t.num_qo_heads = int32_t(heads);
    }
    const DeviceGuard guard(device_);
    check(append_paged_kv_cache(plan_, t, rope ? &*rope : nullptr, as_stream(stream)));
  }

  const AppendPlan& planned() const { return plan_; }

 private:
  AppendPlan plan_;
  int device_ = -1;
};

// Copies the int32 array `source` (host or device) into the start of the
// device array `target`, ordered on `stream` (a graph plan's page table).
void copy_int32(const Output& target, const Input& source, uintptr_t stream) {
  const int64_t n = source.ndim() == 1 ? int64_t(source.shape(0)) : -1;
  if (source.dtype() != nb::dtype<int32_t>() || n < 0 || (n > 1 && source.stride(0) != 1))
    bad_argument("kv_indices must be a contiguous one-dimensional int32 array");
  if (source.device_type() != nb::device::cpu::value && source.device_type() != nb::device::cuda::value)
    bad_argument("kv_indices must be on the host or a CUDA device");
  if (n > int64_t(target.shape(0)))
    bad_argument("kv_indices has " + std::to_string(n) + " entries, more than the plan's max_kv_units (" +
                 std::to_string(target.shape(0)) + ")");
  if (n == 0) return;
  const DeviceGuard guard(target.device_id());
  const cudaError_t err =
      cudaMemcpyAsync(target.data(), source.data(), size_t(n) * sizeof(int32_t), cudaMemcpyDefault, as_stream(stream));
  if (err != cudaSuccess) throw std::runtime_error(std::string("copying kv_indices: ") + cudaGetErrorString(err));
}

}  // namespace

NB_MODULE(_ptxattn, m) {
  m.doc() = "ptxattn's C++ API over DLPack tensors; use the ptxattn package, not this module.";
  m.attr("__version__") = ptxattn_version_string();
  m.def("bounded_waits_built", &bounded_waits_built);
  m.def("copy_int32", &copy_int32, nb::arg("target"), nb::arg("source"), nb::arg("stream"));

  nb::class_<RopeConfig>(m, "RopeConfig")
      .def(nb::init<>())
      .def("__init__",
           [](RopeConfig* self, int32_t rotary_dim, bool interleave, float theta, float rope_scale, bool llama31,
              float low_freq_factor, float high_freq_factor, int32_t old_context_len) {
             new (self) RopeConfig(rope_config(rotary_dim, interleave, theta, rope_scale, llama31, low_freq_factor,
                                               high_freq_factor, old_context_len));
           },
           nb::arg("rotary_dim"), nb::arg("interleave"), nb::arg("theta"), nb::arg("rope_scale"), nb::arg("llama31"),
           nb::arg("low_freq_factor"), nb::arg("high_freq_factor"), nb::arg("old_context_len"))
      .def_rw("rotary_dim", &RopeConfig::rotary_dim)
      .def_rw("interleave", &RopeConfig::interleave);

  nb::class_<Prefill>(m, "Prefill")
      .def(nb::init<>())
      .def("plan", &Prefill::plan, nb::arg("dtype"), nb::arg("num_qo_heads"), nb::arg("num_kv_heads"),
           nb::arg("head_dim"), nb::arg("paged"), nb::arg("kv_layout"), nb::arg("page_size"), nb::arg("num_pages"),
           nb::arg("causal"), nb::arg("window_left"), nb::arg("logits_soft_cap"), nb::arg("sm_scale"),
           nb::arg("return_lse"), nb::arg("load_path"), nb::arg("schedule"), nb::arg("max_ctas"),
           nb::arg("kv_block"), nb::arg("kv_splits"), nb::arg("gqa_packing"), nb::arg("kv_stages"), nb::arg("qo_indptr"),
           nb::arg("kv_indptr"), nb::arg("kv_indices").none(), nb::arg("kv_last_page_len").none(),
           nb::arg("table_at_run"), nb::arg("workspace").none(), nb::arg("capacity").none(), nb::arg("stream"),
           nb::arg("device"))
      .def("run", &Prefill::run, nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"), nb::arg("lse").none(),
           nb::arg("kv_table").none(), nb::arg("stream"))
      .def("page_table_error", &Prefill::page_table_error, nb::arg("stream"))
      .def_prop_ro("chosen_kv_splits", [](const Prefill& p) { return p.planned().chosen_kv_splits(); })
      .def_prop_ro("chosen_tile_heads", [](const Prefill& p) { return p.planned().chosen_tile_heads(); })
      .def_prop_ro("device", &Prefill::device)
      .def_prop_ro("valid", [](const Prefill& p) { return p.planned().valid(); })
      .def_prop_ro("num_q_tokens", [](const Prefill& p) { return p.planned().num_q_tokens(); })
      .def_prop_ro("num_ctas", [](const Prefill& p) { return p.planned().num_ctas(); })
      .def_prop_ro("chosen_block_kv", [](const Prefill& p) { return p.planned().chosen_block_kv(); })
      .def_prop_ro("chosen_kv_stages", [](const Prefill& p) { return p.planned().chosen_kv_stages(); })
      .def_prop_ro("chosen_load_path",
                   [](const Prefill& p) { return p.planned().chosen_load_path() == KvLoadPath::kTma ? "tma" : "gather"; })
      .def_prop_ro("chosen_schedule", [](const Prefill& p) {
        const WorkSchedule s = p.planned().chosen_schedule();
        return s == WorkSchedule::kPersistent ? "persistent" : s == WorkSchedule::kDynamic ? "dynamic" : "one_item_per_cta";
      });

  nb::class_<Append>(m, "Append")
      .def(nb::init<>())
      .def("plan", &Append::plan, nb::arg("dtype"), nb::arg("num_kv_heads"), nb::arg("head_dim"),
           nb::arg("kv_layout"), nb::arg("page_size"), nb::arg("num_pages"), nb::arg("append_indptr"),
           nb::arg("kv_indptr"), nb::arg("kv_indices"), nb::arg("kv_last_page_len"), nb::arg("device"))
      .def("run", &Append::run, nb::arg("append_key"), nb::arg("append_value"), nb::arg("k_cache"),
           nb::arg("v_cache"), nb::arg("q").none(), nb::arg("q_out").none(), nb::arg("rope").none(),
           nb::arg("stream"))
      .def_prop_ro("num_append_tokens", [](const Append& a) { return a.planned().num_append_tokens(); });

  // Merging attention states (merge_states / merge_state in ptxattn.hpp):
  // v in bf16, fp16 or float32, lse float32 (natural log); shapes checked
  // here, the rest by the library.
  m.def(
      "merge_states",
      [](const Input& v, const Input& lse, const Output& v_out, const std::optional<Output>& lse_out,
         uintptr_t stream) {
        const Input& view = v;
        if (view.ndim() != 4) bad_argument("v must be [num_tokens, num_states, num_heads, head_dim]");
        const int64_t tokens = view.shape(0), states = view.shape(1), heads = view.shape(2), d = view.shape(3);
        const int device = view.device_id();
        MergeStatesTensors t;
        t.v_dtype = state_dtype(v, "v");
        t.out_dtype = state_dtype(v_out, "v_out");
        check_tensor(v, "v", device, v.dtype(), "its own", {tokens, states, heads, d});
        check_tensor(lse, "s", device, nb::dtype<float>(), "float32", {tokens, states, heads});
        check_tensor(v_out, "v_out", device, v_out.dtype(), "its own", {tokens, heads, d});
        if (lse_out) check_tensor(*lse_out, "s_out", device, nb::dtype<float>(), "float32", {tokens, heads});
        t.num_states = int32_t(std::min<int64_t>(states, INT32_MAX));
        t.num_heads = int32_t(std::min<int64_t>(heads, INT32_MAX));
        t.head_dim = int32_t(std::min<int64_t>(d, INT32_MAX));
        t.num_tokens = tokens;
        t.v = v.data(), t.lse = static_cast<const float*>(lse.data());
        t.v_out = v_out.data(), t.lse_out = lse_out ? static_cast<float*>(lse_out->data()) : nullptr;
        const DeviceGuard guard(device);
        check(merge_states(t, as_stream(stream)));
      },
      nb::arg("v"), nb::arg("s"), nb::arg("v_out"), nb::arg("s_out").none(), nb::arg("stream"));

  m.def(
      "merge_state",
      [](const Input& v_a, const Input& s_a, const Input& v_b, const Input& s_b, const Output& v_out,
         const std::optional<Output>& s_out, uintptr_t stream) {
        const Input& view = v_a;
        if (view.ndim() != 3) bad_argument("v_a must be [num_tokens, num_heads, head_dim]");
        const int64_t tokens = view.shape(0), heads = view.shape(1), d = view.shape(2);
        const int device = view.device_id();
        MergeStateTensors t;
        t.v_dtype = state_dtype(v_a, "v_a");
        t.out_dtype = state_dtype(v_out, "v_out");
        check_tensor(v_a, "v_a", device, v_a.dtype(), "its own", {tokens, heads, d});
        check_tensor(v_b, "v_b", device, v_a.dtype(), "v_a's", {tokens, heads, d});
        check_tensor(s_a, "s_a", device, nb::dtype<float>(), "float32", {tokens, heads});
        check_tensor(s_b, "s_b", device, nb::dtype<float>(), "float32", {tokens, heads});
        check_tensor(v_out, "v_out", device, v_out.dtype(), "its own", {tokens, heads, d});
        if (s_out) check_tensor(*s_out, "s_out", device, nb::dtype<float>(), "float32", {tokens, heads});
        t.num_heads = int32_t(std::min<int64_t>(heads, INT32_MAX));
        t.head_dim = int32_t(std::min<int64_t>(d, INT32_MAX));
        t.num_tokens = tokens;
        t.v_a = v_a.data(), t.lse_a = static_cast<const float*>(s_a.data());
        t.v_b = v_b.data(), t.lse_b = static_cast<const float*>(s_b.data());
        t.v_out = v_out.data(), t.lse_out = s_out ? static_cast<float*>(s_out->data()) : nullptr;
        const DeviceGuard guard(device);
        check(merge_state(t, as_stream(stream)));
      },
      nb::arg("v_a"), nb::arg("s_a"), nb::arg("v_b"), nb::arg("s_b"), nb::arg("v_out"), nb::arg("s_out").none(),
      nb::arg("stream"));

  m.def(
      "build_rope_cos_sin_cache",
      [](const Output& cache, int32_t max_position, const RopeConfig& rope, uintptr_t stream) {
        const int device = cache.device_id();
        check_tensor(cache, "out", device, nb::dtype<float>(), "float32", {max_position, rope.rotary_dim});
        const DeviceGuard guard(device);
        check(build_rope_cos_sin_cache(static_cast<float*>(cache.data()), max_position, rope.rotary_dim, rope,
                                       as_stream(stream)));
      },
      nb::arg("out"), nb::arg("max_position"), nb::arg("rope"), nb::arg("stream"));

  m.def(
      "apply_rope",
      [](const Input& q, const Input& k, const Output& q_out, const Output& k_out, const std::optional<Input>& pos_ids,
         const std::optional<Input>& indptr, const std::optional<Input>& offsets, const RopeConfig& rope,
         uintptr_t stream) {
        int device = -1;
        const RopeTensors t = rope_tensors(q, k, q_out, k_out, &device);
        RopePositions positions;
        if (pos_ids) {
          positions.pos_ids = device_int32(*pos_ids, "pos_ids", device, t.num_tokens);
        } else {
          if (!indptr || !offsets) bad_argument("give pos_ids, or indptr and offsets");
          const int64_t requests = offsets->ndim() == 1 ? int64_t(offsets->shape(0)) : -1;
          positions.num_requests = int32_t(requests);
          positions.indptr = device_int32(*indptr, "indptr", device, requests + 1);
          positions.offsets = device_int32(*offsets, "offsets", device, requests);
        }
        const DeviceGuard guard(device);
        check(apply_rope(t, positions, rope, as_stream(stream)));
      },
      nb::arg("q"), nb::arg("k"), nb::arg("q_out"), nb::arg("k_out"), nb::arg("pos_ids").none(),
      nb::arg("indptr").none(), nb::arg("offsets").none(), nb::arg("rope"), nb::arg("stream"));

  m.def(
      "apply_rope_with_cos_sin_cache",
      [](const Input& q, const Input& k, const Output& q_out, const Output& k_out, const Input& pos_ids,
         const Input& cache, bool interleave, uintptr_t stream) {
        int device = -1;
        const RopeTensors t = rope_tensors(q, k, q_out, k_out, &device);
        const Input& cache_view = cache;
        if (cache_view.ndim() != 2) bad_argument("cos_sin_cache must be [max_position, rotary_dim]");
        const int64_t max_position = cache_view.shape(0), rotary_dim = cache_view.shape(1);
        check_tensor(cache, "cos_sin_cache", device, nb::dtype<float>(), "float32", {max_position, rotary_dim});
        const int32_t* positions = device_int32(pos_ids, "positions", device, t.num_tokens);
        const DeviceGuard guard(device);
        check(apply_rope_with_cos_sin_cache(t, positions, static_cast<const float*>(cache.data()),
                                            int32_t(max_position), int32_t(rotary_dim), interleave,
                                            as_stream(stream)));
      },
      nb::arg("q"), nb::arg("k"), nb::arg("q_out"), nb::arg("k_out"), nb::arg("positions"),
      nb::arg("cos_sin_cache"), nb::arg("interleave"), nb::arg("stream"));
}
