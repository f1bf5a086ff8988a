// The logging facade: every gangway component logs through a named logger, and every line carries
// the component's name. Backed by spdlog; nothing outside common/ includes spdlog directly.
//
//   static const auto& log = gangway::logger("launcher");
//   log.info("started {} workers", n);
//
// Lines go to stderr as `[gangway launcher] I 20:53:11.123 message`. The level comes from
// GANGWAY_LOG_LEVEL (trace, debug, info, warn, error, off; default info) or setLogLevel().
#pragma once

#include <string_view>

#include <spdlog/spdlog.h>

namespace gangway {

using Logger = spdlog::logger;

// Returns the logger for `component`, creating it on first use. Thread-safe; the reference stays
// valid for the life of the process.
Logger& logger(std::string_view component);

// Sets the level of every gangway logger, present and future. Returns false for an unknown name.
bool setLogLevel(std::string_view level);

}  // namespace gangway
