// Turns a worker's byte stream into whole prefixed lines ("[rank3]:...\n"), so that the output of
// many workers, merged by one writer, is never interleaved mid-line.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace gangway::launcher {

class LinePrefixer {
 public:
  // A line longer than `max_line` bytes is emitted in pieces of that size, each prefixed.
  explicit LinePrefixer(std::string prefix, std::size_t max_line = std::size_t{64} * 1024)
      : prefix_(std::move(prefix)), max_line_(max_line) {}

  // Appends every complete line in `data` (with the bytes held from earlier calls) to `out`.
  void feed(std::string_view data, std::string& out);
  // Appends the held partial line, if any, terminated with '\n' (for end of stream).
  void finish(std::string& out);

  std::size_t pending() const { return partial_.size(); }

 private:
  std::string prefix_;
  std::size_t max_line_;
  std::string partial_;
};

}  // namespace gangway::launcher
