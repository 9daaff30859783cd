# Cross-compiling for aarch64 Linux (Grace) from an x86-64 Debian/Ubuntu machine with
#   gcc-aarch64-linux-gnu, qemu-user and the :arm64 dev packages (dpkg --add-architecture arm64);
# scripts/aarch64.sh installs them, builds with this file and runs the tests under qemu-aarch64.
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(SPILL_CROSS_TRIPLE aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${SPILL_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${SPILL_CROSS_TRIPLE}-g++)

# Debian's multiarch layout: arm64 libraries in /usr/lib/aarch64-linux-gnu, headers in /usr/include
# (shared with the host where they are architecture-independent).
set(CMAKE_FIND_ROOT_PATH /usr/${SPILL_CROSS_TRIPLE})
set(CMAKE_LIBRARY_ARCHITECTURE ${SPILL_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# pkg-config must report the arm64 .pc files, never the host's
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${SPILL_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# ctest runs every test program under qemu. -L / makes qemu take the arm64 loader from the multiarch
# libc6:arm64 (/lib/ld-linux-aarch64.so.1), the same build as the libc.so.6 it then loads from
# /lib/aarch64-linux-gnu. With -L /usr/aarch64-linux-gnu the loader came from libc6-arm64-cross
# (2.36-8cross1 on Debian 12) and libc from libc6:arm64 (2.36-9+deb12u14): the two disagree on the
# layout of the loader's globals, and the first pthread_create walked a broken stack-cache list
# forever (a two-line program that starts a thread hangs the same way). Programs the tests start
# themselves (spill-generate from test_cli, ...) run through binfmt_misc (scripts/aarch64.sh).
find_program(SPILL_QEMU_AARCH64 qemu-aarch64)
if(SPILL_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${SPILL_QEMU_AARCH64} -L /)
endif()

# -march=native means nothing for another machine: the build targets the baseline armv8-a
# (NEON is part of it)
set(SPILL_NATIVE OFF CACHE BOOL "" FORCE)
