// The reductions of reduce.h on device buffers (built when CUDA is; GANGWAY_HAVE_CUDA). Same
// semantics, bit for bit, as reduceReference: computed in the type for integers (wrapping), in
// float for half and bfloat16 (rounded to nearest even), in the type for float and double.
#pragma once

#include <cstddef>

#include <absl/status/status.h>

#include "gangway/kernels/reduce.h"

namespace gangway::kernels {

// dst[i] = a[i] OP b[i] on the device, enqueued on `stream` (a cudaStream_t; nullptr: the
// default stream). dst may alias a or b. Errors: the CUDA error, named, with file:line.
absl::Status reduceDevice(void* dst, const void* a, const void* b, std::size_t count, DataType type,
                          ReduceOp op, void* stream);
absl::Status divideByDevice(void* dst, std::size_t count, DataType type, int n, void* stream);

// The number of CUDA devices this process can use (0 without a driver or a GPU).
int cudaDeviceCount();

}  // namespace gangway::kernels
