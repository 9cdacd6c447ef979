# The test passes (scripts/test PASS; .ci/run runs all four) and the helpers that define tests.
#
# Every CTest carries labels that say what it exercises. Three of them choose what the sanitizer
# and tcp passes of scripts/test run (README, "Tests"); a test carries each that applies:
#   threads    it runs more than one of our threads (actors, a broker, clients, a fleet, processes):
#              ThreadSanitizer's pass runs it
#   memory     it runs our code on outside input (frames, flags, files, images) or allocates per
#              message: AddressSanitizer+UBSan's pass runs it
#   transport  it takes its data-plane transport from the build's default (ZYOLO_TRANSPORT): the
#              pass built with tcp as that default runs it
# The others say what kind of test it is: unit, fleet, scenario, autoscale, yolo, process, netns,
# source (reads the tree, runs nothing of ours), fuzz, bench. `ctest -L yolo` runs one kind.
#
# ZYOLO_PASS (scripts/test sets it) defines only the tests one pass runs, so only they (and what
# they run) are built:
#   "" or plain: every test;  thread: label threads;  address: memory;  tcp: transport.
# Source checks, the libFuzzer run and the benchmark harness's tests carry none of the three:
# they run once, in the plain pass.
set(ZYOLO_PASS "" CACHE STRING "Define only this pass's tests: plain (all), thread, address or tcp")
set_property(CACHE ZYOLO_PASS PROPERTY STRINGS "" plain thread address tcp)
set(zyolo_pass_label_ "")
if(ZYOLO_PASS STREQUAL "thread")
  set(zyolo_pass_label_ threads)
elseif(ZYOLO_PASS STREQUAL "address")
  set(zyolo_pass_label_ memory)
elseif(ZYOLO_PASS STREQUAL "tcp")
  set(zyolo_pass_label_ transport)
elseif(NOT ZYOLO_PASS STREQUAL "" AND NOT ZYOLO_PASS STREQUAL "plain")
  message(FATAL_ERROR "ZYOLO_PASS must be plain, thread, address, tcp or empty, not '${ZYOLO_PASS}'")
endif()

# Under a sanitizer the scenarios play their time line at half its length (zyolo run
# --time-scale): every fault still happens and heals, heartbeats and timeouts scale with it. The
# tests scale what they expect of times by the same factor (tests/scenario_runs.hpp).
if(ZYOLO_SANITIZE STREQUAL "")
  set(zyolo_time_scale_default 1)
else()
  set(zyolo_time_scale_default 0.5)
endif()
set(ZYOLO_TEST_TIME_SCALE "${zyolo_time_scale_default}" CACHE STRING
  "The time scale of the suite's scenario runs (1: real lengths; sanitizer builds: 0.5)")

set(zyolo_test_env_
  "ZYOLO_TEST_TIME_SCALE=${ZYOLO_TEST_TIME_SCALE}"
  "ZYOLO_TEST_SANITIZER=${ZYOLO_SANITIZE}"
  "ZYOLO_BUILD_TRANSPORT=${ZYOLO_TRANSPORT}"
  "TSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/tsan.supp halt_on_error=1 second_deadlock_stack=1"
  "ASAN_OPTIONS=detect_leaks=1"
  "UBSAN_OPTIONS=halt_on_error=1 print_stacktrace=1")

# zyolo_in_pass(OUT LABELS...): OUT is true when this build's pass runs a test with these labels.
function(zyolo_in_pass out)
  set(in FALSE)
  if(zyolo_pass_label_ STREQUAL "" OR zyolo_pass_label_ IN_LIST ARGN)
    set(in TRUE)
  endif()
  set(${out} ${in} PARENT_SCOPE)
endfunction()

# zyolo_check(NAME TIMEOUT_SECONDS LABELS "L1;L2" COMMAND ...): a test that runs a script.
function(zyolo_check name timeout)
  cmake_parse_arguments(PARSE_ARGV 2 arg "" "" "LABELS;COMMAND")
  zyolo_in_pass(in ${arg_LABELS})
  if(NOT in)
    return()
  endif()
  add_test(NAME ${name} COMMAND ${arg_COMMAND})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout} LABELS "${arg_LABELS}"
    ENVIRONMENT "${zyolo_test_env_}")
endfunction()

# zyolo_serial(TEST...): these tests run alone, never beside another.
function(zyolo_serial)
  foreach(t ${ARGN})
    if(TEST ${t})
      set_tests_properties(${t} PROPERTIES RUN_SERIAL TRUE)
    endif()
  endforeach()
endfunction()


# zyolo_processors(N TEST...): each of these tests takes N of ctest's slots (PROCESSORS).
function(zyolo_processors n)
  foreach(t ${ARGN})
    if(TEST ${t})
      set_tests_properties(${t} PROPERTIES PROCESSORS ${n})
    endif()
  endforeach()
endfunction()

# zyolo_cost(SECONDS TEST...): about how long these tests take, so that ctest starts them first.
function(zyolo_cost seconds)
  foreach(t ${ARGN})
    if(TEST ${t})
      set_tests_properties(${t} PROPERTIES COST ${seconds})
    endif()
  endforeach()
endfunction()
