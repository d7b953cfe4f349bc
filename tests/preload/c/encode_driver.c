/* Test driver: reads one record description from stdin, encodes it with preload/encode.c
 * and writes the protobuf payload to stdout (tests/preload/test_encode.py).
 * Input: 1 byte kind (1 start, 2 end), then items: 1 byte key, u32 LE length, data.
 * Integers are 8-byte LE two's complement; text items are NUL-free bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"

static unsigned char in[1 << 24];
static char *args[4096];
static struct ogrt_env env[1024];
static struct ogrt_lib libs[4096];

static int64_t i64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return (int64_t)v;
}

int main(void)
{
    size_t n = fread(in, 1, sizeof in - 1, stdin);
    if (n < 1)
        return 2;
    int kind = in[0];
    struct ogrt_start s;
    struct ogrt_end e;
    memset(&s, 0, sizeof s);
    memset(&e, 0, sizeof e);
    size_t nargs = 0, nenv = 0, nlibs = 0;
    int64_t ints[9] = {0};
    size_t pos = 1;
    while (pos + 5 <= n) {
        unsigned char key = in[pos];
        uint32_t len = (uint32_t)in[pos + 1] | (uint32_t)in[pos + 2] << 8 | (uint32_t)in[pos + 3] << 16 |
                       (uint32_t)in[pos + 4] << 24;
        unsigned char *d = in + pos + 5;
        if (pos + 5 + len + 1 > sizeof in || pos + 5 + len > n)
            return 3;
        /* NUL-terminate in place: shift the rest by one byte */
        memmove(d + len + 1, d + len, n - (pos + 5 + len));
        d[len] = 0;
        n++;
        pos += 5 + len + 1;
        char *t = (char *)d;
        switch (key) {
        case 'u': memcpy(s.uuid, d, 16); memcpy(e.uuid, d, 16); break;
        case 't': s.time_us = e.time_us = i64(d); break;
        case 'T': e.start_time_us = i64(d); break;
        case 'e': s.exe = t; break;
        case 'p': s.pid = e.pid = (int32_t)i64(d); break;
        case 'P': s.ppid = (int32_t)i64(d); break;
        case 'U': s.uid = e.uid = (uint32_t)i64(d); break;
        case 'G': s.gid = (uint32_t)i64(d); break;
        case 's': s.user = t; break;
        case 'h': s.hostname = e.hostname = t; break;
        case 'j': s.job_id = e.job_id = t; break;
        case 'a': args[nargs++] = t; break;
        case 'c': s.cwd = t; break;
        case 'n': env[nenv].name = t; break;
        case 'v': env[nenv++].value = t; break;
        case 'm': s.modules = t; break;
        case 'r': s.has_rank = 1; s.rank = (int32_t)i64(d); break;
        case 'X': e.has_exit = 1; e.exit_status = (int32_t)i64(d); break;
        case 'l': libs[nlibs].path = t; libs[nlibs++].sig = NULL; break;
        case 'g': libs[nlibs - 1].sig = len ? t : NULL; break;
        case 'S': s.signature = t; break;
        case 'i': s.step_id = t; break;
        default:
            if (key >= '0' && key <= '8') {
                ints[key - '0'] = i64(d);
                break;
            }
            return 4;
        }
    }
    args[nargs] = NULL;
    s.argc = (int)nargs;
    s.argv = args;
    s.env = env;
    s.n_env = nenv;
    s.libs = e.libs = libs;
    s.n_libs = e.n_libs = nlibs;
    e.utime_us = ints[0]; e.stime_us = ints[1]; e.maxrss_kb = ints[2]; e.minflt = ints[3];
    e.majflt = ints[4]; e.inblock = ints[5]; e.oublock = ints[6]; e.nvcsw = ints[7]; e.nivcsw = ints[8];
    size_t size = kind == 1 ? ogrt_encode_start(NULL, &s) : ogrt_encode_end(NULL, &e);
    uint8_t *out = malloc(size + 1);
    size_t written = kind == 1 ? ogrt_encode_start(out, &s) : ogrt_encode_end(out, &e);
    if (written != size)
        return 5;
    fwrite(out, 1, size, stdout);
    return 0;
}
