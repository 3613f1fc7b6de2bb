# tiny_gpt's checks beyond the smoke run, as ctest runs them (examples/CMakeLists.txt):
#
#   cmake -DEXE=path/to/tiny_gpt -DTEXT=README.md -DWORK=scratch/dir -DMODE=resume -P checks.cmake
#
# MODE resume: for every optimizer (and with accumulation), a run of 30 steps straight
#   through and one stopped after step 13 and resumed in a new process end in
#   byte-identical checkpoints; a
#   resume with another model shape or optimizer fails naming the difference and leaves
#   the checkpoint, its run record and the outputs as they were.
# MODE bad_input: an empty, binary or too short --text, and a diverging run, each fail
#   with a message that says so (the divergence with its step).
cmake_minimum_required(VERSION 3.16)

# A small model, so that a check takes seconds (and stays reasonable under ASan).
set(small --layers 2 --d-model 32 --heads 2 --context 16 --batch 4 --steps 30 --eval-every 10 --sample-chars 20)

function(run_tiny_gpt expect_ok)
  execute_process(COMMAND ${EXE} ${small} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(output "${out}${err}" PARENT_SCOPE)
  if(expect_ok AND NOT rc EQUAL 0)
    message(FATAL_ERROR "tiny_gpt ${ARGN} failed (${rc}):\n${out}${err}")
  elseif(NOT expect_ok AND rc EQUAL 0)
    message(FATAL_ERROR "tiny_gpt ${ARGN} should have failed:\n${out}${err}")
  endif()
endfunction()

function(expect_output regex)
  if(NOT output MATCHES "${regex}")
    message(FATAL_ERROR "expected output matching '${regex}', got:\n${output}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK})
if(MODE STREQUAL "resume")
  # The last case accumulates 3 micro-batches per step.
  foreach(case adamw hybrid adamw8bit adamw8bit_stable lion adamw_cautious lamb adafactor ademamix adamw_schedulefree sgd_schedulefree hybrid_normuon lion:3)
    string(REPLACE ":" ";" parts ${case})
    list(GET parts 0 optimizer)
    list(LENGTH parts n)
    set(options --text ${TEXT} --optimizer ${optimizer})
    if(n EQUAL 2)
      list(GET parts 1 micro)
      list(APPEND options --accumulate ${micro})
    endif()
    run_tiny_gpt(TRUE ${options} --out ${WORK}/${case}/straight)
    run_tiny_gpt(TRUE ${options} --out ${WORK}/${case}/split --stop-after 13)
    expect_output("stopped at step 13 of 30")
    run_tiny_gpt(TRUE ${options} --out ${WORK}/${case}/split --resume ${WORK}/${case}/split/${optimizer}.safetensors)
    expect_output("resumed at step 13")
    file(SHA256 ${WORK}/${case}/straight/${optimizer}.safetensors straight)
    file(SHA256 ${WORK}/${case}/split/${optimizer}.safetensors split)
    if(NOT straight STREQUAL split)
      message(FATAL_ERROR "${case}: the resumed run's checkpoint differs from the straight run's")
    endif()
    message(STATUS "${case}: resumed run bit-identical")
  endforeach()

  set(saved ${WORK}/adamw/split/adamw.safetensors)
  file(SHA256 ${saved} before)
  file(SHA256 ${saved}.run record_before)
  file(SHA256 ${WORK}/adamw/split/tiny_gpt.csv csv_before)
  run_tiny_gpt(FALSE --text ${TEXT} --optimizer adamw --out ${WORK}/adamw/split --resume ${saved} --layers 3)
  expect_output("cannot resume from .*adamw.safetensors: it was trained with layers 2 \\(here 3\\)")
  run_tiny_gpt(FALSE --text ${TEXT} --optimizer lion --out ${WORK}/adamw/split --resume ${saved})
  expect_output("optimizer adamw \\(here lion\\)")
  run_tiny_gpt(FALSE --text ${TEXT} --optimizer adamw --out ${WORK}/adamw/split --resume ${saved} --heads 4)
  expect_output("heads 2 \\(here 4\\)")
  file(SHA256 ${saved} after)
  file(SHA256 ${saved}.run record_after)
  file(SHA256 ${WORK}/adamw/split/tiny_gpt.csv csv_after)
  if(NOT before STREQUAL after OR NOT record_before STREQUAL record_after OR NOT csv_before STREQUAL csv_after)
    message(FATAL_ERROR "a refused resume changed the checkpoint, its record or the CSV")
  endif()
elseif(MODE STREQUAL "bad_input")
  file(MAKE_DIRECTORY ${WORK})
  file(WRITE ${WORK}/empty.txt "")
  run_tiny_gpt(FALSE --text ${WORK}/empty.txt --out ${WORK}/out)
  expect_output("empty.txt is empty")
  run_tiny_gpt(FALSE --text ${EXE} --out ${WORK}/out)  # the program itself: binary
  expect_output("tiny_gpt is not text: a NUL byte at offset [0-9]+ \\(a binary file\\?\\)")
  file(WRITE ${WORK}/short.txt "In the beginning God created the heaven and the earth.\n")
  run_tiny_gpt(FALSE --text ${WORK}/short.txt --out ${WORK}/out)
  expect_output("short.txt has 55 characters, too short for a context of 16")
  run_tiny_gpt(FALSE --text ${TEXT} --out ${WORK}/out --optimizer adamw --lr 1e30)
  expect_output("adamw \\(lr 1e\\+30\\) diverged at step [0-9]+: ")
  if(EXISTS ${WORK}/out/adamw.safetensors)
    message(FATAL_ERROR "a diverged run wrote a checkpoint")
  endif()
  run_tiny_gpt(FALSE --text ${TEXT} --out ${WORK}/out --optimizer adamw --lr 1e6)
  expect_output("diverged at step [0-9]+: xoptim::stepper: parameter '.*': gradient holds NaN or Inf")
else()
  message(FATAL_ERROR "MODE must be resume or bad_input (got '${MODE}')")
endif()
