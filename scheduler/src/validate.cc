#include "validate.h"

#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>

#include "gangway/common/host_port.h"

namespace gangway::scheduler {

std::string shown(absl::string_view value) { return escapeLine(value, 64); }

absl::Status checkName(absl::string_view value, absl::string_view what, std::size_t max_length) {
  if (isName(value, max_length)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " '", shown(value), "': expected ", nameRule(max_length)));
}

absl::Status checkAddress(absl::string_view value, absl::string_view what) {
  if (isHostOrAddress(value)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " '", shown(value), "': expected an IPv4 or IPv6 address or a host name"));
}

namespace {

bool isLabelKey(absl::string_view key) {
  if (key.empty() || key.size() > 63) return false;
  for (char c : key) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-' &&
        c != '/') {
      return false;
    }
  }
  return true;
}

absl::Status lineError(absl::string_view value, std::size_t max_bytes, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(what, " '", shown(value), "': expected at most ",
                                                 max_bytes, " bytes without control characters"));
}

absl::Status checkLine(absl::string_view value, std::size_t max_bytes, absl::string_view what) {
  return isPrintableLine(value, max_bytes) ? absl::OkStatus() : lineError(value, max_bytes, what);
}

}  // namespace

absl::Status checkTopology(const v1::NodeTopology& t, const Limits& limits) {
  if (absl::Status s = checkLine(t.hostname(), 253, "hostname"); !s.ok()) return s;
  if (absl::Status s = checkLine(t.network_path(), 512, "network path"); !s.ok()) return s;
  if (absl::Status s = checkLine(t.nvlink_domain(), 253, "NVLink domain"); !s.ok()) return s;
  if (t.gpu_count() < 0 || t.gpu_count() > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu count ", t.gpu_count(), ": expected 0 to 4096"));
  }
  if (t.labels_size() > static_cast<int>(limits.max_labels)) {
    return absl::InvalidArgumentError(
        absl::StrCat(t.labels_size(), " labels: expected at most ", limits.max_labels));
  }
  for (const auto& [key, value] : t.labels()) {
    if (!isLabelKey(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "label '", shown(key), "': expected 1 to 63 letters, digits, '.', '_', '-' or '/'"));
    }
    if (!isPrintableLine(value, 253)) return lineError(value, 253, absl::StrCat("label ", key));
  }
  return absl::OkStatus();
}

absl::Status checkSize(const google::protobuf::Message& request, std::size_t max_bytes,
                       absl::string_view what) {
  if (const std::size_t n = request.ByteSizeLong(); n > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " of ", n, " bytes: expected at most ", max_bytes));
  }
  return absl::OkStatus();
}

}  // namespace gangway::scheduler
