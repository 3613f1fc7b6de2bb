#!/usr/bin/env bash
# Installs every Debian 12 package the README, tools/test.sh and CI need: the build and
# its dependencies, both compilers, BLIS beside OpenBLAS, and the ARM64 cross toolchain
# with qemu and arm64 multiarch libraries (this adds the arm64 architecture to dpkg).
# Runs apt-get through sudo only when not root (a fresh Debian machine run as root has no
# sudo).
set -euo pipefail

packages=(
  # build, library dependencies, tests, benchmarks, examples
  cmake g++ make ninja-build libxtensor-dev libxsimd-dev xtl-dev libxtensor-blas-dev libopenblas-dev
  libgtest-dev googletest libbenchmark-dev nlohmann-json3-dev python3-numpy zlib1g-dev
  # the char_lm example's text
  bible-kjv bible-kjv-text
  # test_checkpoint's locale with a decimal comma (made by localedef from these sources)
  locales
  # the clang build and libFuzzer
  clang libclang-rt-14-dev
  # Muon on BLIS
  libblis-dev
  # distributed training (tests/dist, the examples' --data-parallel)
  libopenmpi-dev openmpi-bin
  # ARM64: cross compiler, user-mode emulator, arm64 libraries the tests link and the C++
  # runtime they load under qemu (nothing else brings libstdc++6:arm64 without recommends)
  g++-aarch64-linux-gnu qemu-user
  libgtest-dev:arm64 libopenblas-dev:arm64 libxsimd-dev:arm64 libstdc++6:arm64
)

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  "${sudo[@]}" dpkg --add-architecture arm64
fi
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
