/* A long-running parent forking 200 workers; each worker execs `workers --work I`, which
 * exits with I % 7. The parent keeps at most 16 running and checks every status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 200
#define PARALLEL 16

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "--work") == 0)
        return atoi(argv[2]) % 7;
    int n = argc > 1 ? atoi(argv[1]) : N;
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return 1;
    exe[len] = 0;
    int running = 0, started = 0, done = 0, bad = 0;
    long sum = 0;
    fflush(stdout);
    while (done < n) {
        while (started < n && running < PARALLEL) {
            pid_t pid = fork();
            if (pid < 0) { perror("fork"); return 2; }
            if (pid == 0) {
                char arg[16];
                snprintf(arg, sizeof arg, "%d", started);
                execl(exe, exe, "--work", arg, (char *)NULL);
                _exit(127);
            }
            started++;
            running++;
        }
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) { perror("wait"); return 3; }
        running--;
        done++;
        if (!WIFEXITED(status) || WEXITSTATUS(status) > 6) bad++;
        else sum += WEXITSTATUS(status);
    }
    printf("%d workers, %d bad, exit codes sum %ld\n", n, bad, sum);
    return 0;
}
