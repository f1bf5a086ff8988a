// Reading whole files: plain ones (configuration, certificates, snapshots) and secrets (tokens).
#pragma once

#include <cstddef>
#include <string>

#include <absl/status/statusor.h>
#include <absl/strings/string_view.h>

namespace gangway {

// Files gangway reads whole are small; anything larger is refused rather than read into memory.
inline constexpr std::size_t kMaxReadFileBytes = 64 << 20;

// The content of `path`. NotFound when it does not exist; InvalidArgument when it cannot be read
// (a directory, no permission) or is larger than `max_bytes`. Messages read "WHAT 'PATH': ...",
// with `what` naming the input ("--topology", "TLS certificate").
absl::StatusOr<std::string> readFile(const std::string& path, absl::string_view what,
                                     std::size_t max_bytes = kMaxReadFileBytes);

// A secret (a token): the file's content without surrounding whitespace. Refused, with a message
// that says how to fix it, when the file is empty, larger than 64 KiB, readable or writable by
// everyone, or open to its group while this user owns it (as ssh refuses a private key: a group
// that may read a secret someone else owns is how Kubernetes shares a Secret with a pod's
// fsGroup, and stays allowed).
absl::StatusOr<std::string> readSecretFile(const std::string& path, absl::string_view what);

}  // namespace gangway
