// Fatal checks for states that cannot happen unless gangway itself is wrong (STYLE.md: an
// environment failure is a Status, an impossible state is a fatal check). Unlike assert(), a check
// stays in release builds. Header-only, so that every layer, libgangway_kv included, can use it
// without linking anything.
//
//   GW_CHECK(ref_[b] > 0);
//   GW_CHECK_MSG(it != map.end(), "block has no entry");
#pragma once

#include <cstdio>
#include <cstdlib>

namespace gangway::internal {

[[noreturn]] inline void checkFailed(const char* condition, const char* message, const char* file,
                                     int line) {
  std::fprintf(stderr, "gangway: fatal: %s:%d: check failed: %s%s%s\n", file, line, condition,
               message != nullptr ? ": " : "", message != nullptr ? message : "");
  std::fflush(stderr);
  std::abort();
}

}  // namespace gangway::internal

#define GW_CHECK_MSG(condition, message)                                           \
  do {                                                                             \
    if (!(condition)) [[unlikely]] {                                               \
      ::gangway::internal::checkFailed(#condition, (message), __FILE__, __LINE__); \
    }                                                                              \
  } while (false)

#define GW_CHECK(condition) GW_CHECK_MSG(condition, nullptr)
