/* Threads that fork while other threads are busy (allocating, printing to a buffer):
 * children either exit() (running atexit/on_exit handlers in the forked copy), _exit(),
 * or exec this program again. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NTHREADS 6
#define NFORKS 5
static const char *self;
static volatile int stop;

static void *busy(void *arg) {
    (void)arg;
    while (!stop) {
        void *p = malloc(4096);
        free(p);
    }
    return NULL;
}

static void *forker(void *arg) {
    long id = (long)arg;
    long sum = 0;
    for (int i = 0; i < NFORKS; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            int code = (int)(id * 10 + i) % 50;
            switch ((id + i) % 3) {
            case 0: exit(code);
            case 1: _exit(code);
            default: {
                char arg[16];
                snprintf(arg, sizeof arg, "%d", code);
                execl(self, self, "child", arg, (char *)NULL);
                _exit(127);
            }
            }
        }
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid)
            return (void *)-1L;
        sum += WIFEXITED(status) ? WEXITSTATUS(status) : 1000;
    }
    return (void *)sum;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "child") == 0)
        return atoi(argv[2]);
    self = "/proc/self/exe";
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) { exe[n] = 0; self = exe; }
    pthread_t b[2], t[NTHREADS];
    for (int i = 0; i < 2; i++) pthread_create(&b[i], NULL, busy, NULL);
    for (long i = 0; i < NTHREADS; i++) pthread_create(&t[i], NULL, forker, (void *)i);
    long total = 0;
    void *r[NTHREADS];
    /* join every forker before printing: a child that exit()s would flush a copy of a
     * non-empty stdout buffer */
    for (int i = 0; i < NTHREADS; i++) pthread_join(t[i], &r[i]);
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(b[i], NULL);
    for (int i = 0; i < NTHREADS; i++) {
        printf("thread %d: children's exit codes sum to %ld\n", i, (long)r[i]);
        total += (long)r[i];
    }
    printf("total %ld\n", total);
    return 0;
}
