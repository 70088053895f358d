# Cross-compiling lmpress for 64-bit ARM Linux on a Debian x86-64 host
# (g++-aarch64-linux-gnu, the arm64 -dev packages under multiarch, qemu-user):
#   cmake -S . -B build-aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# scripts/test-aarch64.sh installs all of it, builds and runs the tests under qemu.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# Debian's multiarch directories (/usr/lib/aarch64-linux-gnu, ...): the top
# CMakeLists.txt finds OpenBLAS's OpenMP build through it.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# Libraries and headers from the arm64 packages only; programs from the host.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
# ctest and gtest_discover_tests run the aarch64 binaries through qemu-user.
# No -L /usr/aarch64-linux-gnu: the libraries come from the arm64 multiarch
# packages, whose C library (libc6:arm64) must run with its own loader
# (/lib/ld-linux-aarch64.so.1); the cross sysroot's loader is another glibc
# build, and with that pair the first pthread_create never returns.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
