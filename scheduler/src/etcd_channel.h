// The gRPC channel to etcd shared by the etcd StateStore and the leader election.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <grpcpp/grpcpp.h>

namespace gangway::scheduler {

// `endpoints` is host:port[,host:port...]; gRPC's ipv4: target takes several addresses and uses
// the first that connects. InvalidArgument (naming `who`) when there is none.
inline absl::StatusOr<std::shared_ptr<grpc::Channel>> etcdChannel(const std::string& endpoints,
                                                                  const std::string& who) {
  std::vector<std::string> list = absl::StrSplit(endpoints, ',', absl::SkipEmpty());
  if (list.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": no etcd endpoints; expected host:port[,host:port...]"));
  }
  const std::string target = list.size() == 1 ? list[0] : "ipv4:" + absl::StrJoin(list, ",");
  return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
}

}  // namespace gangway::scheduler
