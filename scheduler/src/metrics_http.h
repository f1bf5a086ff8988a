// A minimal HTTP/1.1 endpoint for Prometheus to scrape: GET /metrics returns the text that
// `body()` produces (text exposition format 0.0.4); any other path is a 404. One thread, one
// connection at a time, each closed after its response: a scrape every few seconds is its load.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <absl/status/statusor.h>

namespace gangway::scheduler {

class MetricsHttpServer {
 public:
  // Binds `listen` (HOST:PORT, port 0: any free port). InvalidArgument for a bad address,
  // Unavailable when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> start(
      const std::string& listen, std::function<std::string()> body);
  virtual ~MetricsHttpServer() = default;  // stops serving
  virtual int port() const = 0;
};

}  // namespace gangway::scheduler
