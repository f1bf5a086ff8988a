// Scale of the rendezvous: N simulated agents (gRPC clients in this one process) against a real
// `gangway scheduler` daemon. Measures the time from the last Join to every agent holding its
// assignment (node rank 0 publishing MASTER_PORT included), and the daemon's CPU time and peak
// memory. Each size runs in three modes, interleaved: open (no join token, the anchor), with a
// join token, and with a join token over TLS; every agent carries a session of its own in all
// three, as real agents do.
//
// usage: rdzv_scale GANGWAY_BINARY [N ...]     (default N: 64 256 1024 4096)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/synchronization/mutex.h>
#include <absl/synchronization/notification.h>
#include <absl/time/time.h>
#include <grpcpp/grpcpp.h>

#include "gangway/v1/rendezvous.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = gangway::v1;

struct Daemon {
  pid_t pid = -1;
  std::string address;
};

// How the agents reach the daemon.
struct Mode {
  const char* name;
  std::string join_token_file;  // empty: open
  std::string cert, key;        // empty: plaintext
  std::string join_token;
  std::string root_pem;
};

// The metadata names of credentials.h, written as a foreign client does.
constexpr char kJoinTokenMetadata[] = "x-gangway-join-token";
constexpr char kSessionMetadata[] = "x-gangway-session";

void authenticate(grpc::ClientContext& ctx, const Mode& mode, int agent) {
  if (!mode.join_token.empty()) ctx.AddMetadata(kJoinTokenMetadata, mode.join_token);
  ctx.AddMetadata(kSessionMetadata, absl::StrFormat("bench-session-%019d", agent));
}

Daemon startDaemon(const std::string& gangway, const Mode& mode) {
  int out[2];
  if (pipe(out) != 0) std::abort();
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    setenv("GANGWAY_LOG_LEVEL", "error", 1);  // 4096 agents leaving would log 4096 lines
    std::vector<std::string> args = {
        gangway, "scheduler",      "--listen", "127.0.0.1:0", "--heartbeat-timeout",
        "3600",  "--join-timeout", "3600"};
    if (!mode.join_token_file.empty()) {
      args.insert(args.end(), {"--join-token-file", mode.join_token_file});
    }
    if (!mode.cert.empty())
      args.insert(args.end(), {"--tls-cert", mode.cert, "--tls-key", mode.key});
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(gangway.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  std::string line;
  char c;
  while (read(out[0], &c, 1) == 1 && c != '\n') line += c;
  close(out[0]);
  return {pid, line.substr(line.rfind(' ') + 1)};
}

// utime + stime in seconds, and VmHWM in MB, of a process.
std::pair<double, double> usage(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stol(f);
    if (i == 15) stime = std::stol(f);
  }
  double hwm = 0;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) hwm = std::stod(line.substr(6)) / 1024;
  }
  return {static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK), hwm};
}

class Agents;

// One simulated agent's Watch stream.
class Watcher final : public grpc::ClientReadReactor<v1::RoundEvent> {
 public:
  Watcher(Agents& owner, v1::Rendezvous::Stub& stub, const Mode& mode, std::string job, int agent);
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& /*s*/) override { done_.Notify(); }
  void cancel() { ctx_.TryCancel(); }
  void waitDone() { done_.WaitForNotification(); }

 private:
  Agents& owner_;
  v1::Rendezvous::Stub& stub_;
  const Mode& mode_;
  int index_;
  std::string job_, agent_;
  grpc::ClientContext ctx_;
  v1::WatchRequest req_;
  v1::RoundEvent event_;
  absl::Notification done_;
  grpc::ClientContext publish_ctx_;
  v1::MasterPortRequest publish_req_;
  v1::MasterPortResponse publish_resp_;
};

class Agents {
 public:
  explicit Agents(int n) : n_(n) {}
  void assigned() {
    if (++count_ == n_) {
      absl::MutexLock lock(&mu_);
      t_all_ = Clock::now();
      all_ = true;
    }
  }
  Clock::time_point waitAll() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&all_));
    return t_all_;
  }

 private:
  const int n_;
  std::atomic<int> count_{0};
  absl::Mutex mu_;
  bool all_ = false;
  Clock::time_point t_all_;
};

