/* Helpers shared by the other files: memory, text without stdio, hashing. */
#include "ogrt.h"
#include "sys.h"

void *ogrt_map(size_t size)
{
    return sys_mmap(size);
}

void ogrt_unmap(void *p, size_t size)
{
    if (p)
        sys_munmap(p, size);
}

char *ogrt_put_str(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

char *ogrt_put_uint(char *p, unsigned long n)
{
    char tmp[24];
    int k = 0;
    do
        tmp[k++] = (char)('0' + n % 10);
    while (n /= 10);
    while (k)
        *p++ = tmp[--k];
    return p;
}

char *ogrt_put_hex64(char *p, uint64_t v)
{
    for (int i = 15; i >= 0; i--)
        *p++ = "0123456789abcdef"[(v >> (i * 4)) & 15];
    return p;
}

uint64_t ogrt_fnv1a64(const char *s, uint64_t salt)
{
    uint64_t h = 1469598103934665603ull ^ salt;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return h;
}
