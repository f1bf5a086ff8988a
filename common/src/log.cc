#include "gangway/common/log.h"

#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include <absl/base/thread_annotations.h>
#include <absl/container/flat_hash_map.h>
#include <absl/synchronization/mutex.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace gangway {
namespace {

struct Registry {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, std::unique_ptr<Logger>> loggers ABSL_GUARDED_BY(mu);
  spdlog::level::level_enum level ABSL_GUARDED_BY(mu) = spdlog::level::info;
  // Shared by every logger so lines from different components never interleave mid-line.
  std::shared_ptr<spdlog::sinks::stderr_sink_mt> sink =
      std::make_shared<spdlog::sinks::stderr_sink_mt>();
};

bool parseLevel(std::string_view name, spdlog::level::level_enum* out) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},   {"off", spdlog::level::off},
  };
  for (const auto& [n, l] : kLevels) {
    if (n == name) {
      *out = l;
      return true;
    }
  }
  return false;
}

Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry();
    if (const char* env = std::getenv("GANGWAY_LOG_LEVEL"); env != nullptr) {
      absl::MutexLock lock(&reg->mu);
      parseLevel(env, &reg->level);
    }
    return reg;
  }();
  return *r;
}

}  // namespace

Logger& logger(std::string_view component) {
  Registry& r = registry();
  absl::MutexLock lock(&r.mu);
  auto& slot = r.loggers[std::string(component)];
  if (slot == nullptr) {
    slot = std::make_unique<Logger>(std::string(component), r.sink);
    slot->set_pattern("[gangway %n] %L %H:%M:%S.%e %v");
    slot->set_level(r.level);
  }
  return *slot;
}

bool setLogLevel(std::string_view level) {
  spdlog::level::level_enum parsed{};
  if (!parseLevel(level, &parsed)) return false;
  Registry& r = registry();
  absl::MutexLock lock(&r.mu);
  r.level = parsed;
  for (auto& [name, l] : r.loggers) l->set_level(parsed);
  return true;
}

}  // namespace gangway
