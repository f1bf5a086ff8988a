// The mpi backend: a thin layer over Open MPI's collectives, for host memory, in the world that
// mpirun started (makeMpiBootstrap()).
//
// What it adds to MPI: float16 and bfloat16 (2-byte datatypes with user-defined operations that
// call kernels::reduceHost, so the arithmetic is the kernels' own), avg (sum, then
// kernels::divideByHost), the in-place conventions of communicator.h, and counts beyond INT_MAX
// (MPI counts are int: element-wise operations go in pieces; gather-like ones return
// InvalidArgument past the limit). int8 and uint8 reduce through user-defined operations too:
// Open MPI 4.1's AVX operations (op/avx) saturate 8-bit sums where gangway wraps
// (open-mpi/ompi#8045); the other types use MPI's own operations.
//
// Options::timeout cannot be enforced: MPI calls block until their peers arrive. A peer that dies
// usually makes mpirun end the whole job rather than fail the call.
#include <algorithm>
#include <array>
#include <climits>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <memory>
#include <utility>

#include <absl/strings/str_cat.h>
#include <absl/strings/string_view.h>

#include "gangway/common/status.h"
#include "gangway/kernels/reduce.h"

#include "backend.h"
#include "mpi_status.h"

// The most bytes one MPI call carries. MPI counts are int, and Open MPI has had bugs with messages
// of 2 GiB or more, so larger element-wise operations go in pieces of at most this size (a
// multiple of every element size). Overridable at build time to exercise the pieces in tests.
#ifndef GANGWAY_MPI_MAX_CHUNK_BYTES
#define GANGWAY_MPI_MAX_CHUNK_BYTES (std::size_t{1} << 30)
#endif

namespace gangway::comm {

namespace {

constexpr std::size_t kMaxChunkBytes = GANGWAY_MPI_MAX_CHUNK_BYTES;
constexpr int kTag = 0x6777;  // send/recv; collectives do not use tags

// The types that reduce through MPI_Op_create's operations (see the file comment); their
// operations are indexed by userOpIndex() (avg uses sum).
constexpr DataType kUserOpTypes[] = {DataType::kInt8, DataType::kUint8, DataType::kFloat16,
                                     DataType::kBFloat16};
constexpr int kNumUserOps = 4;  // sum prod min max
constexpr int kNumTypes = static_cast<int>(std::size(kernels::kAllDataTypes));

int userOpIndex(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return 0;
    case ReduceOp::kProd:
      return 1;
    case ReduceOp::kMin:
      return 2;
    case ReduceOp::kMax:
      return 3;
  }
  return 0;
}

// An MPI_User_function: inout[i] = in[i] OP inout[i], computed as the kernels compute it.
template <DataType kType, ReduceOp kOp>
void reduceUser(void* in, void* inout, int* len, MPI_Datatype* /*type*/) {
  kernels::reduceHost(inout, inout, in, static_cast<std::size_t>(*len), kType, kOp);
}

template <DataType kType>
constexpr std::array<MPI_User_function*, kNumUserOps> kUserFunctionsOf = {
    &reduceUser<kType, ReduceOp::kSum>, &reduceUser<kType, ReduceOp::kProd>,
    &reduceUser<kType, ReduceOp::kMin>, &reduceUser<kType, ReduceOp::kMax>};

std::array<MPI_User_function*, kNumUserOps> userFunctions(DataType type) {
  switch (type) {
    case DataType::kInt8:
      return kUserFunctionsOf<DataType::kInt8>;
    case DataType::kUint8:
      return kUserFunctionsOf<DataType::kUint8>;
    case DataType::kFloat16:
      return kUserFunctionsOf<DataType::kFloat16>;
    case DataType::kBFloat16:
      return kUserFunctionsOf<DataType::kBFloat16>;
    default:
      return {};
  }
}

MPI_Op builtinOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return MPI_SUM;
    case ReduceOp::kProd:
      return MPI_PROD;
    case ReduceOp::kMin:
      return MPI_MIN;
    case ReduceOp::kMax:
      return MPI_MAX;
  }
  return MPI_OP_NULL;
}

