#include "gangway/scheduler/client/cluster_cli.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <absl/strings/ascii.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <absl/time/clock.h>
#include <google/protobuf/util/json_util.h>

#include "gangway/common/file.h"
#include "gangway/common/host_port.h"
#include "gangway/scheduler/client/channel.h"
#include "gangway/v1/cluster.grpc.pb.h"

namespace gangway::scheduler {
namespace {

std::string defaultScheduler() { return formatHostPort("127.0.0.1", kDefaultControlPlanePort); }

constexpr const char* kCommands[] = {"submit", "jobs", "nodes", "resize", "cancel", "drain"};

struct Common {
  std::string scheduler;
  std::string token;
  std::string tls_ca;
  bool json = false;
  double timeout_s = 10;
};

void addCommonFlags(CLI::App& app, bool json) {
  app.add_option("--scheduler")
      ->description(
          absl::StrCat("The scheduler's address, HOST:PORT. [default: $GANGWAY_SCHEDULER, else ",
                       defaultScheduler(), "]"))
      ->type_name("ADDR");
  app.add_option("--token-file")
      ->description(
          "File holding the admin token or the job's token. [default: $GANGWAY_TOKEN_FILE]")
      ->type_name("PATH");
  app.add_option("--tls-ca")
      ->description("PEM roots: talk TLS to the scheduler.")
      ->type_name("PATH");
  app.add_option("--timeout")
      ->description("Seconds to wait for the scheduler. [default: 10]")
      ->type_name("SECONDS");
  if (json) app.add_flag("--json")->description("Print JSON instead of a table.");
}

absl::StatusOr<Common> commonOf(const CLI::App& app) {
  Common c;
  const char* env = std::getenv("GANGWAY_SCHEDULER");
  c.scheduler = app.get_option("--scheduler")->count() > 0
                    ? app.get_option("--scheduler")->as<std::string>()
                    : (env != nullptr && *env != '\0' ? std::string(env) : defaultScheduler());
  std::string token_file;
  if (app.get_option("--token-file")->count() > 0) {
    token_file = app.get_option("--token-file")->as<std::string>();
  } else if (const char* t = std::getenv("GANGWAY_TOKEN_FILE"); t != nullptr && *t != '\0') {
    token_file = t;
  }
  if (!token_file.empty()) {
    auto token = readSecretFile(token_file, "--token-file");
    if (!token.ok()) return absl::InvalidArgumentError(token.status().message());  // bad input
    c.token = *token;
  }
  if (app.get_option("--tls-ca")->count() > 0)
    c.tls_ca = app.get_option("--tls-ca")->as<std::string>();
  if (app.get_option("--timeout")->count() > 0) {
    const auto t = app.get_option("--timeout")->as<std::string>();
    if (!absl::SimpleAtod(t, &c.timeout_s) || !(c.timeout_s > 0) || c.timeout_s > 1e6) {
      return absl::InvalidArgumentError(
          absl::StrCat("--timeout '", t, "': expected a positive number of seconds"));
    }
  }
  const CLI::Option* json = app.get_option_no_throw("--json");
  c.json = json != nullptr && json->count() > 0;
  return c;
}

class Client {
 public:
  static absl::StatusOr<Client> connect(const Common& c) {
    auto channel = makeChannel({.address = c.scheduler, .tls_ca_file = c.tls_ca});
    if (!channel.ok()) return channel.status();
    return Client(c, v1::Cluster::NewStub(*channel));
  }
  std::unique_ptr<grpc::ClientContext> ctx() const {
    auto ctx = callContext(common_.token, absl::Seconds(common_.timeout_s));
    ctx->set_wait_for_ready(true);  // wait for the connection up to the deadline
    return ctx;
  }
  // UNAVAILABLE and DEADLINE_EXCEEDED name the scheduler's address.
  absl::Status check(const grpc::Status& s) const {
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return absl::UnavailableError(absl::StrCat("cannot reach the scheduler at ",
                                                 common_.scheduler, " within ", common_.timeout_s,
                                                 " s (", s.error_message(), ")"));
    }
    return fromGrpc(s);
  }
  v1::Cluster::Stub& stub() { return *stub_; }

