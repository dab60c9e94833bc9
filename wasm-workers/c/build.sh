#!/bin/sh
# Builds the C guests (echo.c, chat.c over gw.h) into DIR (default ../dist) as
# echo_c.wasm and chat_c.wasm, with Debian's clang and lld (`apt-get install clang lld`).
# No libc, no debug info, stripped: the same sources and clang version give the same bytes.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out="$(cd "${1:-$here/../dist}" && pwd)"
cd "$here"
for name in echo chat; do
    "${CC:-clang}" --target=wasm32 -mbulk-memory -O2 -std=c11 -nostdlib -ffreestanding \
        -Wall -Wextra -Werror -Wno-unused-function \
        -Wl,--no-entry -Wl,--strip-all \
        -o "$out/${name}_c.wasm" "$name.c"
done
