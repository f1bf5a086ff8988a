// The nccl backend: NCCL's collectives on CUDA device buffers, enqueued on the communicator's own
// non-blocking stream. Calls return once enqueued; synchronize() waits for them, bounded by
// Options::timeout, and turns a failed peer into Unavailable (or a stall into DeadlineExceeded)
// by polling ncclCommGetAsyncError and aborting the communicator, instead of hanging.
//
// Set-up: each rank picks its device (Options::cuda_device, or the local rank modulo the device
// count) and makes it current on the calling thread, so that the buffers the caller allocates next
// land on it. Rank 0's ncclUniqueId reaches the others through the bootstrap's all-gather, in which
// every rank also reports whether its own set-up worked, so that a rank without a GPU fails every
// rank's create() at once instead of leaving the others waiting in ncclCommInitRank.
#include <cstddef>
#include <cstring>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/string_view.h>
#include <absl/time/clock.h>
#include <absl/time/time.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "gangway/common/status.h"
#include "gangway/kernels/reduce.h"

#include "backend.h"

namespace gangway::comm {

namespace {

// "ncclAllReduce (nccl_communicator.cc:123)" from the stringified call and its place.
std::string callSite(const char* call, const char* file, int line) {
  absl::string_view name(call);
  name = name.substr(0, name.find('('));
  absl::string_view base(file);
  if (const auto slash = base.rfind('/'); slash != absl::string_view::npos) {
    base.remove_prefix(slash + 1);
  }
  return absl::StrCat(name, " (", base, ":", line, ")");
}

absl::Status cudaStatus(cudaError_t e, const char* call, const char* file, int line) {
  if (e == cudaSuccess) return absl::OkStatus();
  absl::StatusCode code = absl::StatusCode::kInternal;
  switch (e) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      code = absl::StatusCode::kFailedPrecondition;
      break;
    case cudaErrorMemoryAllocation:
      code = absl::StatusCode::kResourceExhausted;
      break;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidDevicePointer:
      code = absl::StatusCode::kInvalidArgument;
      break;
    default:
      break;
  }
  return absl::Status(code, absl::StrCat(callSite(call, file, line), " failed: ",
                                         cudaGetErrorName(e), ": ", cudaGetErrorString(e)));
}

absl::StatusCode ncclCode(ncclResult_t r) {
  switch (r) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return absl::StatusCode::kInvalidArgument;
    case ncclSystemError:  // sockets, shared memory: the connection to a peer
    case ncclRemoteError:  // a peer failed
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

// NCCL's error string, and its last detailed message when it has one.
std::string ncclWhy(ncclResult_t r) {
  std::string why = ncclGetErrorString(r);
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && *last != '\0') absl::StrAppend(&why, " (", last, ")");
  return why;
}

absl::Status ncclStatus(ncclResult_t r, const char* call, const char* file, int line) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::Status(ncclCode(r),
                      absl::StrCat(callSite(call, file, line), " failed: ", ncclWhy(r)));
}

#define GW_CUDA(call) cudaStatus((call), #call, __FILE__, __LINE__)
#define GW_NCCL(call) ncclStatus((call), #call, __FILE__, __LINE__)

ncclDataType_t ncclType(DataType type) {
  switch (type) {
    case DataType::kInt8:
      return ncclInt8;
    case DataType::kUint8:
      return ncclUint8;
    case DataType::kInt32:
      return ncclInt32;
    case DataType::kUint32:
      return ncclUint32;
    case DataType::kInt64:
      return ncclInt64;
    case DataType::kUint64:
      return ncclUint64;
    case DataType::kFloat16:
      return ncclFloat16;
    case DataType::kBFloat16:
      return ncclBfloat16;
    case DataType::kFloat32:
      return ncclFloat32;
    case DataType::kFloat64:
      return ncclFloat64;
  }
  return ncclInt8;
}

ncclRedOp_t ncclOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kProd:
      return ncclProd;
    case ReduceOp::kMin:
      return ncclMin;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kAvg:
      return ncclAvg;
  }
  return ncclSum;
}

bool overlaps(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
  const auto* pa = static_cast<const std::byte*>(a);
  const auto* pb = static_cast<const std::byte*>(b);
  return pa < pb + b_bytes && pb < pa + a_bytes;
}

// What each rank publishes in the set-up all-gather.
constexpr absl::string_view kIdTag = "id:";         // rank 0: followed by the ncclUniqueId bytes
constexpr absl::string_view kReadyTag = "ok";       // the other ranks
constexpr absl::string_view kFailedTag = "error:";  // any rank: followed by its error

