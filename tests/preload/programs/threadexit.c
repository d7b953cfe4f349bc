/* Process ends while several threads run: `threadexit exit` calls exit(6) from a worker
 * thread while others spin; `threadexit main` returns from main with threads still busy;
 * `threadexit pthread_exit` ends main with pthread_exit and lets the last worker exit(0);
 * `threadexit small_stack` calls exit(6) from a thread with the smallest stack allowed
 * (PTHREAD_STACK_MIN): exit handlers run on that stack. */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile int spin = 1;
static const char *mode;

static void *worker(void *arg) {
    long id = (long)arg;
    if (id == 0) {
        usleep(20000);
        if (!strcmp(mode, "exit")) { printf("worker calls exit\n"); exit(6); }
    }
    while (spin) {
        void *p = malloc(64);
        free(p);
    }
    return NULL;
}

static void *exit_six(void *arg) {
    (void)arg;
    printf("small-stack thread calls exit\n");
    exit(6);
}

int main(int argc, char **argv) {
    mode = argc > 1 ? argv[1] : "main";
    if (!strcmp(mode, "small_stack")) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, PTHREAD_STACK_MIN);
        pthread_t t;
        if (pthread_create(&t, &attr, exit_six, NULL) != 0) return 90;
        for (;;) pause();
    }
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    if (!strcmp(mode, "exit")) { for (;;) pause(); }
    usleep(30000);
    if (!strcmp(mode, "pthread_exit")) {
        printf("main thread leaves\n");
        fflush(stdout);
        pthread_t last;
        pthread_create(&last, NULL, (void *(*)(void *))exit, NULL);
        pthread_exit(NULL);
    }
    printf("main returns with threads running\n");
    return 2;
}
