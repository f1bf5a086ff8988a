#include "gangway/topology/network_path.h"

#include <algorithm>

#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>
#include <absl/strings/strip.h>

#include "gangway/common/file.h"

namespace gangway::topology {

absl::StatusOr<std::vector<std::string>> parseNetworkPath(absl::string_view text) {
  std::vector<std::string> parts;
  for (absl::string_view p : absl::StrSplit(absl::StripAsciiWhitespace(text), '/')) {
    const bool ok = !p.empty() && std::all_of(p.begin(), p.end(), [](char c) {
      return absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':';
    });
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", text,
          "' is not a network path (expected switch names from the top down, e.g. spine2/leaf7)"));
    }
    parts.emplace_back(p);
  }
  return parts;
}

absl::StatusOr<std::string> lookupNetworkPath(const std::string& file, absl::string_view node) {
  auto content = readFile(file, "network-path map");
  if (absl::IsNotFound(content.status())) {
    return absl::NotFoundError(absl::StrCat("network-path map ", file, " does not exist"));
  }
  if (!content.ok()) return content.status();
  std::string found;
  bool seen = false;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(*content, '\n')) {
    ++number;
    absl::string_view text = line;
    text = text.substr(0, text.find('#'));
    std::vector<absl::string_view> fields =
        absl::StrSplit(text, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("network-path map ", file, ":", number, ": ", what));
    };
    if (fields.size() != 2) return bad("expected 'NODE PATH' (e.g. gpu-node-7 spine2/leaf7)");
    if (auto parts = parseNetworkPath(fields[1]); !parts.ok()) return bad(parts.status().message());
    if (fields[0] != node) continue;
    if (seen) return bad(absl::StrCat("node '", node, "' is named twice"));
    seen = true;
    found = std::string(fields[1]);
  }
  if (!seen) {
    return absl::NotFoundError(
        absl::StrCat("network-path map ", file, " does not name node '", node, "'"));
  }
  return found;
}

}  // namespace gangway::topology
