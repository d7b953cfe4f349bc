/* C library string functions that the library calls, defined here: like every symbol of the
 * library they are hidden, so its calls bind to them when it is linked, and the loader, which
 * binds each import at start (-z now), has 8 fewer to look up in every process (about 650
 * instructions apiece, counted with callgrind). Plain loops: the strings are short. memcpy and
 * strlen, which see whole records, and getenv, which walks the environment, stay libc's: there
 * a byte loop costs more than the lookup it saves. Built by GCC only, with -fno-builtin
 * -fno-tree-loop-distribute-patterns (Makefile) so that no loop here becomes a call to itself;
 * another compiler leaves this file empty and libc's are used. */
#if defined(__GNUC__) && !defined(__clang__)
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if ((uintptr_t)d - (uintptr_t)s >= n) /* d before s, or past its end: forwards is safe */
        while (n--)
            *d++ = *s++;
    else
        while (n--)
            d[n] = s[n];
    return dst;
}

void *memchr(const void *p, int c, size_t n)
{
    for (const unsigned char *s = p; n--; s++)
        if (*s == (unsigned char)c)
            return (void *)s;
    return NULL;
}

void *memrchr(const void *p, int c, size_t n)
{
    const unsigned char *s = p;
    while (n--)
        if (s[n] == (unsigned char)c)
            return (void *)(s + n);
    return NULL;
}

size_t strnlen(const char *s, size_t max)
{
    size_t n = 0;
    while (n < max && s[n])
        n++;
    return n;
}

char *strchrnul(const char *s, int c)
{
    while (*s && *s != (char)c)
        s++;
    return (char *)s;
}

char *strchr(const char *s, int c)
{
    s = strchrnul(s, c);
    return *s == (char)c ? (char *)s : NULL;
}

static int lower(unsigned char c) /* the "C" locale's, which is in force before main() */
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

int strcasecmp(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    while (*x && lower(*x) == lower(*y))
        x++, y++;
    return lower(*x) - lower(*y);
}

static int in(char c, const char *set)
{
    while (*set)
        if (*set++ == c)
            return 1;
    return 0;
}

char *strtok_r(char *s, const char *delim, char **save)
{
    if (!s)
        s = *save;
    while (*s && in(*s, delim))
        s++;
    if (!*s) {
        *save = s;
        return NULL;
    }
    char *token = s;
    while (*s && !in(*s, delim))
        s++;
    if (*s)
        *s++ = 0;
    *save = s;
    return token;
}

#endif
