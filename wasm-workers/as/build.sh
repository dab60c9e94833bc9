#!/bin/sh
# Builds the AssemblyScript guests (echo/, chat/ over sdk/) into DIR (default ../dist) as
# echo_as.wasm and chat_as.wasm, with the compiler pinned in package-lock.json
# (`npm ci` installs it into node_modules/). The same sources and compiler give the same
# bytes.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out="$(cd "${1:-$here/../dist}" && pwd)"
cd "$here"
for name in echo chat; do
    node node_modules/assemblyscript/bin/asc.js "$name/index.ts" \
        -O3 --runtime incremental --use abort=sdk/exports/gwAbort \
        -o "$out/${name}_as.wasm"
done
