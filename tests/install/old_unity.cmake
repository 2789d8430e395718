# CMAKE_PROJECT_INCLUDE for the upgrade test's old .deb (old_deb.py): compile the earlier
# commit as a unity build, as the tree itself is built since MX_UNITY_BUILD (CMakeLists.txt),
# also when that commit predates the option. Commits before it had two targets whose files
# shared private names (log_report's parsers, the console's pages); those two compile file by
# file. Any other clash fails the build with the compiler's message naming both files.
set(CMAKE_UNITY_BUILD ON)
set(CMAKE_UNITY_BUILD_BATCH_SIZE 8)

function(mx_old_deb_file_by_file)
  foreach(t mx_logparse mx_console_core)
    if(TARGET ${t})
      set_target_properties(${t} PROPERTIES UNITY_BUILD OFF)
    endif()
  endforeach()
endfunction()
# At the end of the top-level CMakeLists.txt, when every target exists.
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL mx_old_deb_file_by_file)
