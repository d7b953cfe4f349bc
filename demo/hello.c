/* A small compiled program for the demo: linked with ogrt-cc, so it carries an OGRT stamp. */
#include <stdio.h>

int main(int argc, char **argv)
{
    unsigned long sum = 0;
    for (unsigned long i = 1; i <= 1000000; i++)
        sum += i % 7;
    printf("hello from a stamped program (%s): checksum %lu\n", argc > 0 ? argv[0] : "?", sum);
    return 0;
}
