# CUDA is optional. With GANGWAY_CUDA=AUTO it is enabled when nvcc is found (on PATH, through
# CUDACXX, or under /usr/local/cuda) and disabled otherwise; the rest of the build is identical.
# GANGWAY_CUDA_ENABLED tells later CMake code whether CUDA targets can be added.
set(GANGWAY_CUDA_ENABLED OFF)
if(NOT GANGWAY_CUDA STREQUAL "OFF")
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "CUDA compiler")
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # No GPU on the build machines: name the architectures instead of probing ("native").
    # Hopper (sm_90) is the target fleet; override with -DCMAKE_CUDA_ARCHITECTURES=...
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures")
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 knows no C++20 dialect flag for nvcc
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(GANGWAY_CUDA_ENABLED ON)
    find_package(CUDAToolkit REQUIRED)  # CUDA::cudart_static for every directory
  elseif(GANGWAY_CUDA STREQUAL "ON")
    message(FATAL_ERROR "GANGWAY_CUDA=ON but no CUDA compiler (nvcc) was found; "
                        "install the CUDA Toolkit or configure with -DGANGWAY_CUDA=OFF")
  endif()
endif()
