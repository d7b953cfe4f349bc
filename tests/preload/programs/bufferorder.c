/* stdout is a pipe: buffered stdio and direct write(2) interleave in a fixed order, and a
 * fork with a non-empty buffer duplicates it in the child - the same with or without the
 * library. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    printf("1-buffered ");
    if (write(1, "2-direct\n", 9) != 9) return 1;
    printf("3-buffered\n");
    printf("4-pending-at-fork ");
    pid_t pid = fork();
    if (pid == 0) {
        printf("5-child\n");
        return 0;
    }
    int status;
    waitpid(pid, &status, 0);
    printf("6-parent after child %d\n", WEXITSTATUS(status));
    return 0;
}
