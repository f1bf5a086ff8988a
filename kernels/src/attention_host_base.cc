// Host paged decode attention for any x86-64 (chosen at run time when the CPU lacks AVX2/F16C).
#define GANGWAY_ATTENTION_NS attention_base
#include "attention_host_impl.h"
