# Finds NCCL: NCCL_ROOT (CMake or environment), the nvidia-nccl-cu* Python wheel
# (site-packages/nvidia/nccl, where PyTorch's pip wheels take it from: beside Torch_DIR's
# site-packages, or wherever a Python below can import it), CUDA_HOME, the CUDA
# toolkit, system paths. The wheel is asked of each Python that may hold it: Python3_EXECUTABLE,
# Python_EXECUTABLE (torch's cuda.cmake sets that one), XLTUNE_NCCL_PYTHON, the project's .venv
# and python3 on the PATH. Defines NCCL_FOUND, NCCL_VERSION and the imported target NCCL::NCCL.
set(_nccl_hints ${NCCL_ROOT} $ENV{NCCL_ROOT})
# A pip torch: Torch_DIR is site-packages/torch/share/cmake/Torch, its NCCL site-packages/nvidia/nccl.
if(Torch_DIR)
  get_filename_component(_nccl_site "${Torch_DIR}/../../../.." ABSOLUTE)
  list(APPEND _nccl_hints ${_nccl_site}/nvidia/nccl)
endif()
set(_nccl_pythons ${Python3_EXECUTABLE} ${Python_EXECUTABLE} ${XLTUNE_NCCL_PYTHON} $ENV{XLTUNE_NCCL_PYTHON}
    ${PROJECT_SOURCE_DIR}/.venv/bin/python)
find_program(_nccl_path_python NAMES python3 python)
list(APPEND _nccl_pythons ${_nccl_path_python})
list(REMOVE_DUPLICATES _nccl_pythons)
foreach(_python IN LISTS _nccl_pythons)
  if(NOT EXISTS "${_python}")
    continue()
  endif()
  execute_process(COMMAND ${_python} -c
    "import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0])"
    OUTPUT_VARIABLE _nccl_wheel OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_nccl_wheel)
    list(APPEND _nccl_hints ${_nccl_wheel})
  endif()
endforeach()
list(APPEND _nccl_hints $ENV{CUDA_HOME} ${CUDAToolkit_ROOT} /usr/local/cuda /usr)
find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_nccl_hints} PATH_SUFFIXES include)
find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_nccl_hints} PATH_SUFFIXES lib lib64)
if(NCCL_INCLUDE_DIR AND EXISTS "${NCCL_INCLUDE_DIR}/nccl.h")
  file(STRINGS "${NCCL_INCLUDE_DIR}/nccl.h" _nccl_version_lines REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX MATCH "NCCL_${_part} ([0-9]+)" _m "${_nccl_version_lines}")
    set(_nccl_${_part} ${CMAKE_MATCH_1})
  endforeach()
  set(NCCL_VERSION "${_nccl_MAJOR}.${_nccl_MINOR}.${_nccl_PATCH}")
endif()
include(FindPackageHandleStandardArgs)
list(JOIN _nccl_hints ", " _nccl_looked)
find_package_handle_standard_args(NCCL REQUIRED_VARS NCCL_INCLUDE_DIR NCCL_LIBRARY VERSION_VAR NCCL_VERSION
  REASON_FAILURE_MESSAGE "looked in ${_nccl_looked}: set NCCL_ROOT to the folder with include/nccl.h and lib/")
if(NCCL_FOUND AND NOT TARGET NCCL::NCCL)
  add_library(NCCL::NCCL UNKNOWN IMPORTED)
  set_target_properties(NCCL::NCCL PROPERTIES IMPORTED_LOCATION "${NCCL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
endif()
