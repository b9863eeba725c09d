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
  ${HDNNP_SOURCE_DIR}/cpp/src/electrostatics.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/pme.cpp
  ${HDNNP_SOURCE_DIR}/cpp/src/structure_io.cpp)
set_target_properties(hdnnp_core PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_compile_features(hdnnp_core PUBLIC cxx_std_17)
target_include_directories(hdnnp_core PUBLIC ${HDNNP_SOURCE_DIR}/cpp/include)
# -fno-math-errno: lets sqrt vectorise (errno is never read); -fno-trapping-math: lets
# masked lanes compute speculatively (FP exception flags are never read); -fopenmp-simd: the
# `omp simd` loops of the kernels, also without OpenMP threads.
target_compile_options(hdnnp_core PRIVATE -Wall -Wextra -O3 -fopenmp-simd -fno-math-errno -fno-trapping-math)
if(HDNNP_NATIVE)
  include(CheckCXXCompilerFlag)
  check_cxx_compiler_flag(-march=native HDNNP_HAS_MARCH_NATIVE)
  if(HDNNP_HAS_MARCH_NATIVE)
    target_compile_options(hdnnp_core PUBLIC -march=native)
  endif()
endif()
if(HDNNP_OPENMP)
  find_package(OpenMP)
  if(OpenMP_CXX_FOUND)
    target_link_libraries(hdnnp_core PUBLIC OpenMP::OpenMP_CXX)
  endif()
endif()
