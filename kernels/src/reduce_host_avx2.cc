// The reduction loops with AVX2 and F16C (compiled with -mavx2 -mf16c; chosen at run time).
#define GANGWAY_REDUCE_NS avx2
#include "reduce_host_impl.h"
