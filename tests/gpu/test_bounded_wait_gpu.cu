// Bounded waits (build option bounded_waits): a wait nobody ends must trap
// and leave a record that names the block, thread, barrier and parity, read
// back through ptxattn::last_wait_timeout after the trap.
//
// A trap leaves the process's CUDA context unusable, so each scenario runs in
// a child process: this executable again (/proc/self/exe) with
// PTXATTN_TEST_CHILD=<scenario> (bounded_wait_child.hpp). The child launches
// hang_kernel, whose waits time out after kTestBudgetCycles (~0.5 ms, not the
// library's ~2 s), and prints the record; the parent checks the child failed
// its synchronisation and checks every field of the printed record. Each
// checker is first shown to reject a record with any one field wrong.
// The "prefill-*" scenarios check the prefill kernel's handler
// (record_prefill_wait_timeout): given one of the kernel's barriers in its
// shared storage, it must record that barrier's name, stage and address.
// In builds without bounded waits gpu_main.cpp skips these tests visibly.
#include <cuda_runtime_api.h>
#include <poll.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ptx/mbarrier.cuh"
#include "ptx/smem.cuh"
#include "ptxattn/ptxattn.hpp"
#include "src/prefill_pipeline.cuh"
#include "src/wait_timeout.cuh"
#include "tests/gpu/bounded_wait_child.hpp"

extern char** environ;  // <unistd.h>, POSIX

