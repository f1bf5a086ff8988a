// Checks of what peers send the control plane, shared by the rendezvous and the cluster
// scheduler: every name, address and free-form field is bounded and free of control characters
// before the state machines hold or log it. Errors are InvalidArgument and name the field.
#pragma once

#include <cstddef>
#include <string>

#include <absl/status/status.h>
#include <absl/strings/string_view.h>
#include <google/protobuf/message.h>

#include "gangway/common/text.h"
#include "gangway/scheduler/limits.h"
#include "gangway/v1/rendezvous.pb.h"

namespace gangway::scheduler {

// A value as it may appear in an error message: escaped, and cut to 64 bytes.
std::string shown(absl::string_view value);

// A job, agent, node or queue name (common/text.h isName) of at most `max_length` characters.
absl::Status checkName(absl::string_view value, absl::string_view what,
                       std::size_t max_length = kMaxNameLength);
// An IP address literal or a host name (common/host_port.h isHostOrAddress).
absl::Status checkAddress(absl::string_view value, absl::string_view what);
// A node's self-description: its host name, labels, switch path and NVLink domain.
absl::Status checkTopology(const v1::NodeTopology& topology, const Limits& limits);
// The request as a whole, against a size in bytes.
absl::Status checkSize(const google::protobuf::Message& request, std::size_t max_bytes,
                       absl::string_view what);

}  // namespace gangway::scheduler
