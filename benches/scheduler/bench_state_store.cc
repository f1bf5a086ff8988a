// The scheduler's durable state store (gangway/scheduler/state_store.h), against the goals:
//   (a) acknowledged writes per second with fsync: one thread, put() of a 300-byte value and
//       commit() of a transaction (one compare, three 300-byte puts), each durable before it
//       returns; the embedded store against etcd v3 (started here, the anchor). Median over reps
//       of at least 1 s each (and 200 writes, unless 5 s pass first).
//   (b) recovery after kill -9 with 10,000 jobs in the store: a child process writes 10,000 job
//       records (~500 B) and 10,000 assignment records (~200 B), then keeps updating jobs; it is
//       killed with SIGKILL once it has acknowledged the 20,000 and a log tail of updates after
//       the snapshot (default snapshot_every, 10,000). Timed: openEmbeddedStateStore() + list of
//       "jobs/" in a new process (a restarted scheduler), right after the kill and again with the
//       store's files dropped from the page cache. Every acknowledged write (reported by the child
//       through a pipe after put() returned) is checked to be there, with nothing beyond the one
//       write in flight. Goal: under 1 s.
// Timed with std::chrono::steady_clock. See README.md.
//
// Usage: bench_state_store [--reps R] [--skip-etcd] [--dir DIR]
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "gangway/scheduler/state_store.h"

namespace sched = gangway::scheduler;

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kEtcd = "/usr/bin/etcd";
constexpr int kJobs = 10000;
constexpr int64_t kSnapshotEvery = 10000;  // EmbeddedStateStoreOptions' default
constexpr double kRecoveryGoalMs = 1000.0;

struct Options {
  int reps = 7;
  bool skip_etcd = false;
  std::string dir = "/tmp";
  std::string only = "ab";  // sections to run
};

// A directory under `base`, removed with everything in it when this goes.
class TempDir {
 public:
  explicit TempDir(const std::string& base) {
    std::string tmpl = base + "/gw_bench_state_XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::fprintf(stderr, "bench_state_store: mkdtemp in %s: %s\n", base.c_str(),
                   std::strerror(errno));
      std::exit(1);
    }
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

template <typename T>
T valueOf(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    std::fprintf(stderr, "bench_state_store: %s: %s\n", what, v.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(v);
}

std::string fsName(const std::string& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) return "?";
  switch (static_cast<unsigned long>(st.f_type)) {
    case 0xEF53UL:
      return "ext4";
    case 0x01021994UL:
      return "tmpfs";
    case 0x58465342UL:
      return "xfs";
    case 0x9123683EUL:
      return "btrfs";
    case 0x794C7630UL:
      return "overlayfs";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "fs 0x%lx", static_cast<unsigned long>(st.f_type));
      return buf;
    }
  }
}

// Evicts a file's pages from the page cache (they are clean: the store fsynced them), so that the
// next read comes from the disk. Only this file's pages: nothing else on the machine is touched.
void dropPageCache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fdatasync(fd);
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

off_t fileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

// `len` bytes that start with `head` (JSON-like, as the scheduler would write) and are padded.
std::string padded(std::string head, size_t len) {
  if (head.size() < len) head.append(len - head.size(), 'x');
  return head;
}

std::string jobId(int64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "job-%06lld", static_cast<long long>(i));
  return buf;
}

// --- a real etcd for the anchor rows ---

// The running etcd's process group, for the SIGINT/SIGTERM handler (etcd has its own group, so a
// ^C at the terminal would not reach it).
volatile sig_atomic_t g_etcd_pgid = 0;

void killEtcdAndExit(int sig) {
  if (g_etcd_pgid > 0) ::kill(-static_cast<pid_t>(g_etcd_pgid), SIGKILL);
  ::_exit(128 + sig);
}