Watcher::Watcher(Agents& owner, v1::Rendezvous::Stub& stub, const Mode& mode, std::string job,
                 int agent)
    : owner_(owner),
      stub_(stub),
      mode_(mode),
      index_(agent),
      job_(std::move(job)),
      agent_(absl::StrCat("agent-", agent)) {
  authenticate(ctx_, mode_, index_);
  req_.set_job_id(job_);
  req_.set_agent_id(agent_);
  stub_.async()->Watch(&ctx_, &req_, this);
  StartRead(&event_);
  StartCall();
}

void Watcher::OnReadDone(bool ok) {
  if (!ok) return;
  if (event_.has_assignment()) {
    const auto& a = event_.assignment();
    if (a.choose_master_port()) {
      publish_req_.set_job_id(job_);
      publish_req_.set_agent_id(agent_);
      publish_req_.set_round(a.round());
      publish_req_.set_port(29500);
      authenticate(publish_ctx_, mode_, index_);
      stub_.async()->PublishMasterPort(&publish_ctx_, &publish_req_, &publish_resp_,
                                       [this](grpc::Status s) {
                                         if (s.ok()) owner_.assigned();
                                       });
    } else if (a.master_port() > 0) {
      owner_.assigned();
    }
  }
  StartRead(&event_);
}

struct Sample {
  double assign_ms, joins_ms, cpu_s, hwm_mb;
};

