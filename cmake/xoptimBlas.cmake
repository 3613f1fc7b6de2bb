# xoptim::muon: xoptim::xoptim with a CBLAS, for Muon and Newton-Schulz (optim/muon.hpp,
# linalg/newton_schulz.hpp). The CBLAS is CMake's FindBLAS pick, so BLA_VENDOR set before
# find_package(xoptim) chooses it: OpenBLAS, FLAME (BLIS), Intel10_64lp (MKL), Apple
# (Accelerate), Generic, ... Without BLA_VENDOR the first one FindBLAS finds is taken.
# Not defined, with a message saying how to get one, when no BLAS is found.
# Included by xoptimConfig.cmake and by xoptim's own CMakeLists.txt.
include_guard(GLOBAL)

if(NOT TARGET xoptim::muon)
  find_package(BLAS QUIET)
  if(BLAS_FOUND)
    add_library(xoptim::muon INTERFACE IMPORTED GLOBAL)
    # The libraries linked, for xoptim::blas::library() where it cannot identify the CBLAS
    # by its own functions (linalg/blas_info.hpp).
    string(REPLACE ";" " " _xoptim_blas_linked "${BLAS_LIBRARIES}")
    if(TARGET BLAS::BLAS)  # CMake >= 3.18
      set(_xoptim_blas BLAS::BLAS)
    else()
      set(_xoptim_blas ${BLAS_LINKER_FLAGS} ${BLAS_LIBRARIES})
    endif()
    set_target_properties(xoptim::muon PROPERTIES
      INTERFACE_LINK_LIBRARIES "xoptim::xoptim;${_xoptim_blas}"
      INTERFACE_COMPILE_DEFINITIONS "XOPTIM_BLAS_LINKED=\"${_xoptim_blas_linked}\"")
    message(STATUS "xoptim::muon: CBLAS ${_xoptim_blas_linked}")
    unset(_xoptim_blas_linked)
    unset(_xoptim_blas)
  else()
    message(STATUS "xoptim::muon is not defined: no BLAS found (BLA_VENDOR='${BLA_VENDOR}'). "
                   "Muon needs a CBLAS: install one (Debian: libopenblas-dev or libblis-dev) or "
                   "set BLA_VENDOR to the one you have (OpenBLAS, FLAME, Intel10_64lp, Apple, Generic)")
  endif()
endif()