// etcd (Debian's etcd-server) on free loopback ports with its data in a temporary directory,
// killed (its whole process group) when this goes. available() is false when it is not installed.
class EtcdProcess {
 public:
  explicit EtcdProcess(const std::string& base) : dir_(base) {
    if (::access(kEtcd, X_OK) != 0) return;
    const std::string client = "http://127.0.0.1:" + std::to_string(freePort());
    const std::string peer = "http://127.0.0.1:" + std::to_string(freePort());
    endpoint_ = client.substr(std::string_view("http://").size());
    const std::string log = logPath();
    const std::string data = dir_.path() + "/data";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execl(kEtcd, "etcd", "--name", "bench", "--data-dir", data.c_str(), "--listen-client-urls",
              client.c_str(), "--advertise-client-urls", client.c_str(), "--listen-peer-urls",
              peer.c_str(), "--initial-advertise-peer-urls", peer.c_str(), "--initial-cluster",
              ("bench=" + peer).c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (pid_ > 0) {
      ::setpgid(pid_, pid_);  // as the child does, so that the group exists before a signal
      g_etcd_pgid = pid_;
      ::signal(SIGINT, killEtcdAndExit);
      ::signal(SIGTERM, killEtcdAndExit);
    }
  }
  ~EtcdProcess() {
    if (pid_ > 0) {
      g_etcd_pgid = 0;
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);  // in case it died before its setpgid
      ::waitpid(pid_, nullptr, 0);
    }
  }
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  bool available() const { return pid_ > 0; }
  const std::string& endpoint() const { return endpoint_; }
  std::string logPath() const { return dir_.path() + "/etcd.log"; }
  const std::string& dataParent() const { return dir_.path(); }

 private:
  static int freePort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      std::fprintf(stderr, "bench_state_store: no free loopback port: %s\n", std::strerror(errno));
      std::exit(1);
    }
    ::close(fd);
    return ntohs(a.sin_port);
  }

  TempDir dir_;
  pid_t pid_ = -1;
  std::string endpoint_;
};

std::string etcdVersion() {
  FILE* p = ::popen("/usr/bin/etcd --version 2>&1", "r");
  if (p == nullptr) return "?";
  char line[128] = {};
  const bool got = std::fgets(line, sizeof(line), p) != nullptr;
  ::pclose(p);
  if (!got) return "?";
  std::string s = line;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  const std::string_view prefix = "etcd Version: ";
  return s.starts_with(prefix) ? s.substr(prefix.size()) : s;
}

// --- (a) acknowledged writes per second ---

struct WriteRow {
  std::string backend;
  std::string op;
  std::function<absl::Status(int64_t i)> write;  // the i-th write
  std::vector<double> rates;                     // writes per second, one per rep
  int64_t writes = 0;                            // over every rep
  double median() const { return rates[rates.size() / 2]; }
};

// One rep: writes until at least 1 s has passed and 200 writes are done (or 5 s have passed).
// False, after printing why, when a write fails.
bool measureRep(WriteRow& row) {
  const auto t0 = Clock::now();
  int64_t n = 0;
  double elapsed = 0;
  for (;;) {
    if (const absl::Status s = row.write(row.writes + n); !s.ok()) {
      std::fprintf(stderr, "bench_state_store: %s %s: %s\n", row.backend.c_str(), row.op.c_str(),
                   s.ToString().c_str());
      return false;
    }
    ++n;
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    if (elapsed >= 1.0 && (n >= 200 || elapsed >= 5.0)) break;
  }
  row.rates.push_back(static_cast<double>(n) / elapsed);
  row.writes += n;
  return true;
}

// put(): jobs/job-NNNNNN (10,000 keys, over and over) with a 300-byte value.
// commit(): a compare on the scheduler's epoch key (it holds), then three 300-byte puts: the job,
// its assignment and its queue's usage, as the scheduler persists an admission.
// False, after printing why, when the epoch key cannot be written.
bool addWriteRows(const std::string& backend, sched::StateStore& store,
                  std::vector<WriteRow>& rows) {
  static const std::string kValue(300, 'v');
  rows.push_back(
      {backend,
       "put (300 B)",
       [&store](int64_t i) { return store.put("jobs/" + jobId(i % kJobs), kValue).status(); },
       {},
       0});
  const absl::StatusOr<int64_t> put_epoch = store.put("scheduler/epoch", "1");
  if (!put_epoch.ok()) {
    std::fprintf(stderr, "bench_state_store: %s: put scheduler/epoch: %s\n", backend.c_str(),
                 put_epoch.status().ToString().c_str());
    return false;
  }
  const int64_t epoch = *put_epoch;
  rows.push_back(
      {backend,
       "commit (1 cmp, 3 x 300 B)",
       [&store, epoch](int64_t i) {
         sched::StateTxn txn;
         txn.compares.push_back({"scheduler/epoch", epoch});
         const std::string id = jobId(i % kJobs);
         txn.ops.push_back({sched::StateTxn::Op::Kind::kPut, "jobs/" + id, kValue});
         txn.ops.push_back({sched::StateTxn::Op::Kind::kPut, "assignments/" + id, kValue});
         txn.ops.push_back({sched::StateTxn::Op::Kind::kPut,
                            "queues/q" + std::to_string(i % 4) + "/used", kValue});
         absl::StatusOr<sched::StateTxnResult> r = store.commit(txn);
         if (!r.ok()) return r.status();
         if (!r->succeeded) return absl::InternalError("the epoch compare failed");
         return absl::OkStatus();
       },
       {},
       0});
  return true;
}

