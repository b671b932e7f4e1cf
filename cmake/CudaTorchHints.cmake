# Included before find_package(Torch). With a CUDA libtorch, torch's own cuda.cmake runs FindCUDA,
# enable_language(CUDA) and needs libnvrtc; on a machine where the CUDA pieces come from pip
# wheels (PyTorch's own layout: site-packages/nvidia/...) or nvcc is a wrapper script on the
# PATH, none of that finds anything by itself. This sets, unless the caller did:
#   CUDA_TOOLKIT_ROOT_DIR  from CUDA_HOME, CUDA_PATH, /usr/local/cuda, or where `nvcc` really is
#                          (nvcc --dryrun names its own folder, through any wrapper)
#   CMAKE_CUDA_COMPILER    that toolkit's bin/nvcc
#   CMAKE_CUDA_ARCHITECTURES, TORCH_CUDA_ARCH_LIST  90 / 9.0 (xltune compiles no kernels of its
#                          own: the value only has to be valid; it skips the detection run)
#   CUDA_nvrtc_LIBRARY     libnvrtc from the toolkit or the nvidia-cuda-nvrtc wheel beside torch
# A CPU libtorch (no libtorch_cuda.so beside Torch_DIR) is left alone.
set(_xltune_torch_lib "")
if(Torch_DIR)
  get_filename_component(_xltune_torch_lib "${Torch_DIR}/../../../lib" ABSOLUTE)
endif()
if(NOT _xltune_torch_lib OR NOT EXISTS "${_xltune_torch_lib}/libtorch_cuda.so")
  return()
endif()
get_filename_component(_xltune_site "${_xltune_torch_lib}/../.." ABSOLUTE)  # site-packages, for a wheel

if(NOT CUDA_TOOLKIT_ROOT_DIR)
  foreach(_root IN ITEMS "$ENV{CUDA_HOME}" "$ENV{CUDA_PATH}" /usr/local/cuda)
    if(_root AND EXISTS "${_root}/bin/nvcc")
      set(CUDA_TOOLKIT_ROOT_DIR "${_root}")
      break()
    endif()
  endforeach()
endif()
if(NOT CUDA_TOOLKIT_ROOT_DIR)
  find_program(_xltune_nvcc nvcc)
  if(_xltune_nvcc)
    execute_process(COMMAND ${_xltune_nvcc} --dryrun -x cu -c /dev/null -o /dev/null
                    ERROR_VARIABLE _xltune_dryrun OUTPUT_VARIABLE _xltune_dryrun_out)
    string(REGEX MATCH "_HERE_=([^\n]*)/bin" _m "${_xltune_dryrun}${_xltune_dryrun_out}")
    if(CMAKE_MATCH_1)
      set(CUDA_TOOLKIT_ROOT_DIR "${CMAKE_MATCH_1}")
    endif()
  endif()
endif()
if(NOT CUDA_TOOLKIT_ROOT_DIR)
  message(FATAL_ERROR "${Torch_DIR} is a CUDA libtorch but no CUDA toolkit was found (nvcc): set CUDA_HOME "
                      "to the folder with bin/nvcc and include/cuda_runtime.h")
endif()
set(CUDA_TOOLKIT_ROOT_DIR "${CUDA_TOOLKIT_ROOT_DIR}" CACHE PATH "the CUDA toolkit (nvcc, runtime headers)")
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  set(CMAKE_CUDA_COMPILER "${CUDA_TOOLKIT_ROOT_DIR}/bin/nvcc" CACHE FILEPATH "")
endif()
if(NOT CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "")
endif()
if(NOT TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "9.0" CACHE STRING "")
endif()

if(NOT CUDA_nvrtc_LIBRARY)
  file(GLOB _xltune_nvrtc LIST_DIRECTORIES false
       "${CUDA_TOOLKIT_ROOT_DIR}/lib64/libnvrtc.so" "${CUDA_TOOLKIT_ROOT_DIR}/lib/libnvrtc.so"
       "${_xltune_site}/nvidia/cu1[0-9]/lib/libnvrtc.so.1[0-9]" "${_xltune_site}/nvidia/cuda_nvrtc/lib/libnvrtc.so.1[0-9]")
  list(FILTER _xltune_nvrtc EXCLUDE REGEX "alt")
  if(_xltune_nvrtc)
    list(GET _xltune_nvrtc 0 _xltune_nvrtc)
    set(CUDA_nvrtc_LIBRARY "${_xltune_nvrtc}" CACHE FILEPATH "libnvrtc (torch links caffe2::nvrtc)")
  else()
    message(FATAL_ERROR "${Torch_DIR} is a CUDA libtorch but libnvrtc was found neither in ${CUDA_TOOLKIT_ROOT_DIR} "
                        "nor in ${_xltune_site}/nvidia: install the nvidia-cuda-nvrtc wheel or set CUDA_nvrtc_LIBRARY")
  endif()
endif()
message(STATUS "xltune: CUDA libtorch; toolkit ${CUDA_TOOLKIT_ROOT_DIR}, nvrtc ${CUDA_nvrtc_LIBRARY}")
