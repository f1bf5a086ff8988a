#include "perf_memory.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/strip.h>

#ifdef GANGWAY_PERF_CUDA
#include <cuda_runtime_api.h>
#endif

namespace gangway::bench {

namespace {

constexpr std::size_t kAlignment = 256;

std::string cpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "model name")) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
  }
  return "host CPU";
}

class HostMemory final : public Memory {
 public:
  comm::MemoryKind kind() const override { return comm::MemoryKind::kHost; }
  absl::StatusOr<void*> allocate(std::size_t bytes) override {
    const std::size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
    if (p == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes"));
    }
    return p;
  }
  void release(void* p) override { std::free(p); }
  absl::Status toDevice(void* dst, const void* host_src, std::size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, host_src, bytes);
    return absl::OkStatus();
  }
  absl::Status toHost(void* host_dst, const void* src, std::size_t bytes) override {
    if (bytes > 0) std::memcpy(host_dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status copy(void* dst, const void* src, std::size_t bytes) override {
    if (bytes > 0 && dst != src) std::memmove(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status zero(void* dst, std::size_t bytes) override {
    if (bytes > 0) std::memset(dst, 0, bytes);
    return absl::OkStatus();
  }
  int deviceIndex(int local_rank) const override { return local_rank; }
  std::string deviceId() const override { return "host"; }
  std::string deviceName() const override { return cpuModelName(); }
};

#ifdef GANGWAY_PERF_CUDA

absl::Status cudaStatus(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}

absl::Status deviceIdle() { return cudaStatus(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

// The result of a call made on an idle device, once the device is idle again (see CudaMemory).
absl::Status synchronized(cudaError_t e, const char* what) {
  if (absl::Status s = cudaStatus(e, what); !s.ok()) return s;
  return deviceIdle();
}

// Every call waits for the whole device before and after: the nccl backend runs on its own
// non-blocking stream, which the default stream does not order against.
class CudaMemory final : public Memory {
 public:
  comm::MemoryKind kind() const override { return comm::MemoryKind::kCuda; }
  absl::StatusOr<void*> allocate(std::size_t bytes) override {
    void* p = nullptr;
    if (absl::Status s = cudaStatus(cudaMalloc(&p, bytes == 0 ? kAlignment : bytes), "cudaMalloc");
        !s.ok()) {
      return s;
    }
    return p;
  }
  void release(void* p) override {
    cudaDeviceSynchronize();
    cudaFree(p);
  }
  absl::Status toDevice(void* dst, const void* host_src, std::size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    if (absl::Status s = deviceIdle(); !s.ok()) return s;
    return synchronized(cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  absl::Status toHost(void* host_dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    if (absl::Status s = deviceIdle(); !s.ok()) return s;
    return synchronized(cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
  }
  absl::Status copy(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0 || dst == src) return absl::OkStatus();
    if (absl::Status s = deviceIdle(); !s.ok()) return s;
    return synchronized(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy");
  }
  absl::Status zero(void* dst, std::size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    if (absl::Status s = deviceIdle(); !s.ok()) return s;
    return synchronized(cudaMemset(dst, 0, bytes), "cudaMemset");
  }
  int deviceIndex(int /*local_rank*/) const override {
    int device = 0;
    cudaGetDevice(&device);
    return device;
  }
  std::string deviceId() const override {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, deviceIndex(0)) != cudaSuccess) return "0x00";
    return absl::StrFormat("0x%02x", prop.pciBusID);
  }
  std::string deviceName() const override {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, deviceIndex(0)) != cudaSuccess) return "CUDA device";
    return prop.name;
  }
};

#endif

}  // namespace

std::unique_ptr<Memory> makeHostMemory() { return std::make_unique<HostMemory>(); }

absl::StatusOr<std::unique_ptr<Memory>> makeCudaMemory() {
#ifdef GANGWAY_PERF_CUDA
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    return absl::FailedPreconditionError("cuda memory: no CUDA device found");
  }
  return std::make_unique<CudaMemory>();
#else
  return absl::FailedPreconditionError("cuda memory: this build has no CUDA");
#endif
}

absl::StatusOr<std::unique_ptr<Memory>> makeMemory(comm::MemoryKind kind) {
  if (kind == comm::MemoryKind::kCuda) return makeCudaMemory();
  return makeHostMemory();
}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    reset();
    memory_ = other.memory_;
    data_ = other.data_;
    bytes_ = other.bytes_;
    other.memory_ = nullptr;
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  return *this;
}

void Buffer::reset() {
  if (memory_ != nullptr && data_ != nullptr) memory_->release(data_);
  memory_ = nullptr;
  data_ = nullptr;
  bytes_ = 0;
}

absl::StatusOr<Buffer> Buffer::allocate(Memory& memory, std::size_t bytes) {
  absl::StatusOr<void*> p = memory.allocate(bytes);
  if (!p.ok()) return p.status();
  return Buffer(&memory, *p, bytes);
}

}  // namespace gangway::bench
