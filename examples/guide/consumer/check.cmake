# Builds and runs the guide's consumer project (docs/guide.md, "Using xoptim from
# CMake") against this build of xoptim, installed into a scratch prefix.
#   cmake -DBUILD_DIR=<xoptim build tree> -DWORK_DIR=<scratch> [-DCXX=<compiler>] -P check.cmake
cmake_minimum_required(VERSION 3.19)  # COMMAND_ERROR_IS_FATAL
if(NOT DEFINED BUILD_DIR OR NOT DEFINED WORK_DIR)
  message(FATAL_ERROR "check.cmake: -DBUILD_DIR=... and -DWORK_DIR=... are required")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
set(compiler)
if(DEFINED CXX)
  set(compiler -DCMAKE_CXX_COMPILER=${CXX})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
                OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR} -B ${WORK_DIR}/build ${compiler}
                        -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build COMMAND_ERROR_IS_FATAL ANY)
foreach(program train train_muon)
  execute_process(COMMAND ${WORK_DIR}/build/${program} COMMAND_ERROR_IS_FATAL ANY)
endforeach()
