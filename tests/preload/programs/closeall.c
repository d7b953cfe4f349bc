/* Close every descriptor 0..1023, then reuse descriptor numbers and exec.
 *   closeall OUTFILE        fork; the child closes 0..1023, opens OUTFILE (gets fd 0),
 *                           writes to it, execs `closeall --count OUTFILE`; the parent
 *                           prints what the file holds and the child's status.
 *   closeall --count FILE   count open descriptors (stdin is FILE), append them to FILE
 *                           through fd 0 and exit(0): anything the library wrote to a
 *                           descriptor it kept would land in FILE too. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "--count") == 0) {
        char line[128];
        int n = snprintf(line, sizeof line, "exec'd: %d descriptors open\n", count_fds());
        if (write(0, line, n) != n) return 3;
        /* close and reopen again: the number must be reused, nothing else writes into it */
        close(0);
        int fd = open(argv[2], O_WRONLY | O_APPEND);
        n = snprintf(line, sizeof line, "reopened as fd %d\n", fd);
        if (write(fd, line, n) != n) return 4;
        return 0;
    }
    if (argc < 2) return 2;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        for (int fd = 0; fd < 1024; fd++) close(fd);
        int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
        char line[64];
        int n = snprintf(line, sizeof line, "child opened fd %d\n", fd);
        if (write(fd, line, n) != n) _exit(5);
        execl("/proc/self/exe", argv[0], "--count", argv[1], (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("child status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    FILE *f = fopen(argv[1], "r");
    if (!f) { printf("no output file\n"); return 1; }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    fwrite(buf, 1, n, stdout);
    return 0;
}
