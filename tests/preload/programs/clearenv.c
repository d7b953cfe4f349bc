/* clearenv() then exec: the exec'd program prints its whole environment (must be empty). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        int n = 0;
        for (char **e = environ; *e; e++, n++) printf("env: %s\n", *e);
        printf("child sees %d variables\n", n);
        return 0;
    }
    if (clearenv() != 0) return 1;
    printf("after clearenv: environ %s\n", environ == NULL || *environ == NULL ? "empty" : "NOT empty");
    fflush(stdout);
    setenv("ONLY_THIS", "1", 1);
    execl("/proc/self/exe", argv[0], "child", (char *)NULL);
    return 127;
}
