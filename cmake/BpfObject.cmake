# Compiles one BPF C program with clang -target bpf and generates its libbpf skeleton with bpftool.
#   portcullis_bpf_object(NAME portcullis_xdp SOURCE portcullis_xdp.bpf.c)
# creates the interface target bpf_<NAME> whose include directory holds <NAME>.skel.h.
find_program(BPF_CLANG NAMES clang clang-14 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

set(BPF_SKEL_DIR "${CMAKE_BINARY_DIR}/bpf-skel")
file(MAKE_DIRECTORY "${BPF_SKEL_DIR}")
execute_process(COMMAND uname -m OUTPUT_VARIABLE BPF_HOST_ARCH OUTPUT_STRIP_TRAILING_WHITESPACE)
if(BPF_HOST_ARCH STREQUAL "x86_64")
  set(BPF_TARGET_ARCH x86)
elseif(BPF_HOST_ARCH STREQUAL "aarch64")
  set(BPF_TARGET_ARCH arm64)
else()
  set(BPF_TARGET_ARCH ${BPF_HOST_ARCH})
endif()

function(portcullis_bpf_object)
  cmake_parse_arguments(ARG "" "NAME;SOURCE" "DEPENDS" ${ARGN})
  set(src "${CMAKE_CURRENT_SOURCE_DIR}/${ARG_SOURCE}")
  set(obj "${BPF_SKEL_DIR}/${ARG_NAME}.bpf.o")
  set(skel "${BPF_SKEL_DIR}/${ARG_NAME}.skel.h")
  add_custom_command(
    OUTPUT "${obj}"
    COMMAND "${BPF_CLANG}" -target bpf -O2 -g -Wall -Wextra -Werror
            -D__TARGET_ARCH_${BPF_TARGET_ARCH}
            -I "${CMAKE_SOURCE_DIR}/include"
            -I "/usr/include/${CMAKE_LIBRARY_ARCHITECTURE}"
            -MD -MF "${obj}.d"
            -c "${src}" -o "${obj}"
    DEPENDS "${src}" ${ARG_DEPENDS}
    DEPFILE "${obj}.d"
    COMMENT "BPF ${ARG_SOURCE}"
    VERBATIM)
  add_custom_command(
    OUTPUT "${skel}"
    COMMAND "${BPFTOOL}" gen skeleton "${obj}" name "${ARG_NAME}" > "${skel}"
    DEPENDS "${obj}"
    COMMENT "BPF skeleton ${ARG_NAME}.skel.h"
    VERBATIM)
  add_custom_target(${ARG_NAME}_skel DEPENDS "${skel}")
  add_library(bpf_${ARG_NAME} INTERFACE)
  add_dependencies(bpf_${ARG_NAME} ${ARG_NAME}_skel)
  target_include_directories(bpf_${ARG_NAME} INTERFACE "${BPF_SKEL_DIR}")
  target_link_libraries(bpf_${ARG_NAME} INTERFACE PkgConfig::LIBBPF)
endfunction()
