# find_package(gangway): the installed libgangway_kv as gangway::kv.
include(CMakeFindDependencyMacro)
find_dependency(absl)
include(${CMAKE_CURRENT_LIST_DIR}/gangway-targets.cmake)
