// What the ClusterManager's source files share (cluster.cc: jobs and scheduling cycles;
// cluster_nodes.cc: pool nodes and status views).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include <absl/strings/ascii.h>
#include <absl/time/time.h>

#include "gangway/common/log.h"
#include "gangway/common/text.h"
#include "gangway/v1/cluster.pb.h"

namespace gangway::scheduler::cluster_internal {

inline Logger& log() {
  static Logger& l = logger("cluster");
  return l;
}

inline constexpr char kJobsPrefix[] = "jobs/";
inline constexpr char kNodesPrefix[] = "nodes/";

// Names that are safe as store keys, file names and rendezvous ids: common/text.h's isName, at
// most 128 characters.
inline constexpr std::size_t kMaxIdLength = 128;
inline bool validId(const std::string& s) { return isName(s, kMaxIdLength); }

inline int64_t toMs(absl::Time t) { return absl::ToUnixMillis(t); }

inline bool live(v1::JobState s) { return s == v1::PENDING || s == v1::RUNNING; }

inline std::string stateName(v1::JobState s) {
  switch (s) {
    case v1::PENDING:
      return "pending";
    case v1::RUNNING:
      return "running";
    case v1::SUCCEEDED:
      return "succeeded";
    case v1::FAILED:
      return "failed";
    case v1::CANCELLED:
      return "cancelled";
    default:
      return "unknown";
  }
}

}  // namespace gangway::scheduler::cluster_internal
