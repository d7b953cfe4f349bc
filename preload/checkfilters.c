/* Build-time check (run by the Makefile): every FILTER_REGEXPS entry must compile as a
 * POSIX extended regex, with the splitting rules the library uses at run time. */
#include <stdio.h>

#include "ogrt.h"

int main(void)
{
    static char bad[OGRT_REGEX_MAX];
    if (ogrt_filter_invalid(bad, sizeof bad)) {
        fprintf(stderr, "preload/Makefile: bad FILTER_REGEXPS: '%s' is not a POSIX extended regex\n", bad);
        return 1;
    }
    return 0;
}
