// The memory the benchmarked communicator works in (host or CUDA), seen from the harness: the
// harness prepares inputs and checks outputs on the host and moves them with these calls.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "gangway/comm/communicator.h"

namespace gangway::bench {

class Memory {
 public:
  virtual ~Memory() = default;

  virtual comm::MemoryKind kind() const = 0;
  // Aligned to 256 bytes; freed by release().
  virtual absl::StatusOr<void*> allocate(std::size_t bytes) = 0;
  virtual void release(void* p) = 0;
  virtual absl::Status toDevice(void* dst, const void* host_src, std::size_t bytes) = 0;
  virtual absl::Status toHost(void* host_dst, const void* src, std::size_t bytes) = 0;
  // Both in this memory.
  virtual absl::Status copy(void* dst, const void* src, std::size_t bytes) = 0;
  virtual absl::Status zero(void* dst, std::size_t bytes) = 0;
  // nccl-tests' device column: "device  N [id] description" parts for this process.
  virtual int deviceIndex(int local_rank) const = 0;
  virtual std::string deviceId() const = 0;
  virtual std::string deviceName() const = 0;
};

std::unique_ptr<Memory> makeHostMemory();
// FailedPrecondition when the build has no CUDA.
absl::StatusOr<std::unique_ptr<Memory>> makeCudaMemory();
absl::StatusOr<std::unique_ptr<Memory>> makeMemory(comm::MemoryKind kind);

// One allocation in a Memory, released on destruction.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Memory* memory, void* data, std::size_t bytes)
      : memory_(memory), data_(data), bytes_(bytes) {}
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  static absl::StatusOr<Buffer> allocate(Memory& memory, std::size_t bytes);

  char* data() const { return static_cast<char*>(data_); }
  std::size_t bytes() const { return bytes_; }
  void reset();

 private:
  Memory* memory_ = nullptr;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace gangway::bench
