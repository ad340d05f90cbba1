# detect.cmake — whether this build has the CUDA backend; included by the top-level CMakeLists.txt
# before any target, because enable_language(CUDA) must run in the top directory.
#   COPPER_CUDA=AUTO (default): built when nvcc and the CUDA toolkit (cudart, cuBLAS) are found
#   COPPER_CUDA=ON: required (configuring fails without the toolkit);  OFF: left out.
# Sets COPPER_HAS_CUDA, which makes the top-level file add cuda/CMakeLists.txt (the targets).
# Code is built for sm_80 (A100) and sm_90 (H100/H200) plus sm_90 PTX, which newer GPUs compile
# at load time; -DCMAKE_CUDA_ARCHITECTURES=... overrides (e.g. "90" alone to build faster).
set(COPPER_CUDA AUTO CACHE STRING "Build the CUDA backend: AUTO, ON or OFF")
set_property(CACHE COPPER_CUDA PROPERTY STRINGS AUTO ON OFF)
if(NOT COPPER_CUDA MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "COPPER_CUDA is '${COPPER_CUDA}'; it takes AUTO, ON or OFF")
endif()
set(COPPER_CUDA_DEFAULT_ARCHITECTURES "80-real;90-real;90-virtual")

set(COPPER_HAS_CUDA OFF)
if(NOT COPPER_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)  # read by enable_language, so set first
      set(CMAKE_CUDA_ARCHITECTURES "${COPPER_CUDA_DEFAULT_ARCHITECTURES}" CACHE STRING "GPU architectures to build for")
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit QUIET)
    if(CUDAToolkit_FOUND AND TARGET CUDA::cudart AND TARGET CUDA::cublas)
      set(COPPER_HAS_CUDA ON)
    endif()
  endif()
  if(COPPER_CUDA STREQUAL "ON" AND NOT COPPER_HAS_CUDA)
    message(FATAL_ERROR "COPPER_CUDA=ON but no CUDA toolkit with cuBLAS was found. HINT: install it "
                        "(nvcc on PATH, or -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc), or use COPPER_CUDA=AUTO/OFF")
  endif()
endif()
# NCCL (shipped with the CUDA toolkit, or Debian's libnccl-dev): the communicator between GPUs
# for data-parallel training (dist/nccl.cpp). Built whenever the CUDA backend is and NCCL is found.
set(COPPER_HAS_NCCL OFF)
if(COPPER_HAS_CUDA)
  find_path(COPPER_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
  find_library(COPPER_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}
               PATH_SUFFIXES lib lib64)
  if(COPPER_NCCL_INCLUDE_DIR AND COPPER_NCCL_LIBRARY)
    set(COPPER_HAS_NCCL ON)
  endif()
  message(STATUS "copper: NCCL communicator ${COPPER_HAS_NCCL} (${COPPER_NCCL_LIBRARY})")
endif()
if(COPPER_HAS_CUDA)
  message(STATUS "copper: CUDA backend ON (toolkit ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}; COPPER_CUDA=${COPPER_CUDA})")
else()
  message(STATUS "copper: CUDA backend OFF (COPPER_CUDA=${COPPER_CUDA})")
endif()
