/* What a program sees of its process at main(): everything printed here must be the same
 * with and without the library (LD_PRELOAD itself is left out of the environment dump).
 * Like Redis, it also looks at its environment from a constructor, before main(). */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fenv.h>
#include <locale.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

extern char **environ;
static int errno_at_ctor;
static char **environ_at_ctor;
static const char *home_at_ctor;

__attribute__((constructor)) static void early(void) {
    errno_at_ctor = errno;
    environ_at_ctor = environ;
    home_at_ctor = getenv("HOME");
}

int main(int argc, char **argv, char **envp) {
    int errno_at_main = errno;
    const char *dlerr = dlerror();
    int fpexcept = fetestexcept(FE_ALL_EXCEPT);
    int fpround = fegetround();
    size_t outbuf = __fbufsize(stdout), errbuf = __fbufsize(stderr), inbuf = __fbufsize(stdin);
    struct mallinfo2 mi = mallinfo2();
    unsigned prev_alarm = alarm(0);
    mode_t mask = umask(022);
    umask(mask);

    printf("argc %d argv0 set %d\n", argc, argv[0] != NULL);
    printf("errno at ctor %d, at main %d\n", errno_at_ctor, errno_at_main);
    printf("dlerror at main: %s\n", dlerr ? dlerr : "(none)");
    printf("fp exceptions 0x%x rounding %d\n", fpexcept, fpround);
    printf("stdio buffers allocated before first use: in %zu out %zu err %zu\n", inbuf, outbuf, errbuf);
    printf("heap in use at main: %zu bytes in %zu mmapped chunks + %zu\n", mi.hblkhd, mi.hblks, mi.uordblks);
    printf("alarm pending %u, umask %03o\n", prev_alarm, (unsigned)mask);
    printf("environ == envp: %d, environ same as in constructor: %d, HOME from ctor %s\n",
           environ == envp, environ == environ_at_ctor, home_at_ctor ? "set" : "unset");
    printf("locale %s\n", setlocale(LC_ALL, NULL));

    /* descriptors */
    DIR *d = opendir("/proc/self/fd");
    int dfd = d ? dirfd(d) : -1;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dfd) continue;
        char path[300], target[4096];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        /* pipes and sockets differ per run by inode: keep only the kind */
        char *br = strchr(target, '[');
        if (br) *br = 0;
        printf("fd %s -> %s\n", e->d_name, target);
    }
    if (d) closedir(d);

    /* signals */
    sigset_t blocked;
    sigprocmask(SIG_BLOCK, NULL, &blocked);
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP || (s > 31 && s < SIGRTMIN)) continue;
        struct sigaction sa;
        if (sigaction(s, NULL, &sa) != 0) continue;
        const char *h = sa.sa_handler == SIG_DFL ? "dfl" : sa.sa_handler == SIG_IGN ? "ign" : "HANDLER";
        if (sa.sa_handler != SIG_DFL || sigismember(&blocked, s))
            printf("signal %d: %s flags 0x%x blocked %d\n", s, h, (unsigned)sa.sa_flags, sigismember(&blocked, s));
    }
    stack_t ss;
    sigaltstack(NULL, &ss);
    printf("sigaltstack flags %d\n", ss.ss_flags);
    struct itimerval it;
    getitimer(ITIMER_REAL, &it);
    printf("itimer real %ld.%06ld\n", (long)it.it_value.tv_sec, (long)it.it_value.tv_usec);

    /* process attributes */
    char comm[17] = {0};
    prctl(PR_GET_NAME, comm);
    printf("comm %s dumpable %d no_new_privs %d subreaper ", comm, prctl(PR_GET_DUMPABLE),
           prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    int sub = -1;
    prctl(PR_GET_CHILD_SUBREAPER, &sub);
    printf("%d\n", sub);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    printf("nofile %llu/%llu", (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
    getrlimit(RLIMIT_CORE, &rl);
    printf(" core %llu\n", (unsigned long long)rl.rlim_cur);
    errno = 0;
    printf("nice %d pgrp==pid %d\n", getpriority(PRIO_PROCESS, 0), getpgrp() == getpid());

    FILE *st = fopen("/proc/self/status", "r");
    char line[512];
    while (st && fgets(line, sizeof line, st))
        if (!strncmp(line, "Threads:", 8) || !strncmp(line, "NoNewPrivs:", 11) ||
            !strncmp(line, "SigBlk:", 7) || !strncmp(line, "SigIgn:", 7) || !strncmp(line, "SigCgt:", 7))
            fputs(line, stdout);
    if (st) fclose(st);

    int n = 0;
    for (char **v = environ; *v; v++) {
        if (!strncmp(*v, "LD_PRELOAD=", 11)) continue;
        printf("env %s\n", *v);
        n++;
    }
    printf("%d variables besides LD_PRELOAD\n", n);
    fflush(stdout);
    fprintf(stderr, "stderr still works\n");
    return 0;
}
