/* vfork: one child execs this program again, another just _exits. */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        printf("exec'd child says hello\n");
        return 5;
    }
    fflush(stdout);
    pid_t pid = vfork();
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "child", (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("vfork+exec child: %d\n", WEXITSTATUS(status));
    pid = vfork();
    if (pid == 0)
        _exit(9);
    waitpid(pid, &status, 0);
    printf("vfork+_exit child: %d\n", WEXITSTATUS(status));
    return 0;
}