 private:
  Client(Common c, std::unique_ptr<v1::Cluster::Stub> stub)
      : common_(std::move(c)), stub_(std::move(stub)) {}
  Common common_;
  std::unique_ptr<v1::Cluster::Stub> stub_;
};

std::string toJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string stateText(v1::JobState s) {
  std::string name = v1::JobState_Name(s);
  return absl::AsciiStrToLower(name);
}

std::string age(int64_t since_ms) {
  if (since_ms <= 0) return "-";
  const int64_t s = std::max<int64_t>(0, (absl::ToUnixMillis(absl::Now()) - since_ms) / 1000);
  if (s < 120) return absl::StrCat(s, "s");
  if (s < 7200) return absl::StrCat(s / 60, "m");
  if (s < 172800) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

// Columns padded to their widest cell; the last column is not padded.
std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) {
      out += r[i];
      if (i + 1 < r.size()) out += std::string(width[i] - r[i].size() + 2, ' ');
    }
    out += "\n";
  }
  return out;
}

int fail(const std::string& who, const absl::Status& s) {
  std::fprintf(stderr, "gangway %s: error: %s\n", who.c_str(), std::string(s.message()).c_str());
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

absl::StatusOr<std::pair<int, int>> parseNnodes(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  int lo = 0;
  int hi = 0;
  if (parts.size() > 2 || !absl::SimpleAtoi(parts[0], &lo) ||
      (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &hi))) {
    return absl::InvalidArgumentError(absl::StrCat("--nnodes '", text, "': expected N or MIN:MAX"));
  }
  if (parts.size() == 1) hi = lo;
  if (lo < 1 || hi < lo) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nnodes '", text, "': expected 1 <= MIN <= MAX"));
  }
  return std::pair<int, int>{lo, hi};
}

int intFlag(const CLI::App& app, const char* name, int fallback, absl::Status* error) {
  const CLI::Option* o = app.get_option(name);
  if (o->count() == 0) return fallback;
  int v = 0;
  const auto text = o->as<std::string>();
  if (!absl::SimpleAtoi(text, &v)) {
    *error = absl::InvalidArgumentError(absl::StrCat(name, " '", text, "': expected an integer"));
  }
  return v;
}

int runSubmit(const CLI::App& app, const Common& c) {
  v1::SubmitRequest req;
  v1::JobSpec* spec = req.mutable_spec();
  absl::Status error;
  if (app.get_option("--name")->count() == 0) {
    return fail("submit", absl::InvalidArgumentError("--name is required"));
  }
  spec->set_name(app.get_option("--name")->as<std::string>());
  auto nnodes = parseNnodes(app.get_option("--nnodes")->count() > 0
                                ? app.get_option("--nnodes")->as<std::string>()
                                : "1");
  if (!nnodes.ok()) return fail("submit", nnodes.status());
  spec->set_min_nodes(nnodes->first);
  spec->set_max_nodes(nnodes->second);
  spec->set_nproc_per_node(intFlag(app, "--nproc-per-node", 1, &error));
  spec->set_gpus_per_node(intFlag(app, "--gpus-per-node", 0, &error));
  spec->set_priority(intFlag(app, "--priority", 0, &error));
  spec->set_max_restarts(intFlag(app, "--max-restarts", 0, &error));
  if (!error.ok()) return fail("submit", error);
  if (app.get_option("--queue")->count() > 0) {
    spec->set_queue(app.get_option("--queue")->as<std::string>());
  }
  spec->set_no_python(app.get_option("--no-python")->count() > 0);
  for (const std::string& arg : app.remaining()) spec->add_command(arg);
  if (spec->command().empty()) {
    return fail("submit",
                absl::InvalidArgumentError("the job's command is missing (gangway submit [FLAGS] "
                                           "SCRIPT [ARGS...])"));
  }
  std::string token_out;
  if (app.get_option("--token-out")->count() > 0) {
    token_out = app.get_option("--token-out")->as<std::string>();
  }
  auto client = Client::connect(c);
  if (!client.ok()) return fail("submit", client.status());
  v1::SubmitResponse resp;
  auto ctx = client->ctx();
  if (absl::Status s = client->check(client->stub().Submit(ctx.get(), req, &resp)); !s.ok()) {
    return fail("submit", s);
  }
  if (!token_out.empty()) {
    std::FILE* f = std::fopen(token_out.c_str(), "w");
    if (f == nullptr) {
      return fail("submit", absl::InvalidArgumentError(absl::StrCat(
                                "job '", resp.job_id(), "' was submitted, but --token-out '",
                                token_out, "' cannot be written")));
    }
    ::fchmod(fileno(f), 0600);
    std::fprintf(f, "%s\n", resp.token().c_str());
    std::fclose(f);
  }
  if (c.json) {
    std::printf("%s\n", toJson(resp).c_str());
  } else {
    std::printf(
        "submitted job %s%s\n", resp.job_id().c_str(),
        token_out.empty() ? "" : absl::StrCat(" (its token is in ", token_out, ")").c_str());
  }
  return 0;
}

