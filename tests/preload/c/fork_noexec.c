/* Forks N children (argv[1], default 3) that exit(7) without exec, from several threads'
 * worth of work; the parent waits for them and exits 5. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void *spin(void *arg) { return arg; }
int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 3, bad = 0;
    pthread_t t;
    pthread_create(&t, NULL, spin, NULL);
    pthread_join(t, NULL);
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0)
            exit(7);
        int st;
        waitpid(pid, &st, 0);
        bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 7);
    }
    printf("children %d bad %d\n", n, bad);
    exit(5);
}
