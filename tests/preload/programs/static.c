/* Linked statically (gcc -static): the loader never runs, LD_PRELOAD does not apply and
 * nothing - no error message either - may change. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    printf("static program, %d args, first %s\n", argc, argc > 1 ? argv[1] : "-");
    fprintf(stderr, "static stderr\n");
    return 3;
}
