/* Ways to end: exits MODE with MODE one of exit _exit abort sigkill segv exec return
 * pthread_exit quick_exit. Output is left in the stdio buffer on purpose. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "return";
    printf("buffered line for %s", mode);
    if (!strcmp(mode, "exit")) exit(3);
    if (!strcmp(mode, "_exit")) _exit(7);
    if (!strcmp(mode, "abort")) abort();
    if (!strcmp(mode, "sigkill")) raise(SIGKILL);
    if (!strcmp(mode, "segv")) { volatile int *p = NULL; *p = 1; }
    if (!strcmp(mode, "exec")) {
        fflush(stdout);
        execl("/bin/sh", "sh", "-c", "echo replaced; exit 12", (char *)NULL);
        return 127;
    }
    if (!strcmp(mode, "pthread_exit")) pthread_exit(NULL);
    if (!strcmp(mode, "quick_exit")) quick_exit(8);
    if (!strcmp(mode, "return")) return 4;
    return 99;
}
