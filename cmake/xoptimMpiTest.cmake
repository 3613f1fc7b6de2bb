# xoptim_add_mpi_test(NAME RANKS COMMAND...): a ctest test running COMMAND on RANKS MPI
# ranks, label "mpi", one at a time (RESOURCE_LOCK), bounded in time. OpenMPI refuses to
# run as root (CI does) and more ranks than cores unless told; MPICH needs neither.
# mpiexec's own timeout (OpenMPI --timeout, MPICH MPIEXEC_TIMEOUT) and ctest's TIMEOUT
# turn a hang into a failure. Sets XOPTIM_MPIEXEC_FLAGS and XOPTIM_MPI_ENV (lists) for
# tests that launch mpiexec themselves, in the including directory's scope (no include
# guard: every directory that includes this gets them).

set(XOPTIM_MPI_TEST_TIMEOUT 170 CACHE STRING "Seconds an MPI test may run")
execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE xoptim_mpiexec_version
                ERROR_VARIABLE xoptim_mpiexec_version)
if(xoptim_mpiexec_version MATCHES "Open MPI|OpenRTE")
  set(XOPTIM_MPIEXEC_FLAGS --oversubscribe --timeout ${XOPTIM_MPI_TEST_TIMEOUT})
  set(XOPTIM_MPI_ENV OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1)
else()
  set(XOPTIM_MPIEXEC_FLAGS "")
  set(XOPTIM_MPI_ENV MPIEXEC_TIMEOUT=${XOPTIM_MPI_TEST_TIMEOUT})
endif()
# Leak checking under ASan would report MPI's own allocations.
list(APPEND XOPTIM_MPI_ENV "ASAN_OPTIONS=halt_on_error=1:detect_leaks=0")

function(xoptim_add_mpi_test name ranks)
  add_test(NAME ${name}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${ranks} ${XOPTIM_MPIEXEC_FLAGS} ${MPIEXEC_PREFLAGS} ${ARGN})
  math(EXPR timeout "${XOPTIM_MPI_TEST_TIMEOUT} + 10")
  set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout} LABELS mpi RESOURCE_LOCK mpi
                       ENVIRONMENT "${XOPTIM_MPI_ENV}")
endfunction()
