#include "console.h"

#include <cerrno>
#include <string>

#include <unistd.h>

#include "gangway/launcher/supervisor.h"

namespace gangway::launcher {

void writeAll(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the reader went away; the job goes on
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

void printFailureSummary(std::string_view block) { writeAll(2, block); }

void printRunMessage(const std::string& message) {
  if (message.empty()) return;
  writeAll(2, "gangway run: " + message + "\n");
}

}  // namespace gangway::launcher
