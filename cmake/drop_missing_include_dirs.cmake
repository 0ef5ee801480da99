# The ROS 2 message wheels on PyPI export CMake targets whose include paths
# name the machine they were built on (/opt/python/cp311-cp311/...). CMake
# refuses to generate with non-existent include paths on imported targets,
# so remove those paths; our own generated targets find Python and NumPy
# themselves. On a stock ROS 2 install every path exists and this is a no-op.
function(latentvla_drop_missing_include_dirs)
  get_directory_property(_imported_targets IMPORTED_TARGETS)
  foreach(_target IN LISTS _imported_targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_kept "")
    set(_dropped "")
    foreach(_dir IN LISTS _dirs)
      # Generator expressions are evaluated later; only literal paths are checked.
      if(_dir MATCHES "^\\$<" OR EXISTS "${_dir}")
        list(APPEND _kept "${_dir}")
      else()
        list(APPEND _dropped "${_dir}")
      endif()
    endforeach()
    if(_dropped)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
      message(STATUS "latentvla_ros: dropped non-existent include dirs of ${_target}: ${_dropped}")
    endif()
  endforeach()
endfunction()
