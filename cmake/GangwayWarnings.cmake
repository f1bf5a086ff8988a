# Warning flags for gangway's own targets (not for third-party code).
add_library(gangway_warnings INTERFACE)
target_compile_options(gangway_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
  -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual
  -Wimplicit-fallthrough -Werror=return-type>)
