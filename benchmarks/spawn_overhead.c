/* Spawn-overhead driver for benchmarks/spawn_overhead.py.
 *   spawn_overhead N PROGRAM LD_PRELOAD_VALUE [NAME=VALUE ...]
 * posix_spawn()s PROGRAM N times without and N times with the library, interleaved
 * (plain+preloaded, preloaded+plain, ...), each timed from spawn to reaped exit. Prints one line per
 * pair: "<plain ns> <preloaded ns>". The preloaded environment is this process's
 * environment plus LD_PRELOAD and the extra NAME=VALUE settings.
 *
 *   spawn_overhead --sink PORT
 * A minimal receiver on 127.0.0.1:PORT (TCP and UDP) that reads and discards everything:
 * it isolates the library's own cost from the daemon's (both share the CPUs here).
 *
 *   spawn_overhead --unix-sink PATH QLEN PAUSE_US
 * The same for the relay transport, reading as `ogrt relay` does (ogrt/relay/receive.py): a
 * process bound to the Unix datagram socket PATH, which queues QLEN datagrams (made in a
 * private network namespace set to QLEN when the host's net.unix.max_dgram_qlen is lower and
 * this process may; else the host's value), waits until it is readable, receives and discards
 * everything queued without blocking, then sleeps PAUSE_US (0: none) away from the socket.
 *
 *   spawn_overhead --multi N SEED SETTLE_US SINK_PID PROGRAM LIB... -- [NAME=VALUE ...]
 * N rounds, each spawning PROGRAM once under each LIB (LD_PRELOAD=LIB plus the settings;
 * "-": plainly), in an order shuffled every round (a random permutation drawn from SEED: no
 * build always follows the same one, whose receiver's leftover work it would carry), each
 * spawn preceded by an untimed pause of SETTLE_US for the receivers to finish. A LIB written
 * "pinned:LIB" is spawned with this process and its child on one CPU and process SINK_PID
 * (0: none) on another; the others with both free to use every CPU. Prints one line per
 * round: "<LIB1 ns> <LIB2 ns> ...". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long run(const char *prog, char **env)
{
    char *argv[] = {(char *)prog, NULL};
    pid_t pid;
    int status;
    long long t0 = now_ns();
    if (posix_spawn(&pid, prog, NULL, NULL, argv, env) != 0) {
        perror("posix_spawn");
        exit(2);
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child failed\n");
        exit(3);
    }
    return now_ns() - t0;
}

static int sink(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1, t = socket(AF_INET, SOCK_STREAM, 0), u = socket(AF_INET, SOCK_DGRAM, 0);
    setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(t, (void *)&a, sizeof a) || listen(t, 4096) || bind(u, (void *)&a, sizeof a)) {
        perror("sink bind");
        return 1;
    }
    printf("sink ready\n");
    fflush(stdout);
    static char buf[1 << 16];
    for (;;) {
        struct pollfd p[2] = {{t, POLLIN, 0}, {u, POLLIN, 0}};
        if (poll(p, 2, -1) < 0)
            continue;
        if (p[1].revents)
            recv(u, buf, sizeof buf, 0);
        if (p[0].revents) {
            int c = accept(t, NULL, NULL);
            if (c >= 0) {
                while (read(c, buf, sizeof buf) > 0)
                    ;
                close(c);
            }
        }
    }
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

#define QLEN "/proc/sys/net/unix/max_dgram_qlen"

static long read_qlen(void)
{
    char buf[32] = "";
    int fd = open(QLEN, O_RDONLY);
    if (fd < 0)
        return 10;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 ? atol(buf) : 10;
}

/* a datagram socket queueing qlen datagrams where this process may arrange it */
static int queued_socket(long qlen)
{
    if (read_qlen() < qlen && unshare(CLONE_NEWNET) == 0) {
        char text[32];
        int fd = open(QLEN, O_WRONLY), len = snprintf(text, sizeof text, "%ld", qlen);
        if (fd < 0 || write(fd, text, (size_t)len) != len)
            perror("unix sink: " QLEN);
        if (fd >= 0)
            close(fd);
    }
    return socket(AF_UNIX, SOCK_DGRAM, 0);
}

static int unix_sink(const char *path, long qlen, long pause_us)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int u = queued_socket(qlen), big = 8 << 20;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    unlink(path);
    setsockopt(u, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (bind(u, (void *)&a, sizeof a)) {
        perror("unix sink bind");
        return 1;
    }
    printf("unix sink ready %ld\n", read_qlen());
    fflush(stdout);
    static char buf[1 << 17];
    for (;;) {
        struct pollfd p = {u, POLLIN, 0};
        if (poll(&p, 1, -1) <= 0)
            continue;
        while (recv(u, buf, sizeof buf, MSG_DONTWAIT) >= 0 || errno == EINTR)
            ;
        if (pause_us)
            sleep_us(pause_us);
    }
}

