/* Raw system calls. A program may define its own socket(), send(), poll(), getrandom() ...
 * (the executable comes first in symbol lookup, so calls through libc's names would reach
 * them): the library therefore enters the kernel itself for everything it does on its own
 * behalf. Results follow the kernel convention: >= 0 success, -errno on failure.
 * x86_64, aarch64 and i386 use inline assembly; other architectures fall back to syscall(2).
 * i386 differs in more than the numbers: 32-bit ids (getuid32), mmap2, fstatat64 (the
 * build uses -D_FILE_OFFSET_BITS=64, so struct stat is its struct stat64), and sockets
 * through socketcall(2), which every kernel has (the direct calls came with Linux 4.3). */
#ifndef OGRT_SYS_H
#define OGRT_SYS_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
static inline long ogrt_sc6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
static inline long ogrt_sc6(long n, long a, long b, long c, long d, long e, long f)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
}
#elif defined(__i386__)
/* int $0x80: eax = number, ebx ecx edx esi edi ebp = arguments. ebp may be the frame
 * pointer, so the sixth argument is pushed first (its operand is still addressed with
 * the unchanged stack pointer), then loaded into ebp around the call. */
static inline long ogrt_sc6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    __asm__ volatile("pushl %7\n\t"
                     "pushl %%ebp\n\t"
                     "movl 4(%%esp), %%ebp\n\t"
                     "int $0x80\n\t"
                     "popl %%ebp\n\t"
                     "addl $4, %%esp"
                     : "=a"(ret)
                     : "a"(n), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e), "g"(f)
                     : "memory");
    return ret;
}
#else
static inline long ogrt_sc6(long n, long a, long b, long c, long d, long e, long f)
{
    long r = syscall(n, a, b, c, d, e, f);
    return r < 0 ? -errno : r;
}
#endif

#define SC(n, a, b, c, d, e, f) ogrt_sc6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

static inline long sys_getrandom(void *buf, size_t n, unsigned flags) { return SC(SYS_getrandom, buf, n, flags, 0, 0, 0); }
#if defined(__i386__)
/* socketcall(call, args[]): the call numbers of <linux/net.h> */
static inline long sys_socketcall(int call, long a, long b, long c, long d, long e, long f)
{
    long args[6] = {a, b, c, d, e, f};
    return SC(SYS_socketcall, call, args, 0, 0, 0, 0);
}
static inline long sys_socket(int d, int t, int p) { return sys_socketcall(1, d, t, p, 0, 0, 0); }
static inline long sys_connect(int fd, const void *a, socklen_t l) { return sys_socketcall(3, fd, (long)a, l, 0, 0, 0); }
static inline long sys_sendto(int fd, const void *b, size_t n, int fl, const void *a, socklen_t l)
{
    return sys_socketcall(11, fd, (long)b, (long)n, fl, (long)a, l);
}
static inline long sys_getsockopt(int fd, int lvl, int name, void *v, socklen_t *l)
{
    return sys_socketcall(15, fd, lvl, name, (long)v, (long)l, 0);
}
#define OGRT_SYS_GETUID SYS_getuid32
#define OGRT_SYS_GETGID SYS_getgid32
#define OGRT_SYS_FSTATAT SYS_fstatat64
#define OGRT_SYS_MMAP SYS_mmap2
#else
static inline long sys_socket(int d, int t, int p) { return SC(SYS_socket, d, t, p, 0, 0, 0); }
static inline long sys_connect(int fd, const void *a, socklen_t l) { return SC(SYS_connect, fd, a, l, 0, 0, 0); }
static inline long sys_sendto(int fd, const void *b, size_t n, int fl, const void *a, socklen_t l)
{
    return SC(SYS_sendto, fd, b, n, fl, a, l);
}
static inline long sys_getsockopt(int fd, int lvl, int name, void *v, socklen_t *l)
{
    return SC(SYS_getsockopt, fd, lvl, name, v, l, 0);
}
#define OGRT_SYS_GETUID SYS_getuid
#define OGRT_SYS_GETGID SYS_getgid
#define OGRT_SYS_FSTATAT SYS_newfstatat
#define OGRT_SYS_MMAP SYS_mmap
#endif
/* The kernel writes the time left back into *ts (also when interrupted by a signal). */
static inline long sys_ppoll(struct pollfd *p, unsigned n, struct timespec *ts) { return SC(SYS_ppoll, p, n, ts, 0, 8, 0); }
static inline long sys_close(int fd) { return SC(SYS_close, fd, 0, 0, 0, 0, 0); }
static inline long sys_open(const char *path, int flags, int mode) { return SC(SYS_openat, AT_FDCWD, path, flags, mode, 0, 0); }
static inline long sys_read(int fd, void *b, size_t n) { return SC(SYS_read, fd, b, n, 0, 0, 0); }
static inline long sys_write(int fd, const void *b, size_t n) { return SC(SYS_write, fd, b, n, 0, 0, 0); }
static inline long sys_readlink(const char *p, char *b, size_t n) { return SC(SYS_readlinkat, AT_FDCWD, p, b, n, 0, 0); }
static inline long sys_getpid(void) { return SC(SYS_getpid, 0, 0, 0, 0, 0, 0); }
static inline long sys_getppid(void) { return SC(SYS_getppid, 0, 0, 0, 0, 0, 0); }
static inline long sys_getuid(void) { return SC(OGRT_SYS_GETUID, 0, 0, 0, 0, 0, 0); }
static inline long sys_getgid(void) { return SC(OGRT_SYS_GETGID, 0, 0, 0, 0, 0, 0); }
static inline long sys_uname(struct utsname *u) { return SC(SYS_uname, u, 0, 0, 0, 0, 0); }
static inline long sys_getcwd(char *b, size_t n) { return SC(SYS_getcwd, b, n, 0, 0, 0, 0); }
static inline long sys_lstat(const char *p, struct stat *st)
{
    return SC(OGRT_SYS_FSTATAT, AT_FDCWD, p, st, AT_SYMLINK_NOFOLLOW, 0, 0);
}
static inline long sys_fstat(int fd, struct stat *st) { return SC(OGRT_SYS_FSTATAT, fd, "", st, AT_EMPTY_PATH, 0, 0); }
static inline long sys_futimens(int fd, const struct timespec t[2]) { return SC(SYS_utimensat, fd, 0, t, 0, 0, 0); }
/* The system call, not the vDSO: a short-lived process would take two page faults (libc's
 * wrapper page and the vvar page) for its first clock read, more than the calls cost. */
static inline long sys_clock_gettime(clockid_t c, struct timespec *ts) { return SC(SYS_clock_gettime, c, ts, 0, 0, 0, 0); }
static inline long sys_getrusage(struct rusage *ru) { return SC(SYS_getrusage, RUSAGE_SELF, ru, 0, 0, 0, 0); }
static inline void *sys_mmap(size_t n)
{
    long r = SC(OGRT_SYS_MMAP, 0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return r < 0 && r > -4096 ? NULL : (void *)r;
}
static inline long sys_munmap(void *p, size_t n) { return SC(SYS_munmap, p, n, 0, 0, 0, 0); }

#endif
