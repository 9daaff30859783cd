# The runtime reaches CUDA only through kernels/cuda and alloc/: no file under runtime/ includes a
# CUDA runtime, driver or cuBLAS header. (Where the toolkit's headers sit on the compiler's default
# path, as a toolkit symlinked into /usr/local/include does, the include path alone cannot refuse
# them; this scan does.) Run as: cmake -DROOT=<source dir> -P no_cuda_includes.cmake
file(GLOB_RECURSE files "${ROOT}/runtime/*.c" "${ROOT}/runtime/*.h")
set(bad "")
foreach(f IN LISTS files)
  file(STRINGS "${f}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"](cuda|cublas|cuda_runtime|driver_types|vector_types)[^>\"]*[>\"]")
  foreach(l IN LISTS lines)
    list(APPEND bad "${f}: ${l}")
  endforeach()
endforeach()
if(bad)
  list(JOIN bad "\n" msg)
  message(FATAL_ERROR "runtime/ includes CUDA headers directly (use kernels/cuda or alloc/):\n${msg}")
endif()
list(LENGTH files n)
message(STATUS "${n} files of runtime/ include no CUDA header")
