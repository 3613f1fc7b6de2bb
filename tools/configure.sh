# Sourced by tools/test.sh, fuzz.sh and tsan.sh. configure DIR [cmake options...] configures
# build folder DIR with Ninja where there is one and the folder is new: Make builds the
# targets a script names one after another (CMake's top-level Makefile is .NOTPARALLEL),
# Ninja builds them side by side.
configure() {
  local dir=$1
  shift
  if [ ! -f "$dir/CMakeCache.txt" ] && command -v ninja >/dev/null; then
    cmake -G Ninja -S . -B "$dir" "$@"
  else
    cmake -S . -B "$dir" "$@"
  fi
}
