/* Prints a line and ends with exit(atoi(argv[1])). */
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
    printf("exit_status %d args\n", argc);
    exit(argc > 1 ? atoi(argv[1]) : 0);
}