bool overlaps(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
  const auto* pa = static_cast<const std::byte*>(a);
  const auto* pb = static_cast<const std::byte*>(b);
  return pa < pb + b_bytes && pb < pa + a_bytes;
}

// Gather-like operations cannot be cut into pieces without derived datatypes: their counts must
// fit MPI's int.
absl::Status checkIntCount(const char* what, std::size_t count, std::size_t elements) {
  if (elements <= static_cast<std::size_t>(INT_MAX)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      what, ": count ", count, " means ", elements, " elements in one MPI call; the mpi backend ",
      "passes at most ", INT_MAX, " (MPI counts are int)"));
}

class MpiCommunicator final : public BackendCommunicator {
 public:
  MpiCommunicator(int rank, int size, Capabilities caps)
      : BackendCommunicator(rank, size, std::move(caps)) {
    for (auto& ops : user_ops_) ops.fill(MPI_OP_NULL);
  }
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  // Collective: duplicates MPI_COMM_WORLD and makes the 2-byte types and their operations.
  absl::Status init();

  const char* backend() const override { return "mpi"; }

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

 private:
  MPI_Datatype mpiType(DataType type) const;
  MPI_Op mpiOp(DataType type, ReduceOp op) const;

  // Calls fn(offset, n) over [0, count) in pieces of at most kMaxChunkBytes (n > 0, as int).
  template <typename Fn>
  static absl::Status forPieces(std::size_t count, DataType type, Fn&& fn) {
    const std::size_t most = std::min<std::size_t>(
        std::max<std::size_t>(kMaxChunkBytes / kernels::dataTypeSize(type), 1),
        static_cast<std::size_t>(INT_MAX));
    for (std::size_t offset = 0; offset < count; offset += most) {
      GW_RETURN_IF_ERROR(fn(offset, static_cast<int>(std::min(most, count - offset))));
    }
    return absl::OkStatus();
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Datatype half_ = MPI_DATATYPE_NULL;
  MPI_Datatype bf16_ = MPI_DATATYPE_NULL;
  // By DataType, then userOpIndex(); MPI_OP_NULL where MPI's own operation is used.
  std::array<std::array<MPI_Op, kNumUserOps>, kNumTypes> user_ops_;
};

MpiCommunicator::~MpiCommunicator() {
  if (mpiFinalized()) return;  // MPI_Finalize has freed everything, and no call is allowed now
  for (auto& ops : user_ops_) {
    for (MPI_Op& op : ops) {
      if (op != MPI_OP_NULL) MPI_Op_free(&op);
    }
  }
  if (half_ != MPI_DATATYPE_NULL) MPI_Type_free(&half_);
  if (bf16_ != MPI_DATATYPE_NULL) MPI_Type_free(&bf16_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

absl::Status MpiCommunicator::init() {
  GW_RETURN_IF_ERROR(GW_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &comm_)));
  GW_RETURN_IF_ERROR(GW_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN)));
  for (MPI_Datatype* t : {&half_, &bf16_}) {
    GW_RETURN_IF_ERROR(GW_MPI(MPI_Type_contiguous(2, MPI_BYTE, t)));
    GW_RETURN_IF_ERROR(GW_MPI(MPI_Type_commit(t)));
  }
  for (DataType type : kUserOpTypes) {
    const auto functions = userFunctions(type);
    auto& ops = user_ops_[static_cast<int>(type)];
    for (int i = 0; i < kNumUserOps; ++i) {
      GW_RETURN_IF_ERROR(GW_MPI(MPI_Op_create(functions[i], /*commute=*/1, &ops[i])));
    }
  }
  return absl::OkStatus();
}