int runJobs(const CLI::App& app, const Common& c) {
  v1::ListJobsRequest req;
  req.set_all(app.get_option("--all")->count() > 0);
  auto client = Client::connect(c);
  if (!client.ok()) return fail("jobs", client.status());
  v1::ListJobsResponse resp;
  auto ctx = client->ctx();
  if (absl::Status s = client->check(client->stub().ListJobs(ctx.get(), req, &resp)); !s.ok()) {
    return fail("jobs", s);
  }
  if (c.json) {
    std::printf("%s\n", toJson(resp).c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"JOB", "STATE", "NODES", "MIN:MAX", "PROCS",
                                                 "PRIO", "QUEUE", "ROUND", "RESIZES", "AGE",
                                                 "REASON"}};
  for (const v1::JobStatus& j : resp.jobs()) {
    rows.push_back({j.job_id(), stateText(j.state()), absl::StrCat(j.nodes_size()),
                    absl::StrCat(j.spec().min_nodes(), ":", j.spec().max_nodes()),
                    absl::StrCat(j.spec().nproc_per_node()), absl::StrCat(j.spec().priority()),
                    j.spec().queue(), absl::StrCat(j.round()), absl::StrCat(j.resizes()),
                    age(j.submit_time_ms()), j.reason()});
  }
  std::fputs(table(rows).c_str(), stdout);
  return 0;
}

