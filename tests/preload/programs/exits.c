/* Ways to end: exits MODE with MODE one of exit _exit abort sigkill segv exec return
 * pthread_exit quick_exit fds_exhausted (every descriptor in use, then exit(5))
 * environ_null (environ = NULL, then exit(2)). Output is left in the stdio buffer on purpose. */
#include <pthread.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

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
    if (!strcmp(mode, "fds_exhausted")) {
        struct rlimit rl = {64, 64};
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return 98;
        int n = 0;
        while (dup(0) >= 0) n++;
        printf(" - %d more descriptors fit", n);
        exit(5);
    }
    if (!strcmp(mode, "environ_null")) {
        environ = NULL;
        exit(2);
    }
    return 99;
}
