// What `gangway run` writes for its user on stderr, apart from log lines and the workers' own
// output. One place, so that every message has the same form.
#pragma once

#include <string_view>

namespace gangway::launcher {

// Writes all of `text` to `fd`, retrying short writes; gives up quietly when the reader is gone
// (the job goes on).
void writeAll(int fd, std::string_view text);

// torchrun's root-cause block (formatFailureSummary), as it is.
void printFailureSummary(std::string_view block);

}  // namespace gangway::launcher
