#include "gangway/launcher/line_prefixer.h"

namespace gangway::launcher {

void LinePrefixer::feed(std::string_view data, std::string& out) {
  while (!data.empty()) {
    const std::size_t nl = data.find('\n');
    const std::size_t room = max_line_ - partial_.size();
    if (nl == std::string_view::npos && data.size() < room) {
      partial_.append(data);
      return;
    }
    // Emit one line: up to and including '\n', or a full-size piece of an over-long line.
    const bool whole = nl != std::string_view::npos && nl < room;
    const std::size_t take = whole ? nl + 1 : room;
    out.append(prefix_);
    out.append(partial_);
    out.append(data.substr(0, take));
    if (!whole) out.push_back('\n');
    partial_.clear();
    data.remove_prefix(take);
  }
}

void LinePrefixer::finish(std::string& out) {
  if (partial_.empty()) return;
  out.append(prefix_);
  out.append(partial_);
  out.push_back('\n');
  partial_.clear();
}

}  // namespace gangway::launcher