class NcclCommunicator final : public BackendCommunicator {
 public:
  NcclCommunicator(int rank, int size, int device, absl::Duration timeout)
      : BackendCommunicator(rank, size, ncclCapabilities()), device_(device), timeout_(timeout) {}
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  // This rank's part of the set-up: the device, the stream and the barrier's scratch int.
  absl::Status initLocal();
  // ncclCommInitRank: collective, blocks until every rank has joined.
  absl::Status initComm(const ncclUniqueId& id);

  const char* backend() const override { return "nccl"; }

 protected:
  absl::Status doAllReduce(const void* send, void* recv, std::size_t count, DataType type,
                           ReduceOp op) override;
  absl::Status doReduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                        int root) override;
  absl::Status doAllGather(const void* send, void* recv, std::size_t count, DataType type) override;
  absl::Status doReduceScatter(const void* send, void* recv, std::size_t count, DataType type,
                               ReduceOp op) override;
  absl::Status doBroadcast(const void* send, void* recv, std::size_t count, DataType type,
                           int root) override;
  absl::Status doAllToAll(const void* send, void* recv, std::size_t count, DataType type) override;
  absl::Status doSend(const void* buf, std::size_t count, DataType type, int peer) override;
  absl::Status doRecv(void* buf, std::size_t count, DataType type, int peer) override;
  absl::Status doBarrier() override;
  absl::Status doSynchronize() override;
  absl::Status copy(void* dst, const void* src, std::size_t bytes) override;

 private:
  // Unavailable, after aborting the communicator, when NCCL reports an asynchronous error (a
  // peer or the network failed); OK otherwise.
  absl::Status checkAsync();
  void abort();

  const int device_;
  const absl::Duration timeout_;
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;  // one int on the device, for barrier()
  ncclComm_t comm_ = nullptr;
};

NcclCommunicator::~NcclCommunicator() {
  if (comm_ != nullptr) {
    // ncclCommDestroy waits for queued work: bound that wait (synchronize() aborts on a failure
    // or a stall; abort() covers a CUDA error).
    if (doSynchronize().ok()) {
      ncclCommDestroy(comm_);
      comm_ = nullptr;
    } else {
      abort();
    }
  }
  if (scratch_ != nullptr) cudaFree(scratch_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status NcclCommunicator::initLocal() {
  GW_RETURN_IF_ERROR(GW_CUDA(cudaSetDevice(device_)));
  GW_RETURN_IF_ERROR(GW_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)));
  GW_RETURN_IF_ERROR(GW_CUDA(cudaMalloc(&scratch_, sizeof(int))));
  return GW_CUDA(cudaMemset(scratch_, 0, sizeof(int)));
}

absl::Status NcclCommunicator::initComm(const ncclUniqueId& id) {
  GW_RETURN_IF_ERROR(GW_CUDA(cudaSetDevice(device_)));  // ncclCommInitRank uses the current one
  ncclComm_t comm = nullptr;
  absl::Status s = GW_NCCL(ncclCommInitRank(&comm, size(), id, rank()));
  if (s.ok()) {
    comm_ = comm;
  } else if (comm != nullptr) {
    ncclCommAbort(comm);  // NCCL frees (and nulls) a failed one itself; abort any it kept
  }
  return s;
}

void NcclCommunicator::abort() {
  if (comm_ == nullptr) return;
  ncclCommAbort(comm_);  // nothing more to do if even this fails
  comm_ = nullptr;
}

absl::Status NcclCommunicator::checkAsync() {
  if (comm_ == nullptr) {
    return absl::UnavailableError("nccl: the communicator was aborted after an earlier failure");
  }
  ncclResult_t async = ncclSuccess;
  GW_RETURN_IF_ERROR(GW_NCCL(ncclCommGetAsyncError(comm_, &async)));
  if (async == ncclSuccess || async == ncclInProgress) return absl::OkStatus();
  const std::string why = ncclWhy(async);
  abort();
  return absl::UnavailableError(absl::StrCat("nccl: the communicator failed (", why,
                                             "): a peer or the network is gone; it was aborted"));
}

absl::Status NcclCommunicator::copy(void* dst, const void* src, std::size_t bytes) {
  if (dst == src || bytes == 0) return absl::OkStatus();
  return GW_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
}

absl::Status NcclCommunicator::doAllReduce(const void* send, void* recv, std::size_t count,
                                           DataType type, ReduceOp op) {
  GW_RETURN_IF_ERROR(checkAsync());
  return GW_NCCL(ncclAllReduce(send, recv, count, ncclType(type), ncclOp(op), comm_, stream_));
}

