#include "backend.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <absl/strings/str_cat.h>

#include "gangway/common/status.h"

namespace gangway::comm {

namespace {

bool isPeerFailure(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsAborted(s);
}

}  // namespace

absl::Status BackendCommunicator::remember(absl::Status s) {
  if (!s.ok() && broken_.ok() && isPeerFailure(s)) broken_ = s;
  return s;
}

absl::Status BackendCommunicator::check(const char* what, DataType type, const ReduceOp* op) const {
  if (!broken_.ok()) return broken_;
  if (!caps_.supports(type)) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": the ", backend(), " backend does not support type ", kernels::dataTypeName(type)));
  }
  if (op != nullptr && !caps_.supports(*op)) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": the ", backend(),
                                                      " backend does not support operation ",
                                                      kernels::reduceOpName(*op)));
  }
  return absl::OkStatus();
}

absl::Status BackendCommunicator::checkRoot(const char* what, int root) const {
  if (root < 0 || root >= size_) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": root ", root, " is not a rank of this world (0..", size_ - 1, ")"));
  }
  return absl::OkStatus();
}

absl::Status BackendCommunicator::checkBuffer(const char* what, const char* name, const void* p,
                                              std::size_t count, DataType type) const {
  if (count == 0) return absl::OkStatus();
  if (p == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", name, " is null with count ", count));
  }
  const std::size_t align = kernels::dataTypeSize(type);
  if (reinterpret_cast<std::uintptr_t>(p) % align != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", name, " is not aligned to ",
                                                   kernels::dataTypeName(type), " (", align,
                                                   " bytes)"));
  }
  return absl::OkStatus();
}

absl::Status BackendCommunicator::copy(void* dst, const void* src, std::size_t bytes) {
  if (dst != src && bytes > 0) std::memmove(dst, src, bytes);
  return absl::OkStatus();
}

absl::Status BackendCommunicator::allReduce(const void* send, void* recv, std::size_t count,
                                            DataType type, ReduceOp op) {
  GW_RETURN_IF_ERROR(check("allReduce", type, &op));
  GW_RETURN_IF_ERROR(checkBuffer("allReduce", "send", send, count, type));
  GW_RETURN_IF_ERROR(checkBuffer("allReduce", "recv", recv, count, type));
  if (count == 0) return absl::OkStatus();
  if (size_ == 1) return copy(recv, send, count * kernels::dataTypeSize(type));
  return remember(doAllReduce(send, recv, count, type, op));
}

absl::Status BackendCommunicator::reduce(const void* send, void* recv, std::size_t count,
                                         DataType type, ReduceOp op, int root) {
  GW_RETURN_IF_ERROR(check("reduce", type, &op));
  GW_RETURN_IF_ERROR(checkRoot("reduce", root));
  GW_RETURN_IF_ERROR(checkBuffer("reduce", "send", send, count, type));
  if (rank_ == root) GW_RETURN_IF_ERROR(checkBuffer("reduce", "recv", recv, count, type));
  if (count == 0) return absl::OkStatus();
  if (size_ == 1) return copy(recv, send, count * kernels::dataTypeSize(type));
  return remember(doReduce(send, recv, count, type, op, root));
}

absl::Status BackendCommunicator::allGather(const void* send, void* recv, std::size_t count,
                                            DataType type) {
  GW_RETURN_IF_ERROR(check("allGather", type, nullptr));
  GW_RETURN_IF_ERROR(checkBuffer("allGather", "send", send, count, type));
  GW_RETURN_IF_ERROR(checkBuffer("allGather", "recv", recv, count, type));
  if (count == 0) return absl::OkStatus();
  const std::size_t bytes = count * kernels::dataTypeSize(type);
  if (size_ == 1) return copy(recv, send, bytes);
  return remember(doAllGather(send, recv, count, type));
}

absl::Status BackendCommunicator::reduceScatter(const void* send, void* recv, std::size_t count,
                                                DataType type, ReduceOp op) {
  GW_RETURN_IF_ERROR(check("reduceScatter", type, &op));
  GW_RETURN_IF_ERROR(checkBuffer("reduceScatter", "send", send, count, type));
  GW_RETURN_IF_ERROR(checkBuffer("reduceScatter", "recv", recv, count, type));
  if (count == 0) return absl::OkStatus();
  if (size_ == 1) return copy(recv, send, count * kernels::dataTypeSize(type));
  return remember(doReduceScatter(send, recv, count, type, op));
}

absl::Status BackendCommunicator::broadcast(const void* send, void* recv, std::size_t count,
                                            DataType type, int root) {
  GW_RETURN_IF_ERROR(check("broadcast", type, nullptr));
  GW_RETURN_IF_ERROR(checkRoot("broadcast", root));
  if (rank_ == root) GW_RETURN_IF_ERROR(checkBuffer("broadcast", "send", send, count, type));
  GW_RETURN_IF_ERROR(checkBuffer("broadcast", "recv", recv, count, type));
  if (count == 0) return absl::OkStatus();
  if (size_ == 1) return copy(recv, send, count * kernels::dataTypeSize(type));
  return remember(doBroadcast(send, recv, count, type, root));
}

absl::Status BackendCommunicator::allToAll(const void* send, void* recv, std::size_t count,
                                           DataType type) {
  GW_RETURN_IF_ERROR(check("allToAll", type, nullptr));
  GW_RETURN_IF_ERROR(checkBuffer("allToAll", "send", send, count, type));
  GW_RETURN_IF_ERROR(checkBuffer("allToAll", "recv", recv, count, type));
  if (count > 0 && send == recv) {
    return absl::InvalidArgumentError("allToAll: send and recv must be different buffers");
  }
  if (count == 0) return absl::OkStatus();
  if (size_ == 1) return copy(recv, send, count * kernels::dataTypeSize(type));
  return remember(doAllToAll(send, recv, count, type));
}

absl::Status BackendCommunicator::send(const void* buf, std::size_t count, DataType type,
                                       int peer) {
  GW_RETURN_IF_ERROR(check("send", type, nullptr));
  if (peer < 0 || peer >= size_ || peer == rank_) {
    return absl::InvalidArgumentError(absl::StrCat("send: peer ", peer,
                                                   " is not another rank of this world (0..",
                                                   size_ - 1, ", not ", rank_, ")"));
  }
  GW_RETURN_IF_ERROR(checkBuffer("send", "buf", buf, count, type));
  if (count == 0) return absl::OkStatus();
  return remember(doSend(buf, count, type, peer));
}

absl::Status BackendCommunicator::recv(void* buf, std::size_t count, DataType type, int peer) {
  GW_RETURN_IF_ERROR(check("recv", type, nullptr));
  if (peer < 0 || peer >= size_ || peer == rank_) {
    return absl::InvalidArgumentError(absl::StrCat("recv: peer ", peer,
                                                   " is not another rank of this world (0..",
                                                   size_ - 1, ", not ", rank_, ")"));
  }
  GW_RETURN_IF_ERROR(checkBuffer("recv", "buf", buf, count, type));
  if (count == 0) return absl::OkStatus();
  return remember(doRecv(buf, count, type, peer));
}

absl::Status BackendCommunicator::barrier() {
  if (!broken_.ok()) return broken_;
  if (size_ == 1) return absl::OkStatus();
  return remember(doBarrier());
}

absl::Status BackendCommunicator::synchronize() {
  if (!broken_.ok()) return broken_;
  return remember(doSynchronize());
}

}  // namespace gangway::comm
