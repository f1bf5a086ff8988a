// A node's place in the network: its switch path from the top down ("spine2/leaf7"), as given on
// the command line or looked up in a map file made from a node label. Used by the agent (which
// reports it) and the control plane (which orders node ranks by it).
#pragma once

#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <absl/strings/string_view.h>

namespace gangway::topology {

// "spine2/leaf7" -> {"spine2", "leaf7"}; InvalidArgument for empty components or characters
// other than letters, digits and -_.:
absl::StatusOr<std::vector<std::string>> parseNetworkPath(absl::string_view text);

// Looks NODE up in a network-path map: one "NODE PATH" pair per line, '#' to the end of a line is a
// comment (made from a node label, e.g. `kubectl get nodes -o jsonpath=...`; deploy/README.md).
// Returns NODE's path; NotFound when the file does not exist or does not name NODE;
// InvalidArgument naming FILE:LINE for a malformed line, a bad path or a node named twice.
absl::StatusOr<std::string> lookupNetworkPath(const std::string& file, absl::string_view node);

}  // namespace gangway::topology
