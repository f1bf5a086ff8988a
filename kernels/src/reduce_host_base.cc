// The reduction loops for any x86-64 (SSE2).
#define GANGWAY_REDUCE_NS base
#include "reduce_host_impl.h"
