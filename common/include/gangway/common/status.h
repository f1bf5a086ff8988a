// Status conventions shared by every gangway component.
//
// Functions that can fail return absl::Status or absl::StatusOr<T> with canonical codes; no
// exceptions cross gangway APIs. Errors from system calls and foreign libraries are converted at
// the call site, and carry the file:line where they happened.
#pragma once

#include <cerrno>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/string_view.h>

namespace gangway {

// Converts an errno value into a Status whose message names the failed operation and the place.
// Example: `if (pipe2(fds, O_CLOEXEC) != 0) return GW_ERRNO("pipe2");`
absl::Status errnoStatus(int error_number, absl::string_view what, const char* file, int line);

}  // namespace gangway

#define GW_ERRNO(what) ::gangway::errnoStatus(errno, (what), __FILE__, __LINE__)

#define GW_STATUS_CONCAT_INNER_(a, b) a##b
#define GW_STATUS_CONCAT_(a, b) GW_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define GW_RETURN_IF_ERROR(expr)                                \
  do {                                                          \
    if (::absl::Status gw_status_ = (expr); !gw_status_.ok()) { \
      return gw_status_;                                        \
    }                                                           \
  } while (false)

// `GW_ASSIGN_OR_RETURN(auto x, makeX());` declares x from a StatusOr, or returns its error.
// NOLINTBEGIN(bugprone-macro-parentheses): `lhs` is a declaration and cannot be parenthesised.
#define GW_ASSIGN_OR_RETURN(lhs, expr) \
  GW_ASSIGN_OR_RETURN_IMPL_(GW_STATUS_CONCAT_(gw_statusor_, __LINE__), lhs, expr)
#define GW_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) {                                \
    return std::move(tmp).status();               \
  }                                               \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)