// --- (b) recovery after kill -9 ---

// The i-th write of the recovery child (its revision is i + 1: one put each, in a new store).
std::pair<std::string, std::string> record(int64_t i) {
  if (i < kJobs) {
    return {"jobs/" + jobId(i),
            padded("{\"id\":\"" + jobId(i) +
                       "\",\"queue\":\"prod\",\"priority\":1,\"min_nodes\":8,\"max_nodes\":16,"
                       "\"gpus_per_node\":8,\"state\":\"pending\",\"version\":0,\"pad\":\"",
                   500)};
  }
  if (i < 2 * kJobs) {
    const int64_t j = i - kJobs;
    std::string nodes = "{\"job\":\"" + jobId(j) + "\",\"nodes\":[";
    for (int k = 0; k < 8; ++k) nodes += "\"node-" + std::to_string((j * 8 + k) % 100000) + "\",";
    return {"assignments/" + jobId(j), padded(nodes, 200)};
  }
  const int64_t j = (i - 2 * kJobs) % kJobs;
  return {"jobs/" + jobId(j), padded("{\"id\":\"" + jobId(j) +
                                         "\",\"queue\":\"prod\",\"priority\":1,\"state\":"
                                         "\"running\",\"version\":" +
                                         std::to_string(i) + ",\"pad\":\"",
                                     500)};
}

// The child: writes record(0), record(1), ... for ever, reporting each index once acknowledged.
[[noreturn]] void writerChild(const std::string& dir, int ack_fd) {
  auto s = sched::openEmbeddedStateStore({dir, kSnapshotEvery});
  if (!s.ok()) ::_exit(3);
  for (int64_t i = 0;; ++i) {
    const auto [key, value] = record(i);
    if (!(*s)->put(key, value).ok()) ::_exit(4);
    if (::write(ack_fd, &i, sizeof(i)) != static_cast<ssize_t>(sizeof(i))) ::_exit(5);
  }
}

struct RecoveryRun {
  double ms = 0;         // openEmbeddedStateStore + list("jobs/") in a new process after the kill
  double cold_ms = 0;    // the same again, with the store's files dropped from the page cache
  int64_t acked = 0;     // writes the child acknowledged
  int64_t revision = 0;  // after recovery
  size_t jobs_listed = 0;
  off_t snapshot_bytes = 0, wal_bytes = 0;
  std::string problem;  // empty: every acknowledged write is there, nothing beyond
};

struct TimedOpen {
  bool ok = false;
  double ms = 0;    // openEmbeddedStateStore + list("jobs/")
  size_t jobs = 0;  // entries listed
};

// Times openEmbeddedStateStore + list("jobs/") in a new process (a restarted scheduler: a fresh
// heap, nothing of the store in memory), which reports through a pipe.
TimedOpen timedOpenInChild(const std::string& data) {
  int fds[2];
  if (::pipe(fds) != 0) {
    std::fprintf(stderr, "bench_state_store: pipe: %s\n", std::strerror(errno));
    std::exit(1);
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::fprintf(stderr, "bench_state_store: fork: %s\n", std::strerror(errno));
    std::exit(1);
  }
  if (pid == 0) {
    ::close(fds[0]);
    const auto t0 = Clock::now();
    auto store = sched::openEmbeddedStateStore({data, kSnapshotEvery});
    auto jobs = store.ok() ? (*store)->list("jobs/")
                           : absl::StatusOr<std::vector<sched::StateEntry>>(store.status());
    const auto t1 = Clock::now();
    if (!jobs.ok()) {
      std::fprintf(stderr, "bench_state_store: recovery: %s\n", jobs.status().ToString().c_str());
      ::_exit(3);
    }
    TimedOpen r{true, std::chrono::duration<double, std::milli>(t1 - t0).count(), jobs->size()};
    ::_exit(::write(fds[1], &r, sizeof(r)) == static_cast<ssize_t>(sizeof(r)) ? 0 : 4);
  }
  ::close(fds[1]);
  TimedOpen r;
  if (::read(fds[0], &r, sizeof(r)) != static_cast<ssize_t>(sizeof(r))) r = TimedOpen{};
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) r.ok = false;
  return r;
}