int runNodes(const CLI::App& /*app*/, const Common& c) {
  auto client = Client::connect(c);
  if (!client.ok()) return fail("nodes", client.status());
  v1::ListNodesResponse resp;
  auto ctx = client->ctx();
  if (absl::Status s = client->check(client->stub().ListNodes(ctx.get(), {}, &resp)); !s.ok()) {
    return fail("nodes", s);
  }
  if (c.json) {
    std::printf("%s\n", toJson(resp).c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NODE", "ADDRESS", "GPUS", "NETWORK", "NVLINK", "STATE", "JOB"}};
  for (const v1::NodeStatus& n : resp.nodes()) {
    std::string state = n.healthy() ? "ready" : "lost";
    if (n.draining()) state += ",draining";
    rows.push_back({n.node_id(), n.address(), absl::StrCat(n.topology().gpu_count()),
                    n.topology().network_path().empty() ? "-" : n.topology().network_path(),
                    n.topology().nvlink_domain().empty() ? "-" : n.topology().nvlink_domain(),
                    state, n.job_id().empty() ? "-" : n.job_id()});
  }
  std::fputs(table(rows).c_str(), stdout);
  return 0;
}

int runResize(const CLI::App& app, const Common& c) {
  v1::ResizeRequest req;
  req.set_job_id(app.get_option("job")->as<std::string>());
  const auto n = app.get_option("nodes")->as<std::string>();
  int nodes = 0;
  if (!absl::SimpleAtoi(n, &nodes) || nodes < 1) {
    return fail("resize", absl::InvalidArgumentError(
                              absl::StrCat("NODES '", n, "': expected a number of nodes >= 1")));
  }
  req.set_nodes(nodes);
  auto client = Client::connect(c);
  if (!client.ok()) return fail("resize", client.status());
  v1::ResizeResponse resp;
  auto ctx = client->ctx();
  if (absl::Status s = client->check(client->stub().Resize(ctx.get(), req, &resp)); !s.ok()) {
    return fail("resize", s);
  }
  std::printf("job %s: at most %d nodes\n", req.job_id().c_str(), nodes);
  return 0;
}

int runCancel(const CLI::App& app, const Common& c) {
  v1::CancelRequest req;
  req.set_job_id(app.get_option("job")->as<std::string>());
  auto client = Client::connect(c);
  if (!client.ok()) return fail("cancel", client.status());
  v1::CancelResponse resp;
  auto ctx = client->ctx();
  if (absl::Status s = client->check(client->stub().Cancel(ctx.get(), req, &resp)); !s.ok()) {
    return fail("cancel", s);
  }
  std::printf("job %s cancelled\n", req.job_id().c_str());
  return 0;
}

int runDrain(const CLI::App& app, const Common& c) {
  v1::DrainRequest req;
  req.set_node_id(app.get_option("node")->as<std::string>());
  req.set_undo(app.get_option("--undo")->count() > 0);
  auto client = Client::connect(c);
  if (!client.ok()) return fail("drain", client.status());
  v1::DrainResponse resp;
  auto ctx = client->ctx();
  if (absl::Status s = client->check(client->stub().Drain(ctx.get(), req, &resp)); !s.ok()) {
    return fail("drain", s);
  }
  std::printf("node %s %s\n", req.node_id().c_str(),
              req.undo() ? "is back in service" : "is draining: its job shrinks off it or moves");
  return 0;
}

}  // namespace

void addClusterCommands(CLI::App& app) {
  CLI::App* submit = app.add_subcommand(
      "submit", "Queue a job on the cluster scheduler; pool agents run it when it is admitted.");
  submit->prefix_command();
  submit->add_option("--name")->description("The job's name and id (required).")->type_name("NAME");
  submit->add_option("--nnodes")
      ->description("Nodes: N, or MIN:MAX for an elastic job. [default: 1]")
      ->type_name("MIN:MAX");
  submit->add_option("--nproc-per-node")
      ->description("Workers per node. [default: 1]")
      ->type_name("N");
  submit->add_option("--gpus-per-node")
      ->description("GPUs each node must have for the job. [default: 0]")
      ->type_name("N");
  submit->add_option("--priority")
      ->description("Higher runs first and may shrink or evict lower. [default: 0]")
      ->type_name("P");
  submit->add_option("--queue")
      ->description("The job's queue. [default: default]")
      ->type_name("QUEUE");
  submit->add_option("--max-restarts")
      ->description("Worker-failure restarts before the job fails. [default: 0]")
      ->type_name("N");
  submit->add_flag("--no-python")->description("Run SCRIPT as an executable, not with python.");
  submit->add_option("--token-out")
      ->description("Write the job's token (for resize and cancel) to this file.")
      ->type_name("PATH");
  addCommonFlags(*submit, true);
  submit->footer(R"(
Usage: gangway submit --name NAME [--nnodes MIN:MAX] [--nproc-per-node N] [FLAGS] SCRIPT [ARGS...]

Everything from SCRIPT on is the workers' command line, as for gangway run.

Example:
  gangway submit --scheduler sched:29400 --name train --nnodes 2:4 --nproc-per-node 8 \
      --gpus-per-node 8 --priority 10 train.py --lr 3e-4)");

  CLI::App* jobs = app.add_subcommand("jobs", "List the scheduler's jobs.");
  jobs->add_flag("--all")->description("Include jobs that have ended.");
  addCommonFlags(*jobs, true);
  CLI::App* nodes = app.add_subcommand("nodes", "List the scheduler's pool nodes.");
  addCommonFlags(*nodes, true);
  CLI::App* resize = app.add_subcommand(
      "resize",
      "Set a job's maximum number of nodes (its minimum too, if above): it shrinks at "
      "once, or grows as nodes are free. Needs the admin or the job's token.");
  resize->add_option("job")->required()->description("The job.");
  resize->add_option("nodes")->required()->description("The new maximum.")->type_name("NODES");
  addCommonFlags(*resize, false);
  CLI::App* cancel = app.add_subcommand(
      "cancel", "Stop a job and free its nodes. Needs the admin or the job's token.");
  cancel->add_option("job")->required()->description("The job.");
  addCommonFlags(*cancel, false);
  CLI::App* drain = app.add_subcommand(
      "drain",
      "Take a node out of service (its job shrinks off it, or moves if that would go "
      "below its minimum); --undo puts it back. Needs the admin token.");
  drain->add_option("node")->required()->description("The node.");
  drain->add_flag("--undo")->description("Put the node back in service.");
  addCommonFlags(*drain, false);
}

bool isClusterCommand(const std::string& name) {
  for (const char* c : kCommands) {
    if (name == c) return true;
  }
  return false;
}

int runClusterCommand(const CLI::App& app) {
  for (const char* name : kCommands) {
    const CLI::App* sub = nullptr;
    for (const CLI::App* candidate : app.get_subcommands()) {
      if (candidate->get_name() == name) sub = candidate;
    }
    if (sub == nullptr) continue;
    auto common = commonOf(*sub);
    if (!common.ok()) return fail(name, common.status());
    const std::string n = name;
    if (n == "submit") return runSubmit(*sub, *common);
    if (n == "jobs") return runJobs(*sub, *common);
    if (n == "nodes") return runNodes(*sub, *common);
    if (n == "resize") return runResize(*sub, *common);
    if (n == "cancel") return runCancel(*sub, *common);
    return runDrain(*sub, *common);
  }
  return -1;
}

}  // namespace gangway::scheduler
