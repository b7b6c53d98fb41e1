#!/usr/bin/env bash
# The project's own C++ must match .clang-format and pass .clang-tidy (warnings are errors).
#   lint.sh format SRC_DIR          clang-format check
#   lint.sh tidy SRC_DIR BUILD_DIR  clang-tidy over userspace/ and nft/ with the build's compile commands
set -euo pipefail
mode=$1 src=$2
cd "$src"
mapfile -t files < <(git ls-files 'userspace/*.cpp' 'userspace/*.h' 'nft/*.cpp' 'nft/*.h' 'test/*.cpp' 'test/*.h' 'bench/*.cpp' 'fuzz/*.cpp' 2>/dev/null ||
  find userspace nft test bench fuzz -name '*.cpp' -o -name '*.h')
case "$mode" in
  format)
    clang-format --dry-run -Werror "${files[@]}"
    echo "${#files[@]} files formatted"
    ;;
  tidy)
    mapfile -t sources < <(printf '%s\n' "${files[@]}" | grep -E '^(userspace|nft)/.*\.cpp$')
    clang-tidy --quiet -p "$3" "${sources[@]}"
    echo "${#sources[@]} files clean"
    ;;
esac