// A child writes 2 x kJobs records and `tail` updates beyond them, then is killed; the parent
// recovers the store and checks it.
RecoveryRun recoverOnce(const std::string& base, int64_t tail) {
  TempDir dir(base);
  const std::string data = dir.path() + "/store";
  int fds[2];
  if (::pipe(fds) != 0) {
    std::fprintf(stderr, "bench_state_store: pipe: %s\n", std::strerror(errno));
    std::exit(1);
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::fprintf(stderr, "bench_state_store: fork: %s\n", std::strerror(errno));
    std::exit(1);
  }
  if (pid == 0) {
    ::close(fds[0]);
    writerChild(data, fds[1]);
  }
  ::close(fds[1]);
  const int64_t kill_after = 2 * kJobs + tail - 1;  // the index whose acknowledgement triggers it
  int64_t last = -1;
  int64_t v = 0;
  while (last < kill_after && ::read(fds[0], &v, sizeof(v)) == static_cast<ssize_t>(sizeof(v))) {
    last = v;
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  while (::read(fds[0], &v, sizeof(v)) == static_cast<ssize_t>(sizeof(v))) last = v;
  ::close(fds[0]);
  RecoveryRun run;
  run.acked = last + 1;
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL || last < kill_after) {
    run.problem = "the writer exited on its own (status " + std::to_string(status) + ") after " +
                  std::to_string(run.acked) + " writes";
    return run;
  }
  run.snapshot_bytes = fileSize(data + "/snapshot");
  run.wal_bytes = fileSize(data + "/wal");

  // The recovery, timed in a new process as a restarted scheduler would do it.
  const TimedOpen first = timedOpenInChild(data);
  if (!first.ok) {
    run.problem = "recovery failed in a new process (see its error above)";
    return run;
  }
  run.ms = first.ms;
  // The check, in this process, on the recovered directory.
  absl::StatusOr<std::unique_ptr<sched::StateStore>> store =
      sched::openEmbeddedStateStore({data, kSnapshotEvery});
  absl::StatusOr<std::vector<sched::StateEntry>> jobs =
      store.ok() ? (*store)->list("jobs/")
                 : absl::StatusOr<std::vector<sched::StateEntry>>(store.status());
  if (!jobs.ok()) {
    run.problem = "reopening after recovery: " + jobs.status().ToString();
    return run;
  }
  if (jobs->size() != first.jobs) {
    run.problem = "the recovery listed " + std::to_string(first.jobs) + " jobs, a reopening " +
                  std::to_string(jobs->size());
    return run;
  }
  run.jobs_listed = jobs->size();
  run.revision = (*store)->revision();
  if (run.revision < run.acked || run.revision > run.acked + 1) {
    run.problem = "revision " + std::to_string(run.revision) + " after " +
                  std::to_string(run.acked) + " acknowledged writes";
    return run;
  }
  // What the store must hold: the writes up to its revision (the acknowledged ones, and possibly
  // the one in flight when the child died).
  std::map<std::string, std::pair<std::string, int64_t>> want;
  for (int64_t i = 0; i < run.revision; ++i) {
    auto [key, value] = record(i);
    want[key] = {std::move(value), i + 1};
  }
  const std::vector<sched::StateEntry> assignments =
      valueOf((*store)->list("assignments/"), "list assignments/");
  if (jobs->size() + assignments.size() != want.size()) {
    run.problem = std::to_string(jobs->size() + assignments.size()) + " keys, expected " +
                  std::to_string(want.size());
    return run;
  }
  const std::vector<sched::StateEntry>& listed_jobs = *jobs;
  for (const std::vector<sched::StateEntry>* list : {&listed_jobs, &assignments}) {
    for (const sched::StateEntry& e : *list) {
      const auto it = want.find(e.key);
      if (it == want.end() || it->second.first != e.value || it->second.second != e.mod_revision) {
        run.problem = "key " + e.key + " is not its last acknowledged write";
        return run;
      }
    }
  }
  // The same recovery from the disk, as after a machine restart: the store closed, its files'
  // pages dropped from the page cache, opened by a new process (the torn tail is already cut).
  store->reset();
  for (const char* f : {"/snapshot", "/wal"}) dropPageCache(data + f);
  const TimedOpen cold = timedOpenInChild(data);
  run.cold_ms = cold.ms;
  if (!cold.ok || cold.jobs != run.jobs_listed) {
    run.problem = "reopening from a dropped page cache: " + std::to_string(cold.jobs) + " jobs";
  }
  return run;
}