namespace ptxattn::testing {
namespace {

using detail::WaitBarrier;
using detail::WaitKernel;
using detail::WaitTimeoutRecord;

constexpr int kTestBarriers = 4;
constexpr long long kTestBudgetCycles = 1LL << 20;  // ~0.5 ms at 1.98 GHz

// Scenario "one": only this thread waits, on a barrier left in phase 1.
constexpr int kOneBlocks = 3, kOneThreads = 64;
constexpr unsigned kOneBlock = 2, kOneThread = 37, kOneBarrier = 3;
// Scenario "race": every thread of every block waits, on barrier thread % 4,
// and all time out within the same microseconds: one record, consistent.
constexpr int kRaceBlocks = 16, kRaceThreads = 128;

// Barriers 1 and 3 get one arrival (count 1: phase 0 completes, phase 1
// runs), 0 and 2 none; nobody arrives again, so a wait for parity b & 1 on
// barrier b never completes. Thread 0 of every block writes the barriers'
// shared address to smem_base (host-mapped, readable after the trap).
// hang_block < 0: every thread waits on barrier threadIdx.x % 4.
__global__ void hang_kernel(WaitTimeoutRecord* record, volatile uint32_t* smem_base, int hang_block, int hang_thread,
                            int hang_barrier) {
  __shared__ uint64_t bars[kTestBarriers];
  if (threadIdx.x == 0) {
    for (int b = 0; b < kTestBarriers; ++b) ptx::mbarrier_init(&bars[b], 1);
    ptx::mbarrier_arrive(&bars[1]);
    ptx::mbarrier_arrive(&bars[3]);
    *smem_base = ptx::smem_u32(bars);
    __threadfence_system();
  }
  __syncthreads();
  const bool race = hang_block < 0;
  if (!race && (int(blockIdx.x) != hang_block || int(threadIdx.x) != hang_thread)) return;
  const int b = race ? int(threadIdx.x) % kTestBarriers : hang_barrier;
  const uint32_t parity = uint32_t(b) & 1u;
  ptx::mbarrier_wait_parity<kTestBudgetCycles>(&bars[b], parity, [&] {
    detail::record_wait_timeout(record, WaitKernel::kTest, 0, WaitBarrier::kTest, uint32_t(b), &bars[b], parity);
  });
}

// Scenarios "prefill-*": the prefill kernel's shared storage (head_dim 64,
// gather: 4 stages per ring) and its timeout handler, called on one barrier.
using NamingTraits = detail::PrefillTraits<64, ptx::MmaType::kBF16, detail::LoadPath::kGather>;
using NamingStorage = detail::PrefillSharedStorage<NamingTraits>;

struct PrefillBarrierCase {
  const char* mode;
  WaitBarrier barrier;  // kUnknown: an address in the storage that is no barrier (Q's tile)
  uint32_t stage;
  const char* printed;  // the name ptxattn::last_wait_timeout gives it
  size_t offset;        // the barrier's offset in the storage
};
const PrefillBarrierCase kPrefillBarrierCases[] = {
    {"prefill-q_full", WaitBarrier::kQFull, 0, "q_full", offsetof(NamingStorage, q_full)},
    {"prefill-k_full-0", WaitBarrier::kKFull, 0, "k_full[0]", offsetof(NamingStorage, k_full)},
    {"prefill-v_full-3", WaitBarrier::kVFull, 3, "v_full[3]", offsetof(NamingStorage, v_full) + 3 * 8},
    {"prefill-k_empty-2", WaitBarrier::kKEmpty, 2, "k_empty[2]", offsetof(NamingStorage, k_empty) + 2 * 8},
    {"prefill-v_empty-1", WaitBarrier::kVEmpty, 1, "v_empty[1]", offsetof(NamingStorage, v_empty) + 1 * 8},
    {"prefill-item_full-1", WaitBarrier::kItemFull, 1, "item_full[1]", offsetof(NamingStorage, item_full) + 1 * 8},
    {"prefill-item_empty-0", WaitBarrier::kItemEmpty, 0, "item_empty[0]", offsetof(NamingStorage, item_empty)},
    {"prefill-unknown", WaitBarrier::kUnknown, 0, "unknown", offsetof(NamingStorage, q)},
};
static_assert(NamingTraits::kStages == 4, "the cases name stages 0..3");

// One thread hands one barrier of the storage (or Q's tile, for kUnknown)
// to the prefill kernel's timeout handler, which records and traps; first
// it writes the storage's shared address to storage_base (host-mapped).
__global__ void name_prefill_barrier_kernel(detail::PrefillParams p, WaitBarrier barrier, uint32_t stage,
                                            volatile uint32_t* storage_base) {
  extern __shared__ uint8_t smem_raw[];
  auto& s = *reinterpret_cast<NamingStorage*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const uint64_t* bar = barrier == WaitBarrier::kQFull    ? &s.q_full
                        : barrier == WaitBarrier::kKFull  ? &s.k_full[stage]
                        : barrier == WaitBarrier::kVFull  ? &s.v_full[stage]
                        : barrier == WaitBarrier::kKEmpty ? &s.k_empty[stage]
                        : barrier == WaitBarrier::kVEmpty ? &s.v_empty[stage]
                        : barrier == WaitBarrier::kItemFull  ? &s.item_full[stage]
                        : barrier == WaitBarrier::kItemEmpty ? &s.item_empty[stage]
                                                          : reinterpret_cast<const uint64_t*>(s.q);
  *storage_base = ptx::smem_u32(&s);
  __threadfence_system();
  detail::record_prefill_wait_timeout<NamingTraits>(s, p, bar, 1);
}

// ---------------------------------------------------------------------------
// The record as the child prints it, and the checks of the parent
// ---------------------------------------------------------------------------

struct PrintedRecord {
  std::string kernel;
  unsigned block = 0, thread = 0;
  std::string barrier;
  unsigned parity = 0, smem = 0, smem_base = 0;
};

constexpr const char* kRecordFormat = "record: kernel=%s block=%u thread=%u barrier=%s parity=%u smem=0x%x base=0x%x\n";

bool parse_record(const std::string& output, PrintedRecord* r) {
  const size_t at = output.find("record: ");
  if (at == std::string::npos) return false;
  char kernel[64] = {}, barrier[64] = {};
  const int n = std::sscanf(output.c_str() + at, "record: kernel=%63s block=%u thread=%u barrier=%63s parity=%u smem=0x%x base=0x%x",
                            kernel, &r->block, &r->thread, barrier, &r->parity, &r->smem, &r->smem_base);
  r->kernel = kernel, r->barrier = barrier;
  return n == 7;
}

// What is wrong with a record of scenario "one" (empty: nothing).
std::vector<std::string> one_mismatches(const PrintedRecord& r) {
  std::vector<std::string> bad;
  if (r.kernel != "test") bad.push_back("kernel " + r.kernel + ", want test");
  if (r.block != kOneBlock) bad.push_back("block " + std::to_string(r.block) + ", want " + std::to_string(kOneBlock));
  if (r.thread != kOneThread)
    bad.push_back("thread " + std::to_string(r.thread) + ", want " + std::to_string(kOneThread));
  const std::string barrier = "test[" + std::to_string(kOneBarrier) + "]";
  if (r.barrier != barrier) bad.push_back("barrier " + r.barrier + ", want " + barrier);
  if (r.parity != (kOneBarrier & 1u)) bad.push_back("parity " + std::to_string(r.parity));
  if (r.smem != r.smem_base + 8 * kOneBarrier) bad.push_back("smem address not that of barrier " + barrier);
  return bad;
}

// What is wrong with a record of scenario "race": any waiter may have won,
// but all fields must come from that one waiter.
std::vector<std::string> race_mismatches(const PrintedRecord& r) {
  std::vector<std::string> bad;
  if (r.kernel != "test") bad.push_back("kernel " + r.kernel + ", want test");
  if (r.block >= unsigned(kRaceBlocks)) bad.push_back("block " + std::to_string(r.block) + " outside the grid");
  if (r.thread >= unsigned(kRaceThreads)) bad.push_back("thread " + std::to_string(r.thread) + " outside the block");
  const unsigned b = r.thread % kTestBarriers;
  const std::string barrier = "test[" + std::to_string(b) + "]";
  if (r.barrier != barrier) bad.push_back("barrier " + r.barrier + ", but thread " + std::to_string(r.thread) + " waits on " + barrier);
  if (r.parity != (b & 1u)) bad.push_back("parity " + std::to_string(r.parity) + ", want " + std::to_string(b & 1u));
  if (r.smem != r.smem_base + 8 * b) bad.push_back("smem address not that of " + barrier);
  return bad;
}

// Each checker accepts `good` and rejects it with any one field changed.
template <class Check>
void require_checker_rejects_each_wrong_field(Check check, const PrintedRecord& good) {
  REQUIRE(check(good).empty());
  std::vector<PrintedRecord> wrong(6, good);
  wrong[0].kernel = "prefill";
  wrong[1].block = good.block + kRaceBlocks;
  wrong[2].thread = good.thread + 1;
  wrong[3].barrier = "test[" + std::to_string((good.smem - good.smem_base) / 8 + 1) + "]";
  wrong[4].parity = good.parity ^ 1u;
  wrong[5].smem = good.smem + 8;
  for (size_t i = 0; i < wrong.size(); ++i) {
    INFO("field " << i << " changed");
    CHECK_FALSE(check(wrong[i]).empty());
  }
}

// ---------------------------------------------------------------------------
// Running the child
// ---------------------------------------------------------------------------

struct ChildRun {
  int exit_code = -1;  // 128 + signal when killed
  std::string output;  // stdout and stderr
  bool timed_out = false;
};

// Runs this executable with PTXATTN_TEST_CHILD=mode; kills it after timeout_s.
ChildRun run_child(const char* mode, int timeout_s = 60) {
  ChildRun run;
  char exe[4096] = {};
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  REQUIRE(len > 0);
  // The child's environment, made before fork: between fork and exec only
  // async-signal-safe calls (the CUDA runtime's threads may hold locks).
  const std::string child_var = std::string(kTestChildEnv) + "=" + mode;
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, kTestChildEnv, std::strlen(kTestChildEnv)) != 0) envp.push_back(*e);
  envp.push_back(const_cast<char*>(child_var.c_str()));
  envp.push_back(nullptr);
  char* const argv[] = {exe, nullptr};
  int out[2];
  REQUIRE(pipe(out) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(out[1], STDERR_FILENO);
    close(out[0]);
    close(out[1]);
    execve(exe, argv, envp.data());
    _exit(127);
  }
  close(out[1]);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  char buffer[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      run.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, int(left.count())) <= 0) continue;
    const ssize_t n = read(out[0], buffer, sizeof(buffer));
    if (n <= 0) break;
    run.output.append(buffer, size_t(n));
  }
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return run;
}

