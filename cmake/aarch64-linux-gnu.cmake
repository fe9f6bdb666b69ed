# Cross-compiling for 64-bit ARM Linux on a Debian x86-64 host (Debian 12 multiarch):
#   scripts/install-arm64-deps.sh
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# The compiler is g++-aarch64-linux-gnu, the libraries are the ":arm64" -dev packages in
# /usr/lib/aarch64-linux-gnu, and ctest runs the test binaries through qemu-aarch64 (qemu-user).
# BALLAST_QEMU_CPU picks the emulated CPU (default "max": NEON, SVE and SVE2 at 512-bit vectors);
# e.g. "max,sve-default-vector-length=16" runs SVE at 128 bits.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# Multiarch: arm64 libraries and their CMake packages live under /usr/lib/aarch64-linux-gnu,
# headers under /usr/include; host programs (python, pkg-config) come from the host.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)

set(BALLAST_QEMU_CPU "max" CACHE STRING "qemu-aarch64 -cpu value for running tests")
# No "-L /usr/aarch64-linux-gnu": the arm64 C library is installed by multiarch (libc6:arm64, pulled
# in by the -dev packages), and with that prefix qemu-aarch64 7.2 hangs in the first thread creation
# (std::thread or an OpenMP team).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-cpu;${BALLAST_QEMU_CPU})
