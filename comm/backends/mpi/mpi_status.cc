#include "mpi_status.h"

#include <cstring>
#include <string>

#include <absl/strings/str_cat.h>
#include <absl/strings/string_view.h>

namespace gangway::comm {

namespace {

absl::StatusCode codeForClass(int error_class) {
  switch (error_class) {
    case MPI_ERR_BUFFER:
    case MPI_ERR_COUNT:
    case MPI_ERR_TYPE:
    case MPI_ERR_TAG:
    case MPI_ERR_COMM:
    case MPI_ERR_RANK:
    case MPI_ERR_ROOT:
    case MPI_ERR_OP:
    case MPI_ERR_ARG:
    case MPI_ERR_TRUNCATE:  // the ranks disagreed on a count
      return absl::StatusCode::kInvalidArgument;
    case MPI_ERR_NO_MEM:
      return absl::StatusCode::kResourceExhausted;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

absl::Status mpiStatus(int code, const char* call, const char* file, int line) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  // The function's name, without its arguments.
  absl::string_view name(call);
  name = name.substr(0, name.find('('));
  absl::string_view base(file);
  if (const auto slash = base.rfind('/'); slash != absl::string_view::npos) {
    base.remove_prefix(slash + 1);
  }
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) {
    std::strncpy(text, "unknown MPI error", sizeof(text) - 1);
  }
  int error_class = MPI_ERR_UNKNOWN;
  if (MPI_Error_class(code, &error_class) != MPI_SUCCESS) error_class = MPI_ERR_UNKNOWN;
  return absl::Status(codeForClass(error_class),
                      absl::StrCat(name, " failed (", base, ":", line, "): ", text));
}

bool mpiFinalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);  // callable at any time, before MPI_Init and after MPI_Finalize
  return finalized != 0;
}

}  // namespace gangway::comm
