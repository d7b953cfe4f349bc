/* run_child PROG ARGS...: forks, execs PROG ARGS... in the child, waits, prints the child's
 * exit status and exits with it + 1 (a link of a process tree whose outputs are compared). */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 100;
    printf("run_child starts %s\n", argv[1]);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return 101;
    if (pid == 0) {
        execv(argv[1], argv + 1);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 102;
    printf("run_child: %s exited %d\n", argv[1], WEXITSTATUS(status));
    return WEXITSTATUS(status) + 1;
}
