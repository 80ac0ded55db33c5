#!/bin/sh
# layering.sh — the three layers stay apart. Run by ctest as test_layering.
#
#   layering.sh SOURCE_DIR FUNNELCTL FUNNEL_WEBHOOK FUNNEL_ALERT
#
# 1. The adapters link only the libraries they use: funnelctl needs neither the loop (libuv),
#    nor time zones (ICU), nor an HTTP server (libmicrohttpd), nor systemd; the webhook and
#    alert adapters serve metrics over HTTP and tell systemd they are ready (sd_notify), but
#    need neither the loop nor time zones. Read from the ELF
#    NEEDED entries, which is what the dynamic loader will map.
# 2. The core includes no engine header: engines reach the core through daemon/core/engine.h
#    and the registry (daemon/engines/registry.c) is the one file that knows them all.
set -u
src=$1
status=0

needs_none() { # binary pattern what
    found=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -E "$2")
    if [ -n "$found" ]; then
        echo "FAIL: $(basename "$1") links $(echo $found) ($3)"
        status=1
    else
        echo "ok: $(basename "$1") links no $3"
    fi
}

needs_none "$2" '^lib(uv|icu[a-z]*|microhttpd|systemd)\.' "libuv, ICU, libmicrohttpd or libsystemd"
needs_none "$3" '^lib(uv|icu[a-z]*)\.' "libuv or ICU"
needs_none "$4" '^lib(uv|icu[a-z]*)\.' "libuv or ICU"

engine_headers=$(cd "$src/daemon/engines" && find . -name '*.h' ! -name registry.h -exec basename {} \;)
for h in $engine_headers; do
    hits=$(grep -ln "^#include \"$h\"" "$src"/daemon/core/*.[ch] 2>/dev/null)
    if [ -n "$hits" ]; then
        echo "FAIL: the core includes engine header $h: $(echo $hits)"
        status=1
    fi
done
[ $status -eq 0 ] && echo "ok: the core includes no engine header"
exit $status