/* environ plus LD_PRELOAD=lib and the settings */
static char **env_with(const char *lib, char **settings, int nsettings)
{
    size_t envc = 0;
    while (environ[envc])
        envc++;
    char **with = calloc(envc + (size_t)nsettings + 2, sizeof *with);
    size_t k = 0;
    for (size_t i = 0; i < envc; i++)
        with[k++] = environ[i];
    size_t lp = strlen(lib) + sizeof "LD_PRELOAD=";
    with[k] = malloc(lp);
    snprintf(with[k++], lp, "LD_PRELOAD=%s", lib);
    for (int i = 0; i < nsettings; i++)
        with[k++] = settings[i];
    with[k] = NULL;
    return with;
}

static unsigned long long rng_state;

static unsigned long long next_random(void) /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* pinned: this process (so the children it spawns) on the first CPU it may use, process
 * `sink` on the second; else both on all of them */
static void place(int pinned, pid_t sink)
{
    static cpu_set_t all, first, second;
    static int known;
    if (!known) {
        sched_getaffinity(0, sizeof all, &all);
        CPU_ZERO(&first);
        CPU_ZERO(&second);
        for (int c = 0, k = 0; c < CPU_SETSIZE && k < 2; c++)
            if (CPU_ISSET(c, &all))
                CPU_SET(c, k++ ? &second : &first);
        known = 1;
    }
    if (sched_setaffinity(0, sizeof all, pinned ? &first : &all) || (sink > 0 &&
        sched_setaffinity(sink, sizeof all, pinned ? &second : &all))) {
        perror("sched_setaffinity");
        exit(4);
    }
}

static int multi(int n, unsigned long long seed, long settle_us, pid_t sink, const char *prog, char **libs,
                 int nlibs, char **settings, int nsettings)
{
    char ***envs = calloc((size_t)nlibs, sizeof *envs);
    int *pinned = calloc((size_t)nlibs, sizeof *pinned), *order = calloc((size_t)nlibs, sizeof *order);
    long long *ns = calloc((size_t)nlibs, sizeof *ns);
    for (int i = 0; i < nlibs; i++) {
        const char *lib = libs[i];
        if (!strncmp(lib, "pinned:", 7)) {
            pinned[i] = 1;
            lib += 7;
        }
        envs[i] = strcmp(lib, "-") ? env_with(lib, settings, nsettings) : environ;
    }
    rng_state = seed ? seed : 1;
    int placed = -1;
    for (int r = 0; r < n; r++) {
        for (int j = 0; j < nlibs; j++)
            order[j] = j;
        for (int j = nlibs - 1; j > 0; j--) { /* Fisher-Yates */
            int k = (int)(next_random() % (unsigned long long)(j + 1)), t = order[j];
            order[j] = order[k];
            order[k] = t;
        }
        for (int j = 0; j < nlibs; j++) {
            int w = order[j];
            if (pinned[w] != placed)
                place(placed = pinned[w], sink);
            if (settle_us)
                sleep_us(settle_us);
            ns[w] = run(prog, envs[w]);
        }
        for (int j = 0; j < nlibs; j++)
            printf(j ? " %lld" : "%lld", ns[j]);
        printf("\n");
    }
    place(0, sink);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--sink"))
        return sink(atoi(argv[2]));
    if (argc == 5 && !strcmp(argv[1], "--unix-sink"))
        return unix_sink(argv[2], atol(argv[3]), atol(argv[4]));
    if (argc >= 8 && !strcmp(argv[1], "--multi")) {
        int sep = 7;
        while (sep < argc && strcmp(argv[sep], "--"))
            sep++;
        return multi(atoi(argv[2]), strtoull(argv[3], NULL, 10), atol(argv[4]), (pid_t)atol(argv[5]), argv[6],
                     argv + 7, sep - 7, argv + sep + 1, sep < argc ? argc - sep - 1 : 0);
    }
    if (argc < 4)
        return 1;
    int n = atoi(argv[1]);
    char **with = env_with(argv[3], argv + 4, argc - 4);
    for (int i = 0; i < n; i++) {
        long long a, b;
        if (i & 1) { /* alternate the order so neither side always runs second */
            b = run(argv[2], with);
            a = run(argv[2], environ);
        } else {
            a = run(argv[2], environ);
            b = run(argv[2], with);
        }
        printf("%lld %lld\n", a, b);
    }
    return 0;
}
