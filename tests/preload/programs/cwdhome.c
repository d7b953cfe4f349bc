/* Reports HOME and what getcwd() says (run with HOME unset, in an unreadable or deleted cwd). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    const char *home = getenv("HOME");
    printf("HOME %s\n", home ? home : "(unset)");
    char buf[4096];
    errno = 0;
    if (getcwd(buf, sizeof buf)) printf("cwd %s\n", buf);
    else printf("getcwd failed: %s\n", strerror(errno));
    printf("opendir(.) %s\n", access(".", R_OK) == 0 ? "readable" : strerror(errno));
    return 0;
}
