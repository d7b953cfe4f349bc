#!/bin/sh
# Quick self-checks of a built libogrt.so (make check; the Spack recipe's --test=root):
# it links only libc/ld-linux/vdso, defines no dynamic symbol a program could clash with,
# and /bin/true runs under it printing its compiled-in settings.
set -eu
lib=$1
fail() { echo "check FAILED: $*" >&2; exit 1; }
[ -f "$lib" ] || fail "$lib does not exist"
deps=$(ldd "$lib" | awk '{print $1}' | grep -v -e '^linux-vdso' -e '^libc\.so' -e 'ld-linux' -e '^/lib.*/ld-' || true)
[ -z "$deps" ] || fail "ldd lists more than libc, ld-linux and the vdso: $deps"
syms=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^$' || true)
[ -z "$syms" ] || fail "nm -D --defined-only lists: $syms"
out=$(env -u OGRT_SILENT -u OGRT_SCHLEICHFAHRT OGRT_DEBUG_INFO=1 LD_PRELOAD="$lib" /bin/true 2>&1) \
  || fail "/bin/true under the library failed"
echo "$out" | grep -q '^OGRT server_host: ' || fail "OGRT_DEBUG_INFO printed no settings: $out"
quiet=$(env -u OGRT_DEBUG -u OGRT_DEBUG_INFO LD_PRELOAD="$lib" /bin/echo ok 2>&1)
[ "$quiet" = ok ] || fail "output of a program changed under the library: '$quiet'"
echo "$out"
echo "libogrt self-check passed: $lib"
