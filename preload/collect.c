/* Process facts for the records: ids, time, executable, argv, cwd, job id, allowed
 * environment, modules, MPI rank, resource usage. Static buffers or mmap, no malloc. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "ogrt.h"
#include "sys.h"

static const char *const whitelist[] = OGRT_CFG_ENV_WHITELIST_INIT;
#define N_WHITELIST (sizeof whitelist / sizeof whitelist[0] - 1)

/* Paths go to the caller's small buffers first, a PATH_MAX buffer is mapped only for longer
 * ones: every page the library touches costs a page fault, so the static data of a common
 * process stays within one page (see ogrt_collect_release). */
static char *exe_big, *cwd_big; /* PATH_MAX + 1 bytes, mmap'd */
static struct utsname uts;
static char jobid_small[256];
static const char *jobid; /* a copy: the program may change its environment before exit */
static struct ogrt_env env_buf[N_WHITELIST + 1];

int64_t ogrt_now_us(void)
{
    struct timespec ts;
    if (sys_clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A version 4 UUID from getrandom(2); never blocks (early boot falls back to weaker mixing). */
void ogrt_random_uuid(uint8_t uuid[16])
{
    ssize_t got = 0;
    while (got < 16) {
        long r = sys_getrandom(uuid + got, 16 - (size_t)got, GRND_NONBLOCK);
        if (r < 0) {
            if (r == -EINTR)
                continue;
            break;
        }
        got += r;
    }
    if (got < 16) {
        struct timespec ts = {0, 0};
        sys_clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)sys_getpid() << 17) ^
                     (uint64_t)(uintptr_t)&ts ^ (uint64_t)ogrt_now_us();
        for (int i = 0; i < 16; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            uuid[i] = (uint8_t)(x >> 24);
        }
    }
    uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40);
    uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
}

