// Which instruction sets this CPU offers the host kernels: the *_avx2.cc variants need AVX2 and
// F16C (attention also FMA). AVX2 through the compiler's CPU model (which also checks that the OS
// saves the AVX state); F16C and FMA from CPUID leaf 1, which every compiler reads the same way.
#pragma once

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace gangway::kernels {

struct CpuFeatures {
  bool avx2 = false;
  bool f16c = false;
  bool fma = false;
};

// Read once, on first use.
inline const CpuFeatures& cpuFeatures() {
  static const CpuFeatures kFeatures = [] {
    CpuFeatures f;
#if defined(__x86_64__)
    unsigned int eax = 0;
    unsigned int ebx = 0;
    unsigned int ecx = 0;
    unsigned int edx = 0;
    f.avx2 = __builtin_cpu_supports("avx2");
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0) {
      f.f16c = (ecx & bit_F16C) != 0;
      f.fma = (ecx & bit_FMA) != 0;
    }
#endif
    return f;
  }();
  return kFeatures;
}

}  // namespace gangway::kernels