// Runs scenario `mode` in a child and returns its record (REQUIREs that the
// child's kernel failed and a record was printed).
PrintedRecord record_of_child(const char* mode) {
  REQUIRE(bounded_waits_built());  // gpu_main.cpp skips these tests in other builds
  const ChildRun run = run_child(mode);
  INFO("child (" << mode << ") exit code " << run.exit_code << ", output:\n" << run.output);
  REQUIRE_FALSE(run.timed_out);
  REQUIRE(run.exit_code == 0);
  REQUIRE(run.output.find("sync: cudaSuccess") == std::string::npos);
  PrintedRecord r;
  REQUIRE(parse_record(run.output, &r));
  return r;
}

TEST_CASE("bounded wait: a wait nobody ends traps and records block, thread, barrier and parity (child process)",
          "[gpu][bounded-wait]") {
  PrintedRecord good{"test", kOneBlock, kOneThread, "test[3]", 1, 0x418, 0x400};
  require_checker_rejects_each_wrong_field(one_mismatches, good);

  const PrintedRecord r = record_of_child("one");
  const std::vector<std::string> bad = one_mismatches(r);
  for (const std::string& b : bad) UNSCOPED_INFO(b);
  CHECK(bad.empty());
}

TEST_CASE("bounded wait: 2048 waits timing out together leave one consistent record (child process)",
          "[gpu][bounded-wait]") {
  PrintedRecord good{"test", 5, 70, "test[2]", 0, 0x410, 0x400};
  require_checker_rejects_each_wrong_field(race_mismatches, good);

  const PrintedRecord r = record_of_child("race");
  const std::vector<std::string> bad = race_mismatches(r);
  for (const std::string& b : bad) UNSCOPED_INFO(b);
  CHECK(bad.empty());
}

