/* Another preloaded library (built twice, as libprea.so and libpreb.so, with -DTAG=...):
 * announces itself from its constructor and destructor and wraps getpid() like many
 * tracing tools do. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define STR2(x) #x
#define STR(x) STR2(x)

static void say(const char *what) {
    char line[128] = "[" STR(TAG) " ";
    strcat(line, what);
    strcat(line, "]\n");
    if (write(2, line, strlen(line)) < 0) return;
}

__attribute__((constructor)) static void up(void) { say("loaded"); }
__attribute__((destructor)) static void down(void) { say("unloaded"); }

pid_t getpid(void) {
    pid_t (*real)(void) = (pid_t (*)(void))dlsym(RTLD_NEXT, "getpid");
    return real ? real() : -1;
}
