/* fork/exec chain: `forkexec N` forks a child that execs `forkexec N-1`; each level waits
 * and reports its child's status, so the output is deterministic. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int depth = argc > 1 ? atoi(argv[1]) : 3;
    if (depth <= 0) {
        printf("leaf pid-independent\n");
        return 11;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 100; }
    if (pid == 0) {
        char arg[16];
        snprintf(arg, sizeof arg, "%d", depth - 1);
        execl("/proc/self/exe", argv[0], arg, (char *)NULL);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) { perror("waitpid"); return 101; }
    printf("depth %d: child exit %d\n", depth, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return depth;
}
