# Fails if OBJECTS defines an optimizer step (xoptim::optimizer<...>::commit<...>), the
# element-type part of its parameter walk (visitor::take<T>, visitor::finish) or the work
# beside the step of a stepper owning AdamW, Adam, SGD, Lion or Muon (stepper<O>::accumulate<T>
# and the like; other steppers are compiled where they are used): a unit that includes
# xoptim/instances.hpp must leave them to the project's instantiation unit. With
# IO set, also the io functions that XOPTIM_SEPARATE_IO leaves to it (io/separate.hpp).

# Fails unless OBJECTS defines no symbol that PATTERN matches, and its undefined symbols
# (those it takes from the instantiation unit) match PATTERN, and each further argument:
# a check of a unit that uses none of them could not fail. WHAT names them in messages.
function(left_to_instantiation_unit what pattern)
  execute_process(COMMAND ${NM} -C --defined-only ${OBJECTS} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${NM} failed on ${OBJECTS}")
  endif()
  string(REGEX MATCHALL "${pattern}" defined "${symbols}")
  if(defined)
    message(FATAL_ERROR "${what} compiled in this unit:\n${defined}")
  endif()
  execute_process(COMMAND ${NM} -C --undefined-only ${OBJECTS} OUTPUT_VARIABLE symbols)
  string(REGEX MATCHALL "${pattern}" used "${symbols}")
  list(LENGTH used count)
  if(count EQUAL 0)
    message(FATAL_ERROR "the unit uses no ${what} from the instantiation unit: nothing to check")
  endif()
  foreach(part ${ARGN})
    if(NOT used MATCHES "${part}")
      message(FATAL_ERROR "the unit uses no ${part} from the instantiation unit: nothing to check")
    endif()
  endforeach()
  message(STATUS "no ${what} defined here; ${count} used from the instantiation unit")
endfunction()

left_to_instantiation_unit("step"
  "[^\n]*xoptim::(optimizer<[^\n]*>::(commit<|visitor::take<|visitor::finish\\(\\))|stepper<xoptim::(adam_base<(true|false)> |sgd|lion|muon)>::(make_accumulators\\(|check_accumulators<|accumulate<|use_accumulators<|reduce<|first_non_finite))[^\n]*"
  "::commit<" "::visitor::take<" "::visitor::finish\\(" "::accumulate<")
if(IO)
  left_to_instantiation_unit("io function"
    "[^\n]*(xoptim::io::safetensors_detail::|(xoptim::io::(safetensors_writer::(add|metadata|layout|header|write|serialize)|safetensors_file::(read|read_header|read_data|parse|parse_header|find|data))|xoptim::detail::(schedules_json|stepper_json|parse_count|parse_host_number|hex|metadata_checksum|check_metadata|add_param_tensors|add_state_tensors)|xoptim::upgrade_checkpoint)(\\[abi:cxx11\\])?\\()[^\n]*")
endif()
