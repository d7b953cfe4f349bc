/* posix_spawn and posix_spawnp, with file actions that redirect the child's stdout. */
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        printf("spawned child %s\n", argc > 2 ? argv[2] : "");
        return 6;
    }
    fflush(stdout);
    pid_t pid;
    int status;
    char *cargv[] = {argv[0], "child", "plain", NULL};
    int rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, cargv, environ);
    if (rc != 0) { printf("posix_spawn: %s\n", strerror(rc)); return 1; }
    waitpid(pid, &status, 0);
    printf("posix_spawn child: %d\n", WEXITSTATUS(status));

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);   /* child's stdout goes to our stderr */
    char *cargv2[] = {argv[0], "child", "to-stderr", NULL};
    rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, cargv2, environ);
    if (rc != 0) { printf("posix_spawn: %s\n", strerror(rc)); return 1; }
    waitpid(pid, &status, 0);
    posix_spawn_file_actions_destroy(&fa);
    printf("posix_spawn child with file actions: %d\n", WEXITSTATUS(status));

    char *targv[] = {"sh", "-c", "exit 4", NULL};
    rc = posix_spawnp(&pid, "sh", NULL, NULL, targv, environ);
    if (rc != 0) { printf("posix_spawnp: %s\n", strerror(rc)); return 1; }
    waitpid(pid, &status, 0);
    printf("posix_spawnp sh: %d\n", WEXITSTATUS(status));
    return 0;
}