// --- flags and output ---

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "bench_state_store: %s (usage: bench_state_store [--reps R>=3] [--skip-etcd] "
               "[--dir DIR] [--only ab])\n",
               why.c_str());
  std::exit(2);
}

Options parseFlags(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--skip-etcd") {
      o.skip_etcd = true;
    } else if (arg == "--reps" || arg == "--dir" || arg == "--only") {
      if (i + 1 >= argc) usage(std::string(arg) + " needs a value");
      const std::string_view value = argv[++i];
      if (arg == "--only") {
        if (value.empty() || value.find_first_not_of("ab") != std::string_view::npos) {
          usage("bad value for --only: '" + std::string(value) + "' (letters of ab)");
        }
        o.only = value;
      } else if (arg == "--dir") {
        o.dir = value;
        if (!std::filesystem::is_directory(o.dir)) usage("--dir: not a directory: " + o.dir);
      } else {
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), o.reps);
        if (ec != std::errc() || end != value.data() + value.size() || o.reps < 3) {
          usage("bad value for --reps: '" + std::string(value) + "'");
        }
      }
    } else if (arg == "--help" || arg == "-h") {
      usage("help");
    } else {
      usage("unknown flag '" + std::string(arg) + "'");
    }
  }
  return o;
}

void printWriteRow(const WriteRow& r) {
  std::printf("%-9s %-26s %10.0f %10.0f %10.0f %12.1f %10lld\n", r.backend.c_str(), r.op.c_str(),
              r.median(), r.rates.front(), r.rates.back(), 1e6 / r.median(),
              static_cast<long long>(r.writes));
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parseFlags(argc, argv);
  const bool want_writes = o.only.find('a') != std::string::npos;
  const bool want_recovery = o.only.find('b') != std::string::npos;
  const bool have_etcd = ::access(kEtcd, X_OK) == 0;
  const bool use_etcd = want_writes && !o.skip_etcd && have_etcd;
  std::string etcd_note = "not installed (/usr/bin/etcd missing): the etcd rows are skipped";
  if (!want_writes) {
    etcd_note = "not used (--only b)";
  } else if (o.skip_etcd) {
    etcd_note = "skipped (--skip-etcd)";
  } else if (have_etcd) {
    etcd_note = etcdVersion() + " (" + kEtcd + ", default settings)";
  }
  std::printf("bench_state_store: temporary directories in %s (%s), %d reps; etcd: %s\n",
              o.dir.c_str(), fsName(o.dir).c_str(), o.reps, etcd_note.c_str());
  std::fflush(stdout);

  // (b) first: its children are forked from a process without gRPC's threads.
  struct Tail {
    int64_t tail;
    std::vector<RecoveryRun> runs;
  };
  std::vector<Tail> tails;
  if (want_recovery) tails = {{kSnapshotEvery / 2, {}}, {kSnapshotEvery * 9 / 10, {}}};
  for (Tail& t : tails) {
    for (int r = 0; r < o.reps; ++r) {
      std::fprintf(stderr, "(b) recovery, log tail %lld, rep %d ...\n",
                   static_cast<long long>(t.tail), r + 1);
      t.runs.push_back(recoverOnce(o.dir, t.tail));
    }
  }

  // (a) each rep runs every row once, so that the embedded store and etcd see the same disk.
  std::vector<WriteRow> rows;
  std::optional<TempDir> embedded_dir;
  std::unique_ptr<sched::StateStore> embedded;
  std::optional<EtcdProcess> etcd;
  std::unique_ptr<sched::StateStore> etcd_store;
  if (want_writes) {
    embedded_dir.emplace(o.dir);
    embedded =
        valueOf(sched::openEmbeddedStateStore({embedded_dir->path() + "/store", kSnapshotEvery}),
                "open the embedded store");
    if (!addWriteRows("embedded", *embedded, rows)) return 1;
  }
  if (use_etcd) {
    etcd.emplace(o.dir);
    absl::StatusOr<std::unique_ptr<sched::StateStore>> store =
        sched::openEtcdStateStore({etcd->endpoint(), "/gangway-bench/", 20.0});
    if (!store.ok()) {
      std::fprintf(stderr, "bench_state_store: etcd did not answer (%s); its log: %s\n",
                   store.status().ToString().c_str(), etcd->logPath().c_str());
      return 1;
    }
    etcd_store = *std::move(store);
    if (!addWriteRows("etcd", *etcd_store, rows)) return 1;
  }
  for (int r = 0; r < o.reps && want_writes; ++r) {
    std::fprintf(stderr, "(a) rep %d ...\n", r + 1);
    for (WriteRow& row : rows) {
      if (!measureRep(row)) return 1;  // etcd (if any) is killed and the directories removed
    }
  }
  for (WriteRow& row : rows) std::sort(row.rates.begin(), row.rates.end());

  if (want_writes) {
    std::printf(
        "\n(a) acknowledged writes per second, one thread, each durable before it returns\n"
        "    (median over %d reps of >= 1 s, the rows interleaved; put: one of 10,000 jobs/ keys,\n"
        "     300 B; commit: compare the epoch key, put job + assignment + queue usage, 300 B "
        "each)\n",
        o.reps);
    std::printf("%-9s %-26s %10s %10s %10s %12s %10s\n", "backend", "write", "median/s", "min/s",
                "max/s", "us/write", "writes");
    for (const WriteRow& r : rows) printWriteRow(r);
    if (use_etcd) {
      std::printf("ratio embedded/etcd (median writes/s): put %.2fx, commit %.2fx\n",
                  rows[0].median() / rows[2].median(), rows[1].median() / rows[3].median());
    } else {
      std::printf("etcd rows skipped (%s)\n",
                  o.skip_etcd ? "--skip-etcd" : "/usr/bin/etcd is not installed");
    }
  }

  bool all_met = true;
  bool all_present = true;
  if (want_recovery) {
    std::printf(
        "\n(b) recovery after kill -9: %d jobs (500 B) + %d assignments (200 B), then job updates\n"
        "    (500 B) until the log tail after the snapshot (every %lld writes) is reached; timed:\n"
        "    openEmbeddedStateStore + list(\"jobs/\") in a new process, median over %d kills\n",
        kJobs, kJobs, static_cast<long long>(kSnapshotEvery), o.reps);
    std::printf("%6s %8s %9s %8s %7s %10s %8s %8s %9s %6s  %-22s %s\n", "tail", "acked", "revision",
                "snap MB", "wal MB", "median ms", "min ms", "max ms", "cold ms", "jobs",
                "acknowledged writes", "goal < 1 s");
  }
  for (Tail& t : tails) {
    std::vector<double> ms, cold;
    std::string problem;
    for (const RecoveryRun& run : t.runs) {
      ms.push_back(run.ms);
      cold.push_back(run.cold_ms);
      if (!run.problem.empty() && problem.empty()) problem = run.problem;
    }
    std::sort(ms.begin(), ms.end());
    std::sort(cold.begin(), cold.end());
    const double median = ms[ms.size() / 2];
    const RecoveryRun& last = t.runs.back();
    const bool met = median < kRecoveryGoalMs && problem.empty();
    all_met = all_met && met;
    all_present = all_present && problem.empty();
    std::printf("%6lld %8lld %9lld %8.1f %7.1f %10.1f %8.1f %8.1f %9.1f %6zu  %-22s %s\n",
                static_cast<long long>(t.tail), static_cast<long long>(last.acked),
                static_cast<long long>(last.revision),
                static_cast<double>(last.snapshot_bytes) / 1e6,
                static_cast<double>(last.wal_bytes) / 1e6, median, ms.front(), ms.back(),
                cold[cold.size() / 2], last.jobs_listed,
                problem.empty() ? "all present, every rep" : "MISSING", met ? "met" : "MISSED");
    if (!problem.empty()) std::printf("    problem: %s\n", problem.c_str());
  }
  if (want_recovery) {
    std::printf(
        "    (median/min/max: recovery right after the kill; cold: the median of the same again\n"
        "     with the store's files dropped from the page cache; acked, revision, sizes, jobs: "
        "of\n"
        "     the last rep; revision = acked + 1 when the write in flight had reached the log)\n");
    std::printf("\ngoal: recovery after kill -9 with %d jobs < 1 s: %s\n", kJobs,
                all_met ? "met" : "MISSED");
  }
  return all_present ? 0 : 1;
}
