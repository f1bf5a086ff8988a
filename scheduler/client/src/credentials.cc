#include "gangway/scheduler/client/credentials.h"

#include <cerrno>
#include <cstdint>

#include <sys/random.h>

#include <absl/strings/escaping.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "gangway/common/check.h"

namespace gangway::scheduler {

std::string randomSecret(std::size_t bytes) {
  std::string raw(bytes, '\0');
  std::size_t got = 0;
  while (got < bytes) {
    const ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    GW_CHECK_MSG(n > 0, "getrandom failed");
    got += static_cast<std::size_t>(n);
  }
  return absl::BytesToHexString(raw);
}

std::string storeTokenFor(const std::string& secret, const std::string& job_id) {
  if (secret.empty()) return {};
  const std::string message = "gangway store token\n" + job_id;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const unsigned char* done =
      HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
  GW_CHECK_MSG(done != nullptr, "HMAC-SHA256 failed");
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(mac), static_cast<std::size_t>(len)));
}

}  // namespace gangway::scheduler