static int same_text(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static int has_prefix(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return 0;
    return 1;
}

#define RESOLVE_ROOM 512 /* bytes of the path being resolved and of one link target */

/* The physical absolute path of fn (relative to cwd) into out, resolving each component's
 * symlinks with readlink(2) as the kernel's lookup does; 0 when that is not certain (a
 * component unreadable, a path or link longer than the small buffers, too many links). */
static int resolve_path(const char *fn, const char *cwd, char *out, size_t outsize)
{
    char rest[RESOLVE_ROOM], target[RESOLVE_ROOM];
    size_t n = strnlen(fn, sizeof rest);
    if (n >= sizeof rest)
        return 0;
    memcpy(rest, fn, n + 1);
    size_t len = 0; /* out[0..len) is resolved: "" (the root) or "/a/b" */
    if (rest[0] != '/') {
        if (!cwd || cwd[0] != '/') /* "(unreachable)/...": outside the root */
            return 0;
        len = strnlen(cwd, outsize);
        if (len >= outsize)
            return 0;
        memcpy(out, cwd, len);
        if (len == 1)
            len = 0;
    }
    char *p = rest;
    int links = 0;
    for (;;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *c = p;
        while (*p && *p != '/')
            p++;
        size_t cl = (size_t)(p - c);
        if (cl == 1 && c[0] == '.')
            continue;
        if (cl == 2 && c[0] == '.' && c[1] == '.') {
            while (len && out[len - 1] != '/')
                len--;
            if (len)
                len--;
            continue;
        }
        if (len + 1 + cl >= outsize)
            return 0;
        out[len] = '/';
        memmove(out + len + 1, c, cl);
        out[len + 1 + cl] = 0;
        long t = sys_readlink(out, target, sizeof target - 1);
        if (t == -EINVAL) { /* not a symlink */
            len += 1 + cl;
            continue;
        }
        if (t <= 0 || t >= (long)sizeof target - 1 || ++links > 40)
            return 0;
        /* the link target followed by what is left of the path */
        size_t remain = strlen(p);
        if ((size_t)t + remain + 1 > sizeof rest)
            return 0;
        memmove(rest + t, p, remain + 1);
        memcpy(rest, target, (size_t)t);
        p = rest;
        if (target[0] == '/')
            len = 0; /* a relative target resolves from the link's directory: len unchanged */
    }
    if (!len)
        return 0;
    out[len] = 0;
    return 1;
}

/* The executable, as readlink("/proc/self/exe") names it (the contract in
 * protocol/ogrt.proto: symlinks resolved, the interpreter for "#!" scripts). Reading procfs
 * is slow in a fresh process (its /proc/<pid> entries are built, then torn down at exit),
 * so the path given to execve (AT_EXECFN) is resolved instead, component by
 * component, whenever that is sure to name the same file: not for an interpreted program
 * (a "#!" script or binfmt_misc: the kernel inserts that path as argv[1] or argv[2], so any
 * such match goes to procfs), nor for fexecve/execveat paths under /dev/fd or /proc.
 * AT_EXECFN alone is the last resort when /proc is not mounted. */
static const char *executable_path(char *small, size_t small_size, const char *cwd, int argc, char **argv)
{
    const char *fn = (const char *)getauxval(AT_EXECFN);
    int interpreted = fn && argv && ((argc > 1 && argv[1] && same_text(argv[1], fn)) ||
                                     (argc > 2 && argv[2] && same_text(argv[2], fn)));
    if (fn && *fn && !interpreted && !has_prefix(fn, "/proc/") && !has_prefix(fn, "/dev/fd/") &&
        resolve_path(fn, cwd, small, small_size))
        return small;
    char *buf = small;
    size_t size = small_size;
    long n = sys_readlink("/proc/self/exe", buf, size - 1);
    if (n == (long)size - 1 && (exe_big = ogrt_map(PATH_MAX + 1))) { /* maybe truncated */
        buf = exe_big;
        size = PATH_MAX + 1;
        n = sys_readlink("/proc/self/exe", buf, size - 1);
    }
    if (n <= 0)
        return fn;
    buf[n] = 0;
    return buf;
}

static const char *current_dir(char *small, size_t small_size)
{
    /* the kernel returns "(unreachable)/..." for a cwd outside the root: sent as is */
    if (sys_getcwd(small, small_size) > 0)
        return small;
    if (!(cwd_big = ogrt_map(PATH_MAX + 1)))
        return NULL;
    return sys_getcwd(cwd_big, PATH_MAX + 1) > 0 ? cwd_big : NULL;
}

void ogrt_collect_release(void)
{
    ogrt_unmap(exe_big, PATH_MAX + 1);
    ogrt_unmap(cwd_big, PATH_MAX + 1);
    exe_big = cwd_big = NULL;
}

static const char *copy_text(const char *v, char *small, size_t small_size)
{
    if (!v || !*v)
        return NULL;
    size_t n = strlen(v);
    char *dst = n < small_size ? small : ogrt_map(n + 1);
    if (!dst)
        return NULL;
    memcpy(dst, v, n + 1);
    return dst;
}

/* A whole decimal int32 as strtol(v, &end, 10) with *end == 0 and no ERANGE accepts it
 * (blanks before, a sign); parsed here: glibc >= 2.38 redirects strtol to a symbol that
 * older glibc and musl lack. */
static int parse_int32(const char *v, int32_t *out)
{
    while (*v == ' ' || (*v >= '\t' && *v <= '\r'))
        v++;
    int neg = *v == '-';
    if (*v == '-' || *v == '+')
        v++;
    if (*v < '0' || *v > '9')
        return 0;
    int64_t r = 0;
    for (; *v >= '0' && *v <= '9'; v++)
        if ((r = r * 10 + (*v - '0')) > (int64_t)INT32_MAX + 1)
            return 0;
    if (*v || (!neg && r > INT32_MAX))
        return 0;
    *out = (int32_t)(neg ? -r : r);
    return 1;
}

static int parse_rank(int32_t *rank)
{
    static const char *const vars[] = {"PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (!v || !*v)
            continue;
        if (parse_int32(v, rank))
            return 1;
    }
    return 0;
}

void ogrt_collect_start(struct ogrt_start *s, int argc, char **argv, struct ogrt_path_bufs *bufs)
{
    ogrt_random_uuid(s->uuid);
    s->time_us = ogrt_now_us();
    s->cwd = current_dir(bufs->cwd, sizeof bufs->cwd);
    s->exe = executable_path(bufs->exe, sizeof bufs->exe, s->cwd, argc, argv);
    s->pid = (int32_t)sys_getpid();
    s->ppid = (int32_t)sys_getppid();
    s->gid = (uint32_t)sys_getgid();
    s->user = getenv("USER");
    s->hostname = sys_uname(&uts) == 0 ? uts.nodename : NULL;
    jobid = copy_text(getenv(OGRT_CFG_JOBID_VAR), jobid_small, sizeof jobid_small);
    s->job_id = jobid;
    if (OGRT_CFG_SEND_CMDLINE) {
        s->argc = argc;
        s->argv = argv;
    }
    s->n_env = 0;
    for (size_t i = 0; i < N_WHITELIST; i++) {
        const char *v = getenv(whitelist[i]);
        if (v) {
            env_buf[s->n_env].name = whitelist[i];
            env_buf[s->n_env].value = v;
            s->n_env++;
        }
    }
    s->env = env_buf;
    s->modules = getenv("LOADEDMODULES");
    s->has_rank = parse_rank(&s->rank);
    s->step_id = getenv("SLURM_STEP_ID");
}

static int64_t tv_us(struct timeval tv) { return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec; }

void ogrt_collect_end(struct ogrt_end *e, int32_t pid, uint32_t uid)
{
    struct rusage ru;
    e->time_us = ogrt_now_us();
    e->pid = pid;
    e->uid = uid;
    e->hostname = uts.nodename[0] ? uts.nodename : NULL;
    e->job_id = jobid;
    if (sys_getrusage(&ru) == 0) {
        e->utime_us = tv_us(ru.ru_utime);
        e->stime_us = tv_us(ru.ru_stime);
        e->maxrss_kb = ru.ru_maxrss;
        e->minflt = ru.ru_minflt;
        e->majflt = ru.ru_majflt;
        e->inblock = ru.ru_inblock;
        e->oublock = ru.ru_oublock;
        e->nvcsw = ru.ru_nvcsw;
        e->nivcsw = ru.ru_nivcsw;
    }
}
