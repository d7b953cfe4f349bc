/* A program that defines its own functions named like library internals and like the libc
 * functions a tracking library needs (XALT's libuuid clashed with a user's random()).
 * Linked with -rdynamic, so every one of them is in the dynamic symbol table and would
 * interpose on calls a preloaded library makes through the PLT. Each definition counts its
 * calls; main() and a late destructor print how often somebody else called them. The libc
 * look-alikes forward to the kernel, so a library that does call them still works. */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { C_RANDOM, C_SRANDOM, C_RAND, C_UUID_GEN, C_UUID_UNPARSE, C_GETRANDOM, C_SOCKET, C_CONNECT,
       C_SEND, C_SENDTO, C_SENDMSG, C_POLL, C_LOG, C_DEBUG, C_INIT, C_ENCODE, C_DECODE, C_SEND_RECORD,
       C_ERROR_, C_WARN, C_CONFIG, C_HOSTNAME, C_NOW, C_FLUSH, C_SETUP, C_CLEANUP, C_FINISH,
       C_MESSAGE, C_RECORD, C_ENCODE_VARINT, C_WRITE_VARINT, C_BACKOFF, C_TRANSPORT, C_N };
static const char *names[C_N] = {
    "random", "srandom", "rand", "uuid_generate", "uuid_unparse", "getrandom", "socket", "connect",
    "send", "sendto", "sendmsg", "poll", "log", "debug", "init", "encode", "decode", "send_record",
    "error_", "warn", "config", "hostname", "now", "flush", "setup", "cleanup", "finish",
    "message", "record", "encode_varint", "write_varint", "backoff", "transport"};
static volatile int calls[C_N];

static unsigned long seed = 1;
long random(void) { calls[C_RANDOM]++; seed = seed * 1103515245 + 12345; return (long)(seed >> 16) & 0x7fffffff; }
void srandom(unsigned s) { calls[C_SRANDOM]++; seed = s; }
int rand(void) { calls[C_RAND]++; return (int)(random() & 0x7fff); }
void uuid_generate(unsigned char out[16]) { calls[C_UUID_GEN]++; memset(out, 0x42, 16); }
void uuid_unparse(const unsigned char *in, char *out) { calls[C_UUID_UNPARSE]++; (void)in; strcpy(out, "not-a-uuid"); }
ssize_t getrandom(void *buf, size_t len, unsigned flags) { calls[C_GETRANDOM]++; return syscall(SYS_getrandom, buf, len, flags); }
int socket(int d, int t, int p) { calls[C_SOCKET]++; return (int)syscall(SYS_socket, d, t, p); }
int connect(int fd, const struct sockaddr *a, socklen_t l) { calls[C_CONNECT]++; return (int)syscall(SYS_connect, fd, a, l); }
ssize_t sendto(int fd, const void *b, size_t n, int f, const struct sockaddr *a, socklen_t l) {
    calls[C_SENDTO]++; return syscall(SYS_sendto, fd, b, n, f, a, l); }
ssize_t send(int fd, const void *b, size_t n, int f) { calls[C_SEND]++; return syscall(SYS_sendto, fd, b, n, f, NULL, 0); }
ssize_t sendmsg(int fd, const struct msghdr *m, int f) { calls[C_SENDMSG]++; return syscall(SYS_sendmsg, fd, m, f); }
int poll(struct pollfd *p, nfds_t n, int t) { calls[C_POLL]++; return (int)syscall(SYS_poll, p, n, t); }
int log(const char *s) { calls[C_LOG]++; return (int)strlen(s); }
int debug(int level) { calls[C_DEBUG]++; return level; }
int init(void) { calls[C_INIT]++; return 1; }
int encode(const void *p, int n) { calls[C_ENCODE]++; (void)p; return n; }
int decode(const void *p, int n) { calls[C_DECODE]++; (void)p; return n; }
int send_record(int x) { calls[C_SEND_RECORD]++; return x; }
int error_(int x) { calls[C_ERROR_]++; return x; }
int warn(int x) { calls[C_WARN]++; return x; }
int config(int x) { calls[C_CONFIG]++; return x; }
int hostname(int x) { calls[C_HOSTNAME]++; return x; }
long now(void) { calls[C_NOW]++; return 42; }
int flush(int x) { calls[C_FLUSH]++; return x; }
int setup(int x) { calls[C_SETUP]++; return x; }
int cleanup(int x) { calls[C_CLEANUP]++; return x; }
int finish(int x) { calls[C_FINISH]++; return x; }
int message(int x) { calls[C_MESSAGE]++; return x; }
int record(int x) { calls[C_RECORD]++; return x; }
int encode_varint(unsigned long v, unsigned char *o) { calls[C_ENCODE_VARINT]++; (void)v; (void)o; return 0; }
int write_varint(unsigned long v, unsigned char *o) { calls[C_WRITE_VARINT]++; (void)v; (void)o; return 0; }
int backoff(int x) { calls[C_BACKOFF]++; return x; }
int transport(int x) { calls[C_TRANSPORT]++; return x; }

static void report(const char *when) {
    char line[256];
    int any = 0;
    for (int i = 0; i < C_N; i++) {
        if (calls[i]) {
            int n = snprintf(line, sizeof line, "%s: %s() called %d times by someone else\n",
                             when, names[i], calls[i]);
            if (write(1, line, n) < 0) return;
            any = 1;
        }
    }
    int n = snprintf(line, sizeof line, "%s: %s\n", when, any ? "interposed!" : "no foreign calls");
    if (write(1, line, n) < 0) return;
}

/* Runs last: after exit handlers (and a library's end-of-process record). */
__attribute__((destructor(101))) static void at_the_very_end(void) { report("end"); }

int main(void) {
    report("main");
    int saved[C_N];
    memcpy(saved, (const void *)calls, sizeof saved);
    /* The program's own use of its functions. */
    srandom(7);
    long r1 = random(), r2 = random();
    unsigned char u[16];
    char s[40];
    uuid_generate(u);
    uuid_unparse(u, s);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    close(fd);
    printf("own results: %ld %ld %d %s %d %d %d %ld\n", r1, r2, u[0], s, log("abc"), init(), encode("x", 5), now());
    fflush(stdout);
    memcpy((void *)calls, saved, sizeof saved);
    return 0;
}
