// Open MPI return codes as absl::Status, converted at the call site:
//
//   GW_RETURN_IF_ERROR(GW_MPI(MPI_Barrier(comm_)));
//
// The calls this backend makes run on communicators with MPI_ERRORS_RETURN, so a failure comes
// back as a code instead of aborting the process (a peer that dies will usually still take the
// whole job down under mpirun: Open MPI 4.1 without ULFM cannot survive a lost process).
#pragma once

// The C API only: as C++, Open MPI's mpi.h would otherwise pull in its deprecated C++ bindings and
// a dependency on libmpi_cxx. Files of this backend include mpi.h through this header.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <absl/status/status.h>
#include <mpi.h>

namespace gangway::comm {

// OK for MPI_SUCCESS; otherwise the code's class mapped to a canonical code, with MPI's own error
// string, the call and file:line.
absl::Status mpiStatus(int code, const char* call, const char* file, int line);

// Whether MPI_Finalize has run (after which no MPI call, not even a free, is allowed).
bool mpiFinalized();

}  // namespace gangway::comm

#define GW_MPI(call) ::gangway::comm::mpiStatus((call), #call, __FILE__, __LINE__)
