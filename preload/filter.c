/* FILTER_REGEXPS: executables whose path matches one of these POSIX extended regexes are
 * not tracked. The list is ':'-separated; a ':' inside a bracket expression ("[[:alpha:]]")
 * does not separate. regcomp allocates, so this runs only when a filter is compiled in
 * (and the process is active), and everything is freed again before main(). */
#include <regex.h>
#include <string.h>

#include "ogrt.h"

/* Length of the regex starting at p, up to the next separating ':' or the end. */
static size_t regex_len(const char *p)
{
    size_t i = 0;
    while (p[i] && p[i] != ':') {
        if (p[i] == '\\' && p[i + 1]) {
            i += 2;
            continue;
        }
        if (p[i] == '[') { /* bracket expression: ']' right after '[' or '[^' is literal */
            i++;
            if (p[i] == '^')
                i++;
            if (p[i] == ']')
                i++;
            while (p[i] && p[i] != ']') {
                if (p[i] == '[' && (p[i + 1] == ':' || p[i + 1] == '.' || p[i + 1] == '=')) {
                    char kind = p[i + 1];
                    const char *close = p + i + 2;
                    while (*close && !(close[0] == kind && close[1] == ']'))
                        close++;
                    if (!*close)
                        return strlen(p);
                    i = (size_t)(close - p) + 2;
                    continue;
                }
                i++;
            }
            if (p[i])
                i++;
            continue;
        }
        i++;
    }
    return i;
}

static const char filters[] = OGRT_CFG_FILTER_REGEXPS;

/* Copies the next regex of the list at *p into pattern (NUL-terminated); 0 at the end. */
static int next_regex(const char **p, char *pattern, size_t size)
{
    while (**p) {
        size_t n = regex_len(*p);
        const char *start = *p;
        *p += n;
        if (**p == ':')
            (*p)++;
        if (n == 0)
            continue; /* empty entry ("a::b") */
        if (n >= size)
            n = size - 1; /* too long to be real: truncated, and then most likely invalid */
        memcpy(pattern, start, n);
        pattern[n] = 0;
        return 1;
    }
    return 0;
}

int ogrt_filtered(const char *exe)
{
    char pattern[OGRT_REGEX_MAX];
    const char *p = filters;
    if (!filters[0] || !exe)
        return 0;
    while (next_regex(&p, pattern, sizeof pattern)) {
        regex_t re;
        if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0) {
            ogrt_log("filter '%s' is not a valid extended regex", pattern);
            continue;
        }
        int hit = regexec(&re, exe, 0, NULL, 0) == 0;
        regfree(&re);
        if (hit) {
            ogrt_log("not tracked: %s matches filter '%s'", exe, pattern);
            return 1;
        }
    }
    return 0;
}

int ogrt_filter_invalid(char *pattern, size_t size)
{
    const char *p = filters;
    while (next_regex(&p, pattern, size)) {
        regex_t re;
        if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
            return 1;
        regfree(&re);
    }
    return 0;
}
