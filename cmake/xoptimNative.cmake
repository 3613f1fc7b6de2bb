# xoptim::native: an INTERFACE target that compiles its users for the CPU of the machine
# that builds them (-march=native on x86-64, -mcpu=native on ARM64; with GCC also
# -Wno-maybe-uninitialized, below), each flag tried with check_cxx_compiler_flag first.
# Empty, with a message, where no flag is accepted or when cross-compiling (the build
# machine's CPU is not the target's: name the target CPU yourself, e.g.
# -mcpu=neoverse-v1). Included by xoptimConfig.cmake and by xoptim's own CMakeLists.txt,
# so find_package(xoptim) and add_subdirectory consumers both get it.
include_guard(GLOBAL)
include(CheckCXXCompilerFlag)

function(xoptim_native_flags out)
  set(flags "")
  if(NOT CMAKE_CXX_COMPILER_LOADED)
    set(why "the project does not enable CXX")
  elseif(CMAKE_CROSSCOMPILING)
    set(why "cross-compiling for ${CMAKE_SYSTEM_PROCESSOR}")
  else()
    # GCC on ARM64 takes both; -mcpu also tunes. Clang on ARM64 refuses -march=native.
    if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
      set(candidates -mcpu=native -march=native)
    else()
      set(candidates -march=native)
    endif()
    foreach(flag IN LISTS candidates)
      string(MAKE_C_IDENTIFIER "XOPTIM_CXX_ACCEPTS${flag}" accepted)
      check_cxx_compiler_flag(${flag} ${accepted})
      if(${accepted})
        set(flags ${flag})
        break()
      endif()
    endforeach()
    set(why "${CMAKE_CXX_COMPILER_ID} accepts none of: ${candidates}")
    # GCC 12's AVX-512 intrinsics warn "may be used uninitialized" where inlined into
    # xoptim's kernels (bug 105593), also in headers included as system headers: a user
    # building with -Wall -Werror would fail on GCC's own code.
    if(flags AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      check_cxx_compiler_flag(-Wno-maybe-uninitialized XOPTIM_CXX_ACCEPTS_Wno_maybe_uninitialized)
      if(XOPTIM_CXX_ACCEPTS_Wno_maybe_uninitialized)
        list(APPEND flags -Wno-maybe-uninitialized)
      endif()
    endif()
  endif()
  if(flags)
    message(STATUS "xoptim::native: ${flags}")
  else()
    message(STATUS "xoptim::native: no flags (${why}); xoptim compiles for the target's baseline SIMD")
  endif()
  set(${out} ${flags} PARENT_SCOPE)
endfunction()

if(NOT TARGET xoptim::native)
  xoptim_native_flags(_xoptim_native_flags)
  add_library(xoptim::native INTERFACE IMPORTED GLOBAL)
  set_target_properties(xoptim::native PROPERTIES INTERFACE_COMPILE_OPTIONS "${_xoptim_native_flags}")
  unset(_xoptim_native_flags)
endif()
