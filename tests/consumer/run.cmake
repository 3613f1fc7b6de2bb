# Installs xoptim into a scratch prefix, then builds and runs tests/consumer against it.
# Usage: cmake -DSOURCE_DIR=<xoptim source> -DWORK_DIR=<scratch dir> [-DBLA_VENDOR=<vendor>
#        -DEXPECT_BLAS=<name Muon must report>] -P run.cmake
foreach(var SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run.cmake: -D${var}=... is required")
  endif()
endforeach()

set(build_dir "${WORK_DIR}/xoptim-build")
set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/consumer-build")
file(REMOVE_RECURSE "${WORK_DIR}")

function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install_and_consume: ${what} failed (${rc})")
  endif()
endfunction()

step("configure xoptim" ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${build_dir}"
     -DCMAKE_INSTALL_PREFIX=${prefix}
     -DXOPTIM_BUILD_TESTS=OFF -DXOPTIM_BUILD_BENCHMARKS=OFF -DXOPTIM_BUILD_EXAMPLES=OFF)
step("install xoptim" ${CMAKE_COMMAND} --install "${build_dir}")
step("configure consumer" ${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer" -B "${consumer_build}"
     -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release -DBLA_VENDOR=${BLA_VENDOR})
step("build consumer" ${CMAKE_COMMAND} --build "${consumer_build}")
step("run consumer" "${consumer_build}/consumer")
execute_process(COMMAND "${consumer_build}/consumer_muon" RESULT_VARIABLE rc OUTPUT_VARIABLE out)
message(STATUS "${out}")
if(NOT rc EQUAL 0 OR NOT out MATCHES "blas: ${EXPECT_BLAS}")
  message(FATAL_ERROR "install_and_consume: consumer_muon failed (${rc}) or did not report '${EXPECT_BLAS}'")
endif()
message(STATUS "install_and_consume: ok")
