// This machine's host name.
#pragma once

#include <string>

namespace gangway {

// gethostname(2), or "localhost" when it fails.
std::string hostName();

}  // namespace gangway
