#include "gangway/common/text.h"

#include <algorithm>
#include <cstdint>

#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>

namespace gangway {

bool isName(absl::string_view s, std::size_t max_length) {
  if (s.empty() || s.size() > max_length) return false;
  const auto alnum = [](char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
    if (c == '.' && i + 1 < s.size() && s[i + 1] == '.') return false;
  }
  return true;
}

std::string nameRule(std::size_t max_length) {
  return absl::StrCat("1 to ", max_length,
                      " letters, digits, '.', '_' or '-', beginning and ending with a letter or "
                      "digit");
}

bool isPrintableLine(absl::string_view s, std::size_t max_bytes) {
  if (s.size() > max_bytes) return false;
  return std::none_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7f;
  });
}

namespace {

// The length of the valid UTF-8 sequence at the start of `s` (1 to 4), or 0 if there is none.
std::size_t utf8Length(absl::string_view s) {
  const auto b0 = static_cast<unsigned char>(s[0]);
  std::size_t n = 0;
  uint32_t cp = 0;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
    cp = b0 & 0x1fu;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    cp = b0 & 0x0fu;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    cp = b0 & 0x07u;
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  for (std::size_t i = 1; i < n; ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if ((b & 0xc0u) != 0x80u) return 0;
    cp = (cp << 6) | (b & 0x3fu);
  }
  // Overlong forms, surrogates and code points past U+10FFFF are not valid UTF-8.
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff)) {
    return 0;
  }
  return n;
}

}  // namespace

std::string escapeLine(absl::string_view text, std::size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::string piece;
    std::size_t consumed = 1;
    if (c == '\n') {
      piece = "\\n";
    } else if (c == '\t') {
      piece = "\\t";
    } else if (c == '\r') {
      piece = "\\r";
    } else if (c >= 0x20 && c < 0x7f) {
      piece = std::string(1, static_cast<char>(c));
    } else if (const std::size_t n = c >= 0x80 ? utf8Length(text.substr(i)) : 0; n > 0) {
      piece = std::string(text.substr(i, n));
      consumed = n;
    } else {
      piece = absl::StrFormat("\\x%02x", c);  // other control characters, invalid UTF-8
    }
    if (out.size() + piece.size() > max_bytes) break;
    out += piece;
    i += consumed;
  }
  if (const std::size_t left = text.size() - i; left > 0) {
    absl::StrAppend(&out, "... (", left, left == 1 ? " more byte)" : " more bytes)");
  }
  return out;
}

}  // namespace gangway
