#include "http_endpoint.h"

#include <cstring>
#include <string>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

#include "gangway/common/host_port.h"
#include "gangway/common/log.h"
#include "gangway/common/status.h"

namespace gangway::scheduler {
namespace {

class Impl final : public HttpEndpoint {
 public:
  Impl(int listen_fd, int port, Handler handler)
      : listen_fd_(listen_fd), port_(port), handler_(std::move(handler)) {
    if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) stop_pipe_[0] = stop_pipe_[1] = -1;
    thread_ = std::thread([this] { loop(); });
  }
  ~Impl() override {
    const char c = 0;
    (void)!::write(stop_pipe_[1], &c, 1);
    thread_.join();
    ::close(listen_fd_);
    ::close(stop_pipe_[0]);
    ::close(stop_pipe_[1]);
  }
  int port() const override { return port_; }

 private:
  void loop() {
    for (;;) {
      pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0) return;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      serve(fd);
      ::close(fd);
    }
  }

  // Reads the request head (at most 8 KiB, 2 s), answers, closes.
  void serve(int fd) {
    std::string head;
    char buf[2048];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) return;
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return;
      head.append(buf, static_cast<size_t>(n));
    }
    HttpResponse r;
    if (head.rfind("GET ", 0) == 0) {
      const size_t end = head.find_first_of(" ?\r", 4);
      r = handler_(head.substr(4, end == std::string::npos ? std::string::npos : end - 4));
    } else {
      r = {405, "only GET is served here\n"};
    }
    const char* reason = r.status == 200   ? "OK"
                         : r.status == 404 ? "Not Found"
                         : r.status == 405 ? "Method Not Allowed"
                         : r.status == 503 ? "Service Unavailable"
                                           : "Error";
    const std::string response = absl::StrCat(
        "HTTP/1.1 ", r.status, " ", reason, "\r\nContent-Type: ", r.content_type,
        "\r\nContent-Length: ", r.body.size(), "\r\nConnection: close\r\n\r\n", r.body);
    size_t off = 0;
    while (off < response.size()) {
      const ssize_t n = ::send(fd, response.data() + off, response.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  const int listen_fd_;
  const int port_;
  Handler handler_;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::start(const std::string& listen,
                                                                  Handler handler) {
  auto parsed = parseHostPort(listen, "HTTP address", -1);
  if (!parsed.ok()) return parsed.status();
  const std::string& host = parsed->host;
  const int port = parsed->port;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port_text = std::to_string(port);
  if (::getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &res) != 0 ||
      res == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP address '", listen, "': cannot resolve '", host, "'"));
  }
  const int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || ::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 16) != 0) {
    const int err = errno;
    ::freeaddrinfo(res);
    if (fd >= 0) ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on HTTP address '", listen, "': ", std::strerror(err)));
  }
  ::freeaddrinfo(res);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port = bound.ss_family == AF_INET6
                             ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                             : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return std::unique_ptr<HttpEndpoint>(new Impl(fd, bound_port, std::move(handler)));
}

}  // namespace gangway::scheduler