absl::Status NcclCommunicator::doReduce(const void* send, void* recv, std::size_t count,
                                        DataType type, ReduceOp op, int root) {
  GW_RETURN_IF_ERROR(checkAsync());
  // recv is used at the root only (and may be null elsewhere).
  return GW_NCCL(ncclReduce(send, recv, count, ncclType(type), ncclOp(op), root, comm_, stream_));
}

absl::Status NcclCommunicator::doAllGather(const void* send, void* recv, std::size_t count,
                                           DataType type) {
  GW_RETURN_IF_ERROR(checkAsync());
  const std::size_t bytes = count * kernels::dataTypeSize(type);
  auto* mine = static_cast<std::byte*>(recv) + static_cast<std::size_t>(rank()) * bytes;
  const void* in = send;
  if (send != mine && overlaps(send, bytes, recv, bytes * static_cast<std::size_t>(size()))) {
    // Inside recv but not this rank's slice: move it there and gather in place.
    if (overlaps(send, bytes, mine, bytes)) {
      return absl::InvalidArgumentError(
          "allGather: send overlaps this rank's slice of recv without being it (in place means "
          "send = recv + rank * count)");
    }
    GW_RETURN_IF_ERROR(
        GW_CUDA(cudaMemcpyAsync(mine, send, bytes, cudaMemcpyDeviceToDevice, stream_)));
    in = mine;
  }
  return GW_NCCL(ncclAllGather(in, recv, count, ncclType(type), comm_, stream_));
}

absl::Status NcclCommunicator::doReduceScatter(const void* send, void* recv, std::size_t count,
                                               DataType type, ReduceOp op) {
  GW_RETURN_IF_ERROR(checkAsync());
  const std::size_t bytes = count * kernels::dataTypeSize(type);
  const auto* mine = static_cast<const std::byte*>(send) + static_cast<std::size_t>(rank()) * bytes;
  // NCCL's in place is recv = send's slice [rank]; any other overlap (recv = send, say) goes
  // through a temporary on the stream.
  if (recv == mine || !overlaps(recv, bytes, send, bytes * static_cast<std::size_t>(size()))) {
    return GW_NCCL(
        ncclReduceScatter(send, recv, count, ncclType(type), ncclOp(op), comm_, stream_));
  }
  void* scratch = nullptr;
  GW_RETURN_IF_ERROR(GW_CUDA(cudaMallocAsync(&scratch, bytes, stream_)));
  absl::Status s =
      GW_NCCL(ncclReduceScatter(send, scratch, count, ncclType(type), ncclOp(op), comm_, stream_));
  if (s.ok()) {
    s = GW_CUDA(cudaMemcpyAsync(recv, scratch, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  const absl::Status freed = GW_CUDA(cudaFreeAsync(scratch, stream_));
  return s.ok() ? freed : s;
}

absl::Status NcclCommunicator::doBroadcast(const void* send, void* recv, std::size_t count,
                                           DataType type, int root) {
  GW_RETURN_IF_ERROR(checkAsync());
  // send is read at the root only.
  return GW_NCCL(ncclBroadcast(send, recv, count, ncclType(type), root, comm_, stream_));
}

absl::Status NcclCommunicator::doAllToAll(const void* send, void* recv, std::size_t count,
                                          DataType type) {
  GW_RETURN_IF_ERROR(checkAsync());
  const std::size_t bytes = count * kernels::dataTypeSize(type);
  const auto* s = static_cast<const std::byte*>(send);
  auto* r = static_cast<std::byte*>(recv);
  GW_RETURN_IF_ERROR(GW_NCCL(ncclGroupStart()));
  absl::Status first;  // ncclGroupEnd must follow ncclGroupStart even after a failure
  for (int peer = 0; peer < size() && first.ok(); ++peer) {
    const std::size_t at = static_cast<std::size_t>(peer) * bytes;
    first = GW_NCCL(ncclSend(s + at, count, ncclType(type), peer, comm_, stream_));
    if (first.ok()) first = GW_NCCL(ncclRecv(r + at, count, ncclType(type), peer, comm_, stream_));
  }
  const absl::Status end = GW_NCCL(ncclGroupEnd());
  return first.ok() ? end : first;
}

absl::Status NcclCommunicator::doSend(const void* buf, std::size_t count, DataType type, int peer) {
  GW_RETURN_IF_ERROR(checkAsync());
  return GW_NCCL(ncclSend(buf, count, ncclType(type), peer, comm_, stream_));
}

absl::Status NcclCommunicator::doRecv(void* buf, std::size_t count, DataType type, int peer) {
  GW_RETURN_IF_ERROR(checkAsync());
  return GW_NCCL(ncclRecv(buf, count, ncclType(type), peer, comm_, stream_));
}

absl::Status NcclCommunicator::doBarrier() {
  GW_RETURN_IF_ERROR(checkAsync());
  GW_RETURN_IF_ERROR(
      GW_NCCL(ncclAllReduce(scratch_, scratch_, 1, ncclInt32, ncclSum, comm_, stream_)));
  return doSynchronize();
}

absl::Status NcclCommunicator::doSynchronize() {
  // CUDA has no wait with a deadline, and NCCL reports a failed peer only through
  // ncclCommGetAsyncError: poll both, yielding the core between polls, until the stream is idle,
  // NCCL reports an error, or the deadline passes.
  const absl::Time deadline = absl::Now() + timeout_;
  while (true) {
    GW_RETURN_IF_ERROR(checkAsync());
    const cudaError_t state = cudaStreamQuery(stream_);
    if (state == cudaSuccess) return absl::OkStatus();
    if (state != cudaErrorNotReady) return GW_CUDA(state);
    if (absl::Now() >= deadline) {
      abort();
      return absl::DeadlineExceededError(absl::StrCat(
          "nccl: the operations enqueued did not complete within ", absl::FormatDuration(timeout_),
          " (a peer is missing or stuck); the communicator was aborted"));
    }
    std::this_thread::yield();
  }
}

absl::StatusOr<int> pickDevice(const Options& options, int local_rank) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count <= 0) {
    static_cast<void>(cudaGetLastError());  // clear it, so that no later call reports it
    return absl::FailedPreconditionError(absl::StrCat(
        "the nccl backend needs a GPU: no CUDA device",
        e != cudaSuccess ? absl::StrCat(" (", cudaGetErrorString(e), ")") : std::string()));
  }
  if (options.cuda_device >= count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cuda_device ", options.cuda_device, ": this machine has ", count, " CUDA device(s)"));
  }
  return options.cuda_device >= 0 ? options.cuda_device : local_rank % count;
}

}  // namespace