// What is wrong with a record of scenario `c` (empty: nothing).
std::vector<std::string> prefill_mismatches(const PrefillBarrierCase& c, const PrintedRecord& r) {
  std::vector<std::string> bad;
  const std::string kernel = "prefill(head_dim_64,bf16,gather,KV_block_128)";
  if (r.kernel != kernel) bad.push_back("kernel " + r.kernel + ", want " + kernel);
  if (r.block != 0) bad.push_back("block " + std::to_string(r.block) + ", want 0");
  if (r.thread != 0) bad.push_back("thread " + std::to_string(r.thread) + ", want 0");
  if (r.barrier != c.printed) bad.push_back("barrier " + r.barrier + ", want " + c.printed);
  if (r.parity != 1) bad.push_back("parity " + std::to_string(r.parity) + ", want 1");
  if (r.smem != r.smem_base + c.offset) bad.push_back("smem address not that of " + std::string(c.printed));
  return bad;
}

TEST_CASE("bounded wait: the prefill kernel's handler names each of its barriers (child processes)",
          "[gpu][bounded-wait]") {
  for (const PrefillBarrierCase& c : kPrefillBarrierCases) {
    INFO("scenario " << c.mode);
    const auto check = [&](const PrintedRecord& r) { return prefill_mismatches(c, r); };
    const PrintedRecord good{"prefill(head_dim_64,bf16,gather,KV_block_128)", 0, 0, c.printed, 1,
                             0x400 + unsigned(c.offset), 0x400};
    require_checker_rejects_each_wrong_field(check, good);
    const std::vector<std::string> bad = check(record_of_child(c.mode));
    for (const std::string& b : bad) UNSCOPED_INFO(b);
    CHECK(bad.empty());
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// The child (gpu_main.cpp calls this when PTXATTN_TEST_CHILD is set)
// ---------------------------------------------------------------------------

int bounded_wait_child_main(const char* mode) {
  enum ExitCode { kRecorded = 0, kUsage = 2, kNotBuilt = 3, kSetupFailed = 4, kNoTimeout = 5, kNoRecord = 6 };
  const bool one = std::strcmp(mode, "one") == 0;
  const PrefillBarrierCase* prefill = nullptr;
  for (const PrefillBarrierCase& c : kPrefillBarrierCases)
    if (std::strcmp(mode, c.mode) == 0) prefill = &c;
  if (!one && prefill == nullptr && std::strcmp(mode, "race") != 0) {
    std::printf("child: unknown scenario '%s' (one, race, prefill-*)\n", mode);
    return kUsage;
  }
  if (!bounded_waits_built()) {
    std::printf("child: this build has no bounded waits\n");
    return kNotBuilt;
  }
  WaitTimeoutRecord* record = nullptr;
  void* smem_base = nullptr;
  cudaError_t err = detail::current_device_wait_timeout_record(&record);
  if (err == cudaSuccess) err = cudaHostAlloc(&smem_base, sizeof(uint32_t), cudaHostAllocMapped);
  if (err != cudaSuccess) {
    std::printf("child: setup failed: %s\n", cudaGetErrorName(err));
    return kSetupFailed;
  }
  *static_cast<volatile uint32_t*>(smem_base) = 0;
  void* smem_base_device = nullptr;
  if ((err = cudaHostGetDevicePointer(&smem_base_device, smem_base, 0)) != cudaSuccess) {
    std::printf("child: setup failed: %s\n", cudaGetErrorName(err));
    return kSetupFailed;
  }
  auto* base = static_cast<volatile uint32_t*>(smem_base_device);
  if (prefill != nullptr) {
    constexpr size_t kSmem = detail::prefill_smem_bytes<NamingTraits>();
    if ((err = cudaFuncSetAttribute(name_prefill_barrier_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(kSmem))) != cudaSuccess) {
      std::printf("child: setup failed: %s\n", cudaGetErrorName(err));
      return kSetupFailed;
    }
    detail::PrefillParams p{};
    p.wait_timeout = record;
    name_prefill_barrier_kernel<<<1, 1, kSmem>>>(p, prefill->barrier, prefill->stage, base);
  } else if (one)
    hang_kernel<<<kOneBlocks, kOneThreads>>>(record, base, kOneBlock, kOneThread, kOneBarrier);
  else
    hang_kernel<<<kRaceBlocks, kRaceThreads>>>(record, base, -1, 0, 0);
  const cudaError_t launch = cudaGetLastError();
  const cudaError_t sync = cudaDeviceSynchronize();
  std::printf("launch: %s\nsync: %s\n", cudaGetErrorName(launch), cudaGetErrorName(sync));
  WaitTimeout w;
  if (!last_wait_timeout(&w)) {
    std::printf("child: no wait timeout recorded\n");
    return sync == cudaSuccess ? kNoTimeout : kNoRecord;
  }
  std::printf("message: %s\n", w.message.c_str());
  // One word for the parser: "prefill (head_dim 64, bf16, gather, KV block 128)" ->
  // "prefill(head_dim_64,bf16,gather,KV_block_128)".
  std::string kernel = w.kernel;
  std::string::size_type at;
  while ((at = kernel.find(", ")) != std::string::npos) kernel.erase(at + 1, 1);
  while ((at = kernel.find(" (")) != std::string::npos) kernel.erase(at, 1);
  for (char& ch : kernel)
    if (ch == ' ') ch = '_';
  std::printf(kRecordFormat, kernel.c_str(), w.block, w.thread, w.barrier.c_str(), w.parity, w.smem_address,
              *static_cast<volatile uint32_t*>(smem_base));
  return sync == cudaSuccess ? kNoTimeout : kRecorded;
}

}  // namespace ptxattn::testing
