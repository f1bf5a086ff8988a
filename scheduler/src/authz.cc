#include "gangway/scheduler/authz.h"

#include <absl/strings/str_cat.h>

#include "gangway/common/check.h"
#include "gangway/common/status.h"
#include "gangway/common/text.h"

namespace gangway::scheduler {
namespace {

// What a caller can hold. kNoAdminToken is held by everyone when the scheduler has no admin
// token: the operator calls are open then (a private test cluster on loopback, or --insecure).
enum Credential : unsigned {
  kAdmin = 1U << 0,
  kNoAdminToken = 1U << 1,
  kJoinToken = 1U << 2,
  kJobToken = 1U << 3,
  kStoreToken = 1U << 4,
};

struct Rule {
  Rpc rpc;
  const char* name;
  unsigned any_of;    // the call is allowed when the caller holds one of these
  bool session;       // and, when true, the session of the agent or node it names
  const char* needs;  // for the refusal
};

// The authorization matrix. scheduler/README.md shows the same table; keep them together.
constexpr Rule kRules[] = {
    {Rpc::kJoin, "Join", kJobToken, true, "the job's token"},
    {Rpc::kWatch, "Watch", kJobToken, true, "the job's token"},
    {Rpc::kHeartbeat, "Heartbeat", kJobToken, true, "the job's token"},
    {Rpc::kLeave, "Leave", kJobToken, true, "the job's token"},
    {Rpc::kReportWorkers, "ReportWorkers", kJobToken, true, "the job's token"},
    {Rpc::kPublishMasterPort, "PublishMasterPort", kJobToken, true, "the job's token"},
    {Rpc::kStore, "Store", kJobToken | kStoreToken, false, "the job's token or its store token"},
    {Rpc::kRegisterNode, "RegisterNode", kJoinToken | kAdmin, true,
     "the cluster's join token (or the admin token)"},
    {Rpc::kWatchNode, "WatchNode", kJoinToken | kAdmin, true,
     "the cluster's join token (or the admin token)"},
    {Rpc::kNodeHeartbeat, "NodeHeartbeat", kJoinToken | kAdmin, true,
     "the cluster's join token (or the admin token)"},
    {Rpc::kReportExit, "ReportExit", kJoinToken | kAdmin, true,
     "the cluster's join token (or the admin token)"},
    {Rpc::kSubmit, "Submit", kAdmin | kNoAdminToken, false, "the admin token"},
    {Rpc::kListJobs, "ListJobs", kAdmin | kNoAdminToken | kJobToken, false,
     "the admin token or a job's token"},
    {Rpc::kListNodes, "ListNodes", kAdmin | kNoAdminToken, false, "the admin token"},
    {Rpc::kResize, "Resize", kAdmin | kNoAdminToken | kJobToken, false,
     "the admin token or the job's token"},
    {Rpc::kCancel, "Cancel", kAdmin | kNoAdminToken | kJobToken, false,
     "the admin token or the job's token"},
    {Rpc::kDrain, "Drain", kAdmin | kNoAdminToken, false, "the admin token"},
};

const Rule& ruleOf(Rpc rpc) {
  for (const Rule& r : kRules) {
    if (r.rpc == rpc) return r;
  }
  GW_CHECK_MSG(false, "an RPC without a row in the authorization matrix");
  return kRules[0];
}

bool isRendezvousCall(Rpc rpc) {
  return rpc == Rpc::kJoin || rpc == Rpc::kWatch || rpc == Rpc::kHeartbeat || rpc == Rpc::kLeave ||
         rpc == Rpc::kReportWorkers || rpc == Rpc::kPublishMasterPort || rpc == Rpc::kStore;
}

std::string metadata(const grpc::CallbackServerContext* ctx, const char* key) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(key);
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

}  // namespace

CallCredentials callerOf(const grpc::CallbackServerContext* ctx) {
  return CallCredentials{.token = metadata(ctx, kTokenMetadata),
                         .join_token = metadata(ctx, kJoinTokenMetadata),
                         .session = metadata(ctx, kSessionMetadata)};
}

absl::Status checkSession(const std::string& session, const char* call) {
  if (session.size() < kMinSessionBytes || !isPrintableLine(session, kMaxSessionBytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        call, ": the call needs a session (metadata '", kSessionMetadata, "': ", kMinSessionBytes,
        " to ", kMaxSessionBytes, " printable bytes, drawn at random once per agent process)"));
  }
  return absl::OkStatus();
}

bool Authorizer::admin(const CallCredentials& caller) const {
  if (cluster_ == nullptr) return false;
  const std::string& token = cluster_->options().admin_token;
  return token.empty() || constantTimeEquals(token, caller.token);
}

bool Authorizer::joinToken(const CallCredentials& caller) const {
  const std::string& token = rdzv_.settings().join_token;
  return token.empty() || constantTimeEquals(token, caller.join_token);
}

absl::Status Authorizer::check(Rpc rpc, const CallCredentials& caller,
                               const std::string& job_id) const {
  const Rule& rule = ruleOf(rpc);
  if (rule.session) GW_RETURN_IF_ERROR(checkSession(caller.session, rule.name));
  unsigned held = 0;
  const bool admin_configured = cluster_ != nullptr && !cluster_->options().admin_token.empty();
  if (admin_configured && constantTimeEquals(cluster_->options().admin_token, caller.token)) {
    held |= kAdmin;
  }
  if (cluster_ != nullptr && !admin_configured) held |= kNoAdminToken;
  if (joinToken(caller)) held |= kJoinToken;
  // Nodes of a scheduler that has an admin token but no join token register with the admin
  // token: an unconfigured join token opens only what no other credential guards.
  if (rdzv_.settings().join_token.empty() && admin_configured && (rule.any_of & kAdmin) != 0) {
    held &= ~kJoinToken;
  }
  const char* needs = rule.needs;
  if (isRendezvousCall(rpc)) {
    auto secrets = rdzv_.secrets(job_id);
    if (!secrets.ok()) {
      if (rpc != Rpc::kJoin) return secrets.status();
      // A Join that creates its job: the cluster's credential decides.
      if ((held & kJoinToken) != 0) return absl::OkStatus();
      return absl::PermissionDeniedError(
          absl::StrCat("Join: creating job '", job_id, "' needs the cluster's join token"));
    }
    const std::string& presented = secrets->own_token ? caller.token : caller.join_token;
    if (secrets->secret.empty() || constantTimeEquals(secrets->secret, presented)) {
      held |= kJobToken;
    }
    if (!secrets->store_token.empty() && constantTimeEquals(secrets->store_token, caller.token)) {
      held |= kStoreToken;
    }
  } else if (rpc == Rpc::kListJobs) {
    if (!caller.token.empty()) held |= kJobToken;  // the listing shows that job's records only
  } else if ((rule.any_of & kJobToken) != 0 && cluster_ != nullptr && (held & kAdmin) == 0) {
    auto own = cluster_->holdsJobToken(job_id, caller.token);
    if (!own.ok()) return own.status();
    if (*own) held |= kJobToken;
  }
  if ((held & rule.any_of) != 0) return absl::OkStatus();
  if (isRendezvousCall(rpc)) {
    return absl::PermissionDeniedError(absl::StrCat(rule.name, ": wrong or missing token for job '",
                                                    job_id, "' (the call needs ", needs, ")"));
  }
  return absl::PermissionDeniedError(
      absl::StrCat(rule.name, job_id.empty() ? "" : absl::StrCat(" of job '", job_id, "'"),
                   ": this call needs ", needs));
}

}  // namespace gangway::scheduler