MPI_Datatype MpiCommunicator::mpiType(DataType type) const {
  switch (type) {
    case DataType::kInt8:
      return MPI_INT8_T;
    case DataType::kUint8:
      return MPI_UINT8_T;
    case DataType::kInt32:
      return MPI_INT32_T;
    case DataType::kUint32:
      return MPI_UINT32_T;
    case DataType::kInt64:
      return MPI_INT64_T;
    case DataType::kUint64:
      return MPI_UINT64_T;
    case DataType::kFloat16:
      return half_;
    case DataType::kBFloat16:
      return bf16_;
    case DataType::kFloat32:
      return MPI_FLOAT;
    case DataType::kFloat64:
      return MPI_DOUBLE;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op MpiCommunicator::mpiOp(DataType type, ReduceOp op) const {
  const MPI_Op user = user_ops_[static_cast<int>(type)][userOpIndex(op)];
  return user != MPI_OP_NULL ? user : builtinOp(op);
}

absl::Status MpiCommunicator::doAllReduce(const void* send, void* recv, std::size_t count,
                                          DataType type, ReduceOp op) {
  const std::size_t elem = kernels::dataTypeSize(type);
  const bool in_place = send == recv;
  const auto* s = static_cast<const std::byte*>(send);
  auto* r = static_cast<std::byte*>(recv);
  GW_RETURN_IF_ERROR(forPieces(count, type, [&](std::size_t offset, int n) {
    const void* piece = in_place ? MPI_IN_PLACE : s + offset * elem;
    return GW_MPI(
        MPI_Allreduce(piece, r + offset * elem, n, mpiType(type), mpiOp(type, op), comm_));
  }));
  if (op == ReduceOp::kAvg) kernels::divideByHost(recv, count, type, size());
  return absl::OkStatus();
}

absl::Status MpiCommunicator::doReduce(const void* send, void* recv, std::size_t count,
                                       DataType type, ReduceOp op, int root) {
  const std::size_t elem = kernels::dataTypeSize(type);
  const bool is_root = rank() == root;
  const bool in_place = is_root && send == recv;  // MPI_IN_PLACE is for the root only
  const auto* s = static_cast<const std::byte*>(send);
  auto* r = static_cast<std::byte*>(recv);
  GW_RETURN_IF_ERROR(forPieces(count, type, [&](std::size_t offset, int n) {
    const void* piece = in_place ? MPI_IN_PLACE : s + offset * elem;
    void* out = is_root ? r + offset * elem : nullptr;  // significant at the root only
    return GW_MPI(MPI_Reduce(piece, out, n, mpiType(type), mpiOp(type, op), root, comm_));
  }));
  if (is_root && op == ReduceOp::kAvg) kernels::divideByHost(recv, count, type, size());
  return absl::OkStatus();
}

absl::Status MpiCommunicator::doAllGather(const void* send, void* recv, std::size_t count,
                                          DataType type) {
  GW_RETURN_IF_ERROR(checkIntCount("allGather", count, count));
  const std::size_t bytes = count * kernels::dataTypeSize(type);
  auto* mine = static_cast<std::byte*>(recv) + static_cast<std::size_t>(rank()) * bytes;
  const void* piece = send;
  if (overlaps(send, bytes, recv, bytes * static_cast<std::size_t>(size()))) {
    // In place (send is this rank's slice of recv); any other overlap is made in place first.
    if (send != mine) std::memmove(mine, send, bytes);
    piece = MPI_IN_PLACE;
  }
  const int n = static_cast<int>(count);
  return GW_MPI(MPI_Allgather(piece, n, mpiType(type), recv, n, mpiType(type), comm_));
}

absl::Status MpiCommunicator::doReduceScatter(const void* send, void* recv, std::size_t count,
                                              DataType type, ReduceOp op) {
  // Open MPI reduces the whole send (count * size elements) with int counts.
  GW_RETURN_IF_ERROR(
      checkIntCount("reduceScatter", count, count * static_cast<std::size_t>(size())));
  const std::size_t bytes = count * kernels::dataTypeSize(type);
  // MPI's MPI_IN_PLACE takes the input from recv and leaves the result at its start, which is
  // neither of the in-place forms callers use (recv = send's slice [rank], as NCCL, or recv =
  // send): when recv overlaps send, reduce into a temporary and copy.
  std::unique_ptr<std::byte[]> scratch;
  void* out = recv;
  if (overlaps(recv, bytes, send, bytes * static_cast<std::size_t>(size()))) {
    scratch = std::make_unique_for_overwrite<std::byte[]>(bytes);
    out = scratch.get();
  }
  const int n = static_cast<int>(count);
  GW_RETURN_IF_ERROR(
      GW_MPI(MPI_Reduce_scatter_block(send, out, n, mpiType(type), mpiOp(type, op), comm_)));
  if (op == ReduceOp::kAvg) kernels::divideByHost(out, count, type, size());
  if (out != recv) std::memcpy(recv, out, bytes);
  return absl::OkStatus();
}

absl::Status MpiCommunicator::doBroadcast(const void* send, void* recv, std::size_t count,
                                          DataType type, int root) {
  const std::size_t elem = kernels::dataTypeSize(type);
  if (rank() == root && send != recv) std::memmove(recv, send, count * elem);
  auto* r = static_cast<std::byte*>(recv);
  return forPieces(count, type, [&](std::size_t offset, int n) {
    return GW_MPI(MPI_Bcast(r + offset * elem, n, mpiType(type), root, comm_));
  });
}

absl::Status MpiCommunicator::doAllToAll(const void* send, void* recv, std::size_t count,
                                         DataType type) {
  GW_RETURN_IF_ERROR(checkIntCount("allToAll", count, count));
  const int n = static_cast<int>(count);
  return GW_MPI(MPI_Alltoall(send, n, mpiType(type), recv, n, mpiType(type), comm_));
}

absl::Status MpiCommunicator::doSend(const void* buf, std::size_t count, DataType type, int peer) {
  const std::size_t elem = kernels::dataTypeSize(type);
  const auto* b = static_cast<const std::byte*>(buf);
  return forPieces(count, type, [&](std::size_t offset, int n) {
    return GW_MPI(MPI_Send(b + offset * elem, n, mpiType(type), peer, kTag, comm_));
  });
}

absl::Status MpiCommunicator::doRecv(void* buf, std::size_t count, DataType type, int peer) {
  const std::size_t elem = kernels::dataTypeSize(type);
  auto* b = static_cast<std::byte*>(buf);
  return forPieces(count, type, [&](std::size_t offset, int n) -> absl::Status {
    MPI_Status status;
    GW_RETURN_IF_ERROR(
        GW_MPI(MPI_Recv(b + offset * elem, n, mpiType(type), peer, kTag, comm_, &status)));
    int got = 0;
    GW_RETURN_IF_ERROR(GW_MPI(MPI_Get_count(&status, mpiType(type), &got)));
    if (got != n) {  // a shorter message from the peer (a longer one fails as truncated)
      return absl::InvalidArgumentError(
          absl::StrCat("recv: rank ", peer, " sent fewer than the ", count,
                       " elements expected (send and recv counts must match)"));
    }
    return absl::OkStatus();
  });
}

absl::Status MpiCommunicator::doBarrier() { return GW_MPI(MPI_Barrier(comm_)); }

}  // namespace

Capabilities mpiCapabilities() {
  Capabilities c;
  c.memory = {MemoryKind::kHost};
  c.types.assign(std::begin(kernels::kAllDataTypes), std::end(kernels::kAllDataTypes));
  c.ops.assign(std::begin(kernels::kAllReduceOps), std::end(kernels::kAllReduceOps));
  return c;
}

absl::StatusOr<std::unique_ptr<Communicator>> createMpi(const Options& /*options*/,
                                                        Bootstrap& bootstrap) {
  if (absl::string_view(bootstrap.kind()) != "mpi") {
    return absl::FailedPreconditionError(absl::StrCat(
        "the mpi backend runs under mpirun (this world came from ", bootstrap.kind(), ")"));
  }
  if (mpiFinalized()) {
    return absl::FailedPreconditionError("the mpi backend: MPI has already been finalised");
  }
  auto comm =
      std::make_unique<MpiCommunicator>(bootstrap.rank(), bootstrap.size(), mpiCapabilities());
  GW_RETURN_IF_ERROR(comm->init());
  return std::unique_ptr<Communicator>(std::move(comm));
}

}  // namespace gangway::comm
