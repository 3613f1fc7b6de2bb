# ARM64 Linux, cross-compiled on an x86-64 Debian machine with g++-aarch64-linux-gnu and
# arm64 multiarch packages (dpkg --add-architecture arm64; libgtest-dev:arm64,
# libopenblas-dev:arm64, libxsimd-dev:arm64: tools/install-deps.sh installs them), and run
# under qemu-aarch64 in user mode: ctest and gtest_discover_tests start every test program
# through CMAKE_CROSSCOMPILING_EMULATOR.
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# Multiarch: arm64 libraries and package configs under /usr/lib/aarch64-linux-gnu, found
# through the architecture; the shared headers of /usr/include serve both.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# The arm64 loader (/lib/ld-linux-aarch64.so.1, from libc6:arm64) finds the multiarch
# libraries itself, so qemu needs no -L prefix.
find_program(XOPTIM_QEMU_AARCH64 qemu-aarch64 REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${XOPTIM_QEMU_AARCH64})
