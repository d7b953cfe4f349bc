/* FILTER_REGEXPS: executables whose path matches one of these POSIX extended regexes are
 * not tracked. The list is ':'-separated; a ':' inside a bracket expression ("[[:alpha:]]")
 * does not separate. A regex that is a plain string, perhaps anchored ("^/opt/x/", "\.sh$"),
 * is matched here directly, with the same result as regexec; any other goes to regcomp,
 * which allocates (malloc's first use sets up its arena) and builds an automaton: so that
 * runs only when such a filter is compiled in (and the process is active), and everything is
 * freed again before main(). */
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

/* ERE characters that are not themselves: a regex holding one of them unescaped (other than a
 * leading '^' or a trailing '$') is not a plain string */
static int special(char c)
{
    return c && strchr(".[]()*+?{}|^$\\", c) != NULL;
}

static int same(const char *a, const char *b, size_t n)
{
    while (n && *a == *b)
        n--, a++, b++;
    return n == 0;
}

/* A plain-string regex matched against s without the regex engine: 1 match, 0 none, -1 not a
 * plain string (then regcomp decides, and regex is unchanged). A plain string: characters
 * that are not special and special ones escaped with a backslash, optionally after '^' (at
 * the start) and before '$' (at the end); without REG_NEWLINE '^' and '$' match only at the
 * ends of s, so this is regexec's answer (the constructor runs in the "C" locale: bytes
 * compare as bytes). regex is overwritten with the string it stands for. */
int ogrt_filter_plain(char *regex, const char *s)
{
    int head = regex[0] == '^', tail = 0;
    for (const char *p = regex + head; *p; p++) {
        if (*p == '\\' && special(p[1]))
            p++;
        else if (*p == '$' && !p[1])
            tail = 1;
        else if (*p == '\\' || special(*p))
            return -1; /* a backslash before anything else is regcomp's too */
    }
    size_t n = 0; /* the string, unescaped in place */
    for (const char *p = regex + head; *p && !(tail && !p[1]); p++)
        regex[n++] = *p == '\\' ? *++p : *p;
    size_t len = strlen(s);
    if (len < n)
        return 0;
    if (head && tail)
        return len == n && same(s, regex, n);
    if (head)
        return same(s, regex, n);
    if (tail)
        return same(s + len - n, regex, n);
    for (size_t i = 0; i + n <= len; i++)
        if (same(s + i, regex, n))
            return 1;
    return 0;
}

int ogrt_filtered(const char *exe)
{
    char pattern[OGRT_REGEX_MAX];
    const char *p = filters;
    if (!filters[0] || !exe)
        return 0;
    while (next_regex(&p, pattern, sizeof pattern)) {
        int hit = ogrt_filter_plain(pattern, exe);
        if (hit < 0) {
            regex_t re;
            if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0) {
                ogrt_log("filter '%s' is not a valid extended regex", pattern);
                continue;
            }
            hit = regexec(&re, exe, 0, NULL, 0) == 0;
            regfree(&re);
        }
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
