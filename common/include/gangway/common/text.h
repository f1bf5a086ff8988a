// Text from the network or from another process, made safe to hold, log and compare: names with
// a fixed character set, and one-line messages with their control characters escaped and their
// length bounded.
#pragma once

#include <cstddef>
#include <string>

#include <absl/strings/string_view.h>

namespace gangway {

// The longest name (job, agent, node, queue) gangway accepts: a DNS name's length.
inline constexpr std::size_t kMaxNameLength = 253;

// Whether `s` is a name: 1 to `max_length` letters, digits, '.', '_' or '-', beginning and
// ending with a letter or digit, without "..". Such a name is safe as one path component, a log
// field and a store key part.
bool isName(absl::string_view s, std::size_t max_length = kMaxNameLength);
// What isName expects, for error messages: "1 to 253 letters, digits, ...".
std::string nameRule(std::size_t max_length = kMaxNameLength);

// Whether `s` has at most `max_bytes` bytes and no control characters (UTF-8 is allowed): safe in
// a log line as it is.
bool isPrintableLine(absl::string_view s, std::size_t max_bytes);

// The longest message (a failure, a reason) gangway keeps from a peer; longer ones are cut.
inline constexpr std::size_t kMaxMessageBytes = 1024;

// `text` as one printable line of at most `max_bytes` bytes (plus a note of how much was cut):
// newlines, tabs and other control characters become "\n", "\t" or "\xNN", as do bytes that are
// not part of valid UTF-8. Cuts never split an escape or a character.
std::string escapeLine(absl::string_view text, std::size_t max_bytes = kMaxMessageBytes);

}  // namespace gangway
