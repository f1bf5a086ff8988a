// The credentials a control-plane call carries, and the ones derived from them. Every call names
// what it holds in metadata entries; the server's authorization matrix (scheduler/README.md) says
// which of them each RPC needs.
//
// - the job token (kTokenMetadata): a job's secret (a `token_file`, or the token Submit
//   returned), the admin token for the Cluster service's operator calls, or a worker's store
//   token (below);
// - the join token (kJoinTokenMetadata): the cluster credential of agents and pool agents
//   (`--join-token-file`, from a Kubernetes Secret), needed to create a rendezvous job or
//   register a node;
// - the session (kSessionMetadata): 128 random bits an agent draws once per process and binds to
//   its agent id (or node id) with its first Join (RegisterNode). The calls that act for an agent
//   need it, so that holding a job's token is not enough to act for another agent of the job.
#pragma once

#include <string>

namespace gangway::scheduler {

inline constexpr char kTokenMetadata[] = "x-gangway-token";
inline constexpr char kJoinTokenMetadata[] = "x-gangway-join-token";
inline constexpr char kSessionMetadata[] = "x-gangway-session";

// Sessions are at least this long (32 hex digits: 128 bits) and at most kMaxSessionBytes.
inline constexpr std::size_t kMinSessionBytes = 32;
inline constexpr std::size_t kMaxSessionBytes = 128;

struct CallCredentials {
  std::string token;
  std::string join_token;
  std::string session;
};

// `bytes` random bytes from the kernel's generator, as lowercase hex (2 * bytes digits).
std::string randomSecret(std::size_t bytes = 16);

// The workers' store token of job `job_id` whose secret is `secret`: HMAC-SHA256(secret,
// "gangway store token\n" + job_id), hex. It opens that job's Store and nothing else, and the
// secret cannot be recovered from it. Empty when `secret` is (an open job).
std::string storeTokenFor(const std::string& secret, const std::string& job_id);

}  // namespace gangway::scheduler
