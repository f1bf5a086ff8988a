// A minimal HTTP/1.1 endpoint for Prometheus scrapes and Kubernetes probes: GET PATH is answered
// by `handler(PATH)` (the query string removed); other methods get 405. One thread, one connection
// at a time, each closed after its response: a scrape or a probe every few seconds is its load.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <absl/status/statusor.h>

namespace gangway::scheduler {

struct HttpResponse {
  int status = 200;  // 200, 404 or 503
  std::string body;
  std::string content_type = "text/plain; version=0.0.4";
};

class HttpEndpoint {
 public:
  using Handler = std::function<HttpResponse(const std::string& path)>;
  // Binds `listen` (HOST:PORT, port 0: any free port). InvalidArgument for a bad address,
  // Unavailable when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> start(const std::string& listen,
                                                             Handler handler);
  virtual ~HttpEndpoint() = default;  // stops serving
  virtual int port() const = 0;
};

}  // namespace gangway::scheduler
