/* Prints its arguments and a few facts that must not change; exits with argc. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) printf("arg %d: %s\n", i, argv[i]);
    printf("getpid works: %s\n", getpid() > 0 ? "yes" : "no");
    fprintf(stderr, "to stderr\n");
    return argc;
}
