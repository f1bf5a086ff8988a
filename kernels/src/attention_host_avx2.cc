// Host paged decode attention with AVX2, F16C and FMA (compiled with -mavx2 -mf16c -mfma; chosen at
// run time).
#define GANGWAY_ATTENTION_NS attention_avx2
#include "attention_host_impl.h"
