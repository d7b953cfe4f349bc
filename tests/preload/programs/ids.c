/* Prints real and effective ids: installed setuid in the harm matrix (the loader runs it in
 * secure mode and ignores LD_PRELOAD entries with a slash, without a word). */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("ruid %d euid %d rgid %d egid %d\n", (int)getuid(), (int)geteuid(), (int)getgid(), (int)getegid());
    return 0;
}
