# The hdnnp core library target, shared by the Python build (top-level CMakeLists.txt)
# and the LAMMPS plugin build (lammps_plugin/CMakeLists.txt).
# Expects HDNNP_SOURCE_DIR (the folder holding cpp/), HDNNP_NATIVE and HDNNP_OPENMP.
if(TARGET hdnnp_core)
  return()
endif()
add_library(hdnnp_core STATIC
  ${HDNNP_SOURCE_DIR}/cpp/src/elements.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/settings.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/descriptors.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/network.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/neighbor.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/model.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/baseline.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/qeq.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/ewald_parameters.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/long_range.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/kalman.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/third_generation.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/fourth_generation.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/electrostatics.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/pme.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/domain.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/structure_io.cpp)
set_target_properties(hdnnp_core PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_compile_features(hdnnp_core PUBLIC cxx_std_17)
target_include_directories(hdnnp_core PUBLIC ${HDNNP_SOURCE_DIR}/cpp/include)
# -fno-math-errno: lets sqrt vectorise (errno is never read); -fno-trapping-math: lets
# masked lanes compute speculatively (FP exception flags are never read); -fopenmp-simd: the
# `omp simd` loops of the kernels, also without OpenMP threads; -fcx-limited-range: complex
# products (the FFT's) without the NaN/infinity recovery of libgcc's __muldc3 (values are finite).
target_compile_options(hdnnp_core PRIVATE -Wall -Wextra -O3 -fopenmp-simd -fno-math-errno -fno-trapping-math
                                          -fcx-limited-range)
if(HDNNP_NATIVE)
  include(CheckCXXCompilerFlag)
  check_cxx_compiler_flag(-march=native HDNNP_HAS_MARCH_NATIVE)
  if(HDNNP_HAS_MARCH_NATIVE)
    target_compile_options(hdnnp_core PUBLIC -march=native)
  endif()
endif()
# Eigen (header-only, for the charge-equilibration factorisations; not in the public headers):
# the cmeel-eigen wheel (a build requirement, and a dependency of the [lammps] extra whose plugin
# compiles this core) or an Eigen3 that find_package finds (HDNNP_EIGEN_DIR: its cmake folder).
if(NOT TARGET Eigen3::Eigen)
  find_package(Eigen3 3.3 CONFIG QUIET HINTS ${HDNNP_EIGEN_DIR})
endif()
if(NOT TARGET Eigen3::Eigen)
  set(_hdnnp_py "${Python_EXECUTABLE}")
  if(NOT _hdnnp_py)
    find_program(_hdnnp_py NAMES python3 python)
  endif()
  if(_hdnnp_py)
    execute_process(
      COMMAND "${_hdnnp_py}" -c "import os, sys; print(next((os.path.join(p, 'cmeel.prefix') for p in sys.path if os.path.isdir(os.path.join(p, 'cmeel.prefix', 'share', 'eigen3'))), ''))"
      OUTPUT_VARIABLE _hdnnp_cmeel OUTPUT_STRIP_TRAILING_WHITESPACE)
  endif()
  find_package(Eigen3 3.3 CONFIG HINTS "${_hdnnp_cmeel}/share/eigen3/cmake")
  if(NOT TARGET Eigen3::Eigen)
    message(FATAL_ERROR "Eigen3 not found: pip install cmeel-eigen (or set HDNNP_EIGEN_DIR to the folder of "
                        "Eigen3Config.cmake)")
  endif()
endif()
target_link_libraries(hdnnp_core PRIVATE Eigen3::Eigen)
if(HDNNP_OPENMP)
  find_package(OpenMP)
  if(OpenMP_CXX_FOUND)
    target_link_libraries(hdnnp_core PUBLIC OpenMP::OpenMP_CXX)
  endif()
endif()
# (GCC 12 warns about its own AVX-512 intrinsics inside Eigen's kernels)
set_source_files_properties(${HDNNP_SOURCE_DIR}/cpp/src/qeq.cpp ${HDNNP_SOURCE_DIR}/cpp/src/pme.cpp
                            PROPERTIES COMPILE_OPTIONS "-Wno-maybe-uninitialized")