Sample runScale(const std::string& gangway, int n, const Mode& mode) {
  Daemon d = startDaemon(gangway, mode);
  const auto [cpu0, hwm0] = usage(d.pid);
  // Several connections, as many real agents would have.
  constexpr int kChannels = 16;
  std::vector<std::unique_ptr<v1::Rendezvous::Stub>> stubs;
  for (int c = 0; c < kChannels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("gangway.bench.channel", c);  // distinct arguments: distinct connections
    auto creds =
        mode.root_pem.empty()
            ? grpc::InsecureChannelCredentials()
            : grpc::SslCredentials(grpc::SslCredentialsOptions{
                  .pem_root_certs = mode.root_pem, .pem_private_key = {}, .pem_cert_chain = {}});
    stubs.push_back(v1::Rendezvous::NewStub(grpc::CreateCustomChannel(d.address, creds, args)));
  }
  const std::string job = absl::StrCat("scale-", n);
  auto join = [&](int i) {
    v1::JoinRequest r;
    r.set_job_id(job);
    r.set_agent_id(absl::StrCat("agent-", i));
    r.set_address(absl::StrCat("10.", (i >> 16) & 255, ".", (i >> 8) & 255, ".", i & 255));
    r.set_local_world_size(8);
    r.set_min_nodes(n);
    r.set_max_nodes(n);
    grpc::ClientContext ctx;
    authenticate(ctx, mode, i);
    v1::JoinResponse resp;
    const grpc::Status s = stubs[i % kChannels]->Join(&ctx, r, &resp);
    if (!s.ok()) {
      std::fprintf(stderr, "join %d failed: %s\n", i, s.error_message().c_str());
      std::exit(1);
    }
  };
  Agents agents(n);
  std::vector<std::unique_ptr<Watcher>> watchers;
  const auto t_join0 = Clock::now();
  for (int i = 0; i < n - 1; ++i) {
    join(i);
    watchers.push_back(std::make_unique<Watcher>(agents, *stubs[i % kChannels], mode, job, i));
  }
  const auto t_last_join = Clock::now();
  join(n - 1);  // the gang is complete: the round forms in this call
  watchers.push_back(
      std::make_unique<Watcher>(agents, *stubs[(n - 1) % kChannels], mode, job, n - 1));
  const auto t_all = agents.waitAll();
  const auto [cpu1, hwm1] = usage(d.pid);
  for (auto& w : watchers) w->cancel();
  for (auto& w : watchers) w->waitDone();
  kill(d.pid, SIGTERM);
  waitpid(d.pid, nullptr, 0);
  const double assign_ms = std::chrono::duration<double, std::milli>(t_all - t_last_join).count();
  const double joins_ms = std::chrono::duration<double, std::milli>(t_last_join - t_join0).count();
  (void)hwm0;
  return {assign_ms, joins_ms, cpu1 - cpu0, hwm1};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string readAll(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fprintf(
        stderr,
        "usage: %s GANGWAY_BINARY [NODES ...]\n"
        "  N simulated agents against a real `gangway scheduler`, open, with a join token\n"
        "  and with a join token over TLS (openssl makes the certificate); default NODES:\n"
        "  64 256 1024 4096\n",
        argv[0]);
    return argc < 2 ? 2 : 0;
  }
  std::vector<int> sizes;
  for (int i = 2; i < argc; ++i) {
    const int n = std::atoi(argv[i]);
    if (n < 1) {
      std::fprintf(stderr, "rdzv_scale: NODES '%s': expected a number of agents >= 1\n", argv[i]);
      return 2;
    }
    sizes.push_back(n);
  }
  if (sizes.empty()) sizes = {64, 256, 1024, 4096};

  char dir_template[] = "/tmp/rdzv-scale-XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (dir == nullptr) {
    std::perror("rdzv_scale: mkdtemp");
    return 1;
  }
  const std::string tmp = dir;
  const std::string token_file = tmp + "/join.token";
  {
    std::ofstream(token_file) << "bench-join-token-0123456789abcdef0123456789abcdef\n";
    chmod(token_file.c_str(), 0600);
  }
  const std::string make_cert = absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj "
      "/CN=localhost -addext "
      "subjectAltName=IP:127.0.0.1 -keyout ",
      tmp, "/key.pem -out ", tmp, "/cert.pem 2>/dev/null");
  if (std::system(make_cert.c_str()) != 0) {
    std::fprintf(stderr, "rdzv_scale: openssl could not make a certificate (scripts/deps.sh)\n");
    return 1;
  }
  const std::vector<Mode> modes = {
      {.name = "open",
       .join_token_file = {},
       .cert = {},
       .key = {},
       .join_token = {},
       .root_pem = {}},
      {.name = "join token",
       .join_token_file = token_file,
       .cert = {},
       .key = {},
       .join_token = "bench-join-token-0123456789abcdef0123456789abcdef",
       .root_pem = {}},
      {.name = "join token + TLS",
       .join_token_file = token_file,
       .cert = tmp + "/cert.pem",
       .key = tmp + "/key.pem",
       .join_token = "bench-join-token-0123456789abcdef0123456789abcdef",
       .root_pem = readAll(tmp + "/cert.pem")},
  };

  std::printf(
      "rendezvous scale: N simulated agents (8 workers each) in one process, a real "
      "`gangway scheduler` daemon\n");
  constexpr int kReps = 3;
  std::printf(
      "medians of %d interleaved runs per size and mode; assign = from the last Join to every "
      "agent holding its assignment; ratio = the mode's assign / open's\n",
      kReps);
  std::printf("%12s  %-17s  %10s  %7s  %14s  %12s  %10s\n", "", "mode", "assign ms", "ratio",
              "N-1 joins ms", "daemon CPU s", "daemon MB");
  for (int n : sizes) {
    std::vector<std::vector<Sample>> samples(modes.size());
    for (int r = 0; r < kReps; ++r) {
      for (size_t m = 0; m < modes.size(); ++m) {
        const size_t k = (m + r) % modes.size();  // rotate the order between repetitions
        samples[k].push_back(runScale(argv[1], n, modes[k]));
      }
    }
    double open_assign = 0;
    for (size_t m = 0; m < modes.size(); ++m) {
      std::vector<double> assign, joins, cpu, mb;
      for (const Sample& s : samples[m]) {
        assign.push_back(s.assign_ms);
        joins.push_back(s.joins_ms);
        cpu.push_back(s.cpu_s);
        mb.push_back(s.hwm_mb);
      }
      if (m == 0) open_assign = median(assign);
      std::printf("%6d nodes  %-17s  %10.1f  %6.2fx  %14.1f  %12.2f  %10.1f\n", n, modes[m].name,
                  median(assign), median(assign) / open_assign, median(joins), median(cpu),
                  median(mb));
    }
    std::fflush(stdout);
  }
  std::system(absl::StrCat("rm -rf ", tmp).c_str());
  return 0;
}