Capabilities ncclCapabilities() {
  Capabilities c;
  c.memory = {MemoryKind::kCuda};
  c.types.assign(std::begin(kernels::kAllDataTypes), std::end(kernels::kAllDataTypes));
  c.ops.assign(std::begin(kernels::kAllReduceOps), std::end(kernels::kAllReduceOps));
  return c;
}

absl::StatusOr<std::unique_ptr<Communicator>> createNccl(const Options& options,
                                                         Bootstrap& bootstrap) {
  const int rank = bootstrap.rank();
  const int size = bootstrap.size();

  // This rank's set-up; a failure is published rather than returned, so that no rank waits for it.
  std::unique_ptr<NcclCommunicator> comm;
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  absl::StatusOr<int> device = pickDevice(options, bootstrap.localRank());
  absl::Status local = device.status();
  if (local.ok()) {
    comm = std::make_unique<NcclCommunicator>(rank, size, *device, options.timeout);
    local = comm->initLocal();
  }
  if (local.ok() && rank == 0) local = GW_NCCL(ncclGetUniqueId(&id));
  std::string mine;
  if (!local.ok()) {
    mine = absl::StrCat(kFailedTag, local.message());
  } else if (rank == 0) {
    mine = absl::StrCat(kIdTag, absl::string_view(id.internal, sizeof(id.internal)));
  } else {
    mine = std::string(kReadyTag);
  }

  auto all = bootstrap.allGather(mine, options.timeout);
  if (!all.ok()) {
    return absl::Status(
        all.status().code(),
        absl::StrCat("nccl backend: exchanging the unique id: ", all.status().message()));
  }
  if (!local.ok()) return local;
  for (int r = 0; r < size; ++r) {
    const std::string& theirs = (*all)[r];
    if (absl::StartsWith(theirs, kFailedTag)) {
      return absl::FailedPreconditionError(
          absl::StrCat("nccl backend: rank ", r,
                       " could not set up: ", absl::string_view(theirs).substr(kFailedTag.size())));
    }
  }
  const std::string& published = (*all)[0];
  if (!absl::StartsWith(published, kIdTag) ||
      published.size() != kIdTag.size() + sizeof(id.internal)) {
    return absl::InternalError("nccl backend: rank 0 published no ncclUniqueId");
  }
  std::memcpy(id.internal, published.data() + kIdTag.size(), sizeof(id.internal));
  GW_RETURN_IF_ERROR(comm->initComm(id));
  return std::unique_ptr<Communicator>(std::move(comm));
}

#undef GW_CUDA
#undef GW_NCCL

}  // namespace gangway::comm
