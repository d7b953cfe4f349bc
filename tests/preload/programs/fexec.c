/* fexecve(2) of this program's own file (opened through /proc/self/exe): the new image is
 * named only by a descriptor (AT_EXECFN is "/dev/fd/N"). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        printf("fexecve'd child runs\n");
        return 8;
    }
    int fd = open("/proc/self/exe", O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        char *args[] = {argv[0], "child", NULL};
        fexecve(fd, args, environ);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("child status %d\n", WEXITSTATUS(status));
    return 0;
}
