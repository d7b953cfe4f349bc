/* For test_build.py: for each (regex, string) pair of the arguments prints "<plain> <regexec>":
 * preload/filter.c's ogrt_filter_plain answer (1 match, 0 none, -1 not a plain string) and
 * regexec's (1 match, 0 none; -2: regcomp refused the regex), with the library's flags. */
#include <regex.h>
#include <stdio.h>

#include "ogrt.h"

void ogrt_log(const char *fmt, ...) /* filter.c's logging: not what is tested here */
{
    (void)fmt;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        char copy[OGRT_REGEX_MAX];
        snprintf(copy, sizeof copy, "%s", argv[i]);
        int plain = ogrt_filter_plain(copy, argv[i + 1]), rx = -2;
        regex_t re;
        if (regcomp(&re, argv[i], REG_EXTENDED | REG_NOSUB) == 0) {
            rx = regexec(&re, argv[i + 1], 0, NULL, 0) == 0;
            regfree(&re);
        }
        printf("%d %d\n", plain, rx);
    }
    return 0;
}
