/* Redis/nginx/PostgreSQL-style process title: move environ to the heap, then overwrite the
 * contiguous argv+environ strings area with a new title. /proc/self/cmdline shows it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv) {
    char *start = argv[0], *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    int n = 0;
    for (char **e = environ; *e; e++) {
        if (*e == end) end = *e + strlen(*e) + 1;
        n++;
    }
    char **copy = malloc((size_t)(n + 1) * sizeof *copy);
    for (int i = 0; i < n; i++) copy[i] = strdup(environ[i]);
    copy[n] = NULL;
    environ = copy;
    memset(start, 0, (size_t)(end - start));
    snprintf(start, (size_t)(end - start), "proctitle: worker of a test");
    argv[1] = NULL;
    FILE *f = fopen("/proc/self/cmdline", "r");
    char buf[256] = {0};
    size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    printf("cmdline now: %.*s (%zu bytes)\n", (int)strnlen(buf, got), buf, got > 0 ? strlen(buf) : 0);
    printf("PATH still readable: %s\n", getenv("PATH") ? "yes" : "no");
    exit(0);
}
