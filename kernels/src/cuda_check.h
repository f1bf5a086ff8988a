// CUDA error conversion for the KV-cache kernels: a CUDA error becomes an Internal status that
// names it and the call site (file:line).
#pragma once

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>
#include <cuda_runtime.h>

namespace gangway::kernels::detail {

inline absl::Status cudaStatus(cudaError_t e, const char* what, const char* file, int line) {
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorName(e), " (",
                                          cudaGetErrorString(e), ") at ", file, ":", line));
}

// The multiprocessor count of the current device (80 when it cannot be queried).
inline int smCount() {
  int dev = 0;
  int n = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) {
    (void)cudaGetLastError();
    return 80;
  }
  return n;
}

}  // namespace gangway::kernels::detail

#define GW_KV_CUDA_RETURN(expr, what)                                                     \
  do {                                                                                    \
    const cudaError_t gw_kv_e = (expr);                                                   \
    if (gw_kv_e != cudaSuccess) {                                                         \
      return ::gangway::kernels::detail::cudaStatus(gw_kv_e, (what), __FILE__, __LINE__); \
    }                                                                                     \
  } while (0)
