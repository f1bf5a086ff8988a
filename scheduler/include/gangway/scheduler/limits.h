// Bounds on everything a peer can make the control plane hold. Each default is documented in
// scheduler/README.md ("Limits") and settable with a `gangway scheduler` flag; a call past a limit
// fails with RESOURCE_EXHAUSTED (a quota) or INVALID_ARGUMENT (a malformed request) and changes
// nothing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gangway::scheduler {

// One job's key-value store.
struct StoreLimits {
  std::size_t max_key_bytes = 4096;
  std::size_t max_value_bytes = std::size_t{1} << 20;
  std::size_t max_bytes = std::size_t{64} << 20;  // keys and values together
  std::size_t max_keys = 100'000;
  std::size_t max_waits = 1024;          // pending Get and Wait calls
  std::size_t max_keys_per_call = 1024;  // keys of one Wait or Check
};

struct Limits {
  // The largest request gRPC accepts: a store value with room for its key.
  std::size_t max_request_bytes = (std::size_t{1} << 20) + (std::size_t{16} << 10);
  // Rendezvous and cluster requests other than store values (a Join with its topology, a
  // report, a registration, a submit).
  std::size_t max_control_request_bytes = std::size_t{64} << 10;
  // Calls one connection may have open at once (HTTP/2 concurrent streams); a client queues the
  // others. Bounds the memory a flood of calls on one connection costs before any is refused.
  std::size_t max_calls_per_connection = 2048;
  StoreLimits store;
  std::size_t max_jobs = 4096;  // rendezvous jobs held, ended ones still retained included
  std::size_t max_agents_per_job = 8192;  // members, standbys and agents waiting
  int max_nodes_per_job = 65536;          // --nnodes MAX
  int max_workers_per_node = 4096;        // --nproc-per-node
  std::size_t max_labels = 32;            // per node
  std::size_t max_cluster_nodes = 10'000;
  // Events queued for one Watch stream that its peer has not read: past either, the stream is
  // closed (RESOURCE_EXHAUSTED) and its agent reconnects.
  std::size_t max_stream_events = 256;
  std::size_t max_stream_bytes = std::size_t{1} << 20;
};

}  // namespace gangway::scheduler
