/* Started with stdin, stdout and stderr closed. Reports, into the file named by argv[1],
 * the state of descriptors 0..9 at main() and the numbers new open() calls get. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char state[10];
    for (int fd = 0; fd < 10; fd++)
        state[fd] = fcntl(fd, F_GETFD) == -1 ? '-' : 'o';
    int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int next = open("/dev/null", O_RDONLY);
    char line[256];
    int n = snprintf(line, sizeof line, "fds at main: %.10s\nout=%d next=%d\n", state, out, next);
    if (write(out, line, n) != n) return 3;
    /* stdio on a closed stdout: printf must fail the same way with and without the library */
    errno = 0;
    int r = printf("to closed stdout\n");
    int f = fflush(stdout);
    n = snprintf(line, sizeof line, "printf=%d fflush=%d\n", r, f);
    if (write(out, line, n) != n) return 4;
    return 0;
}
