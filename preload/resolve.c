/* The collector list: SERVER_HOST (comma-separated entries host, host:port, [v6addr]:port or
 * a bare IPv6 address; SERVER_PORT where an entry names no port) compiled in, or
 * OGRT_SERVER=host:port,[v6addr]:port,... when built with ALLOW_SERVER_ENV=yes. Each node's
 * primary is picked by a hash of its node name; an entry is resolved only when it is tried.
 *
 * Name lookup without NSS where possible: numeric addresses directly, "localhost" as
 * 127.0.0.1, other names from /etc/hosts (read with one open/read/close). Only a name found
 * nowhere else goes through getaddrinfo(3), which may load NSS modules into the process:
 * sites should compile in an address or a name listed in /etc/hosts. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ogrt.h"
#include "sys.h"

/* Dotted-quad IPv4 as inet_pton accepts it (4 decimal parts 0..255, no leading zeros),
 * parsed here: calling into libc would fault in one more of its code pages per process. */
static int parse_ipv4(const char *p, struct in_addr *out)
{
    uint32_t a = 0;
    for (int part = 0; part < 4; part++) {
        if (part && *p++ != '.')
            return 0;
        if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
            return 0;
        unsigned v = 0;
        for (int k = 0; *p >= '0' && *p <= '9'; k++, p++) {
            v = v * 10 + (unsigned)(*p - '0');
            if (k > 2 || v > 255)
                return 0;
        }
        a = a << 8 | v;
    }
    if (*p)
        return 0;
    out->s_addr = htonl(a);
    return 1;
}

static int numeric(const char *host, int port, struct ogrt_server *srv)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)&srv->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&srv->addr;
    memset(&srv->addr, 0, sizeof srv->addr);
    if (parse_ipv4(host, &a4->sin_addr)) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        srv->addrlen = sizeof *a4;
        return 1;
    }
    if (strchr(host, ':') && inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        srv->addrlen = sizeof *a6;
        return 1;
    }
    return 0;
}

static int hosts_lookup(int fd, char *buf, size_t size, const char *host, int port, struct ogrt_server *srv);

/* Find host in /etc/hosts; on success store its first address. */
#define HOSTS_MAX 65536 /* bytes of /etc/hosts read; mmap'd, not on the program's stack */

static int from_hosts_file(const char *host, int port, struct ogrt_server *srv)
{
    int fd = (int)sys_open("/etc/hosts", O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    char *buf = ogrt_map(HOSTS_MAX);
    if (!buf) {
        sys_close(fd);
        return 0;
    }
    int found = hosts_lookup(fd, buf, HOSTS_MAX, host, port, srv);
    sys_close(fd);
    ogrt_unmap(buf, HOSTS_MAX);
    return found;
}

static int hosts_lookup(int fd, char *buf, size_t size, const char *host, int port, struct ogrt_server *srv)
{
    long n;
    do
        n = sys_read(fd, buf, size - 1);
    while (n == -EINTR);
    if (n <= 0)
        return 0;
    if ((size_t)n == size - 1) { /* only whole lines of a longer file */
        char *last = memrchr(buf, '\n', (size_t)n);
        n = last ? last - buf : 0;
    }
    buf[n] = 0;
    char *save_line = NULL;
    for (char *line = strtok_r(buf, "\n", &save_line); line; line = strtok_r(NULL, "\n", &save_line)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *save_word = NULL;
        char *addr = strtok_r(line, " \t\r", &save_word);
        if (!addr)
            continue;
        for (char *name = strtok_r(NULL, " \t\r", &save_word); name; name = strtok_r(NULL, " \t\r", &save_word))
            if (!strcasecmp(name, host) && numeric(addr, port, srv))
                return 1;
    }
    return 0;
}

static int by_resolver(const char *host, int port, struct ogrt_server *srv)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = OGRT_CFG_TRANSPORT_UDP ? SOCK_DGRAM : SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return 0;
    int ok = 0;
    if (res->ai_addrlen <= sizeof srv->addr) {
        memcpy(&srv->addr, res->ai_addr, res->ai_addrlen);
        srv->addrlen = res->ai_addrlen;
        if (res->ai_family == AF_INET)
            ((struct sockaddr_in *)&srv->addr)->sin_port = htons((uint16_t)port);
        else if (res->ai_family == AF_INET6)
            ((struct sockaddr_in6 *)&srv->addr)->sin6_port = htons((uint16_t)port);
        ok = res->ai_family == AF_INET || res->ai_family == AF_INET6;
    }
    freeaddrinfo(res);
    return ok;
}

/* "host:port" or "[v6]:port" in srv->text */
static void server_text(const char *host, int port, struct ogrt_server *srv)
{
    char *t = srv->text; /* host is at most 255 bytes: fits */
    int v6 = strchr(host, ':') != NULL;
    if (v6)
        *t++ = '[';
    t = ogrt_put_str(t, host);
    if (v6)
        *t++ = ']';
    *t++ = ':';
    t = ogrt_put_uint(t, (unsigned long)port);
    *t = 0;
}

static int lookup(const char *host, int port, struct ogrt_server *srv)
{
    if (numeric(host, port, srv))
        return 1;
    if (!strcasecmp(host, "localhost"))
        return numeric("127.0.0.1", port, srv);
    if (from_hosts_file(host, port, srv) || by_resolver(host, port, srv))
        return 1;
    ogrt_log("cannot resolve server host '%s'", host);
    return 0;
}

static int parse_port(const char *d, const char *end, int *port)
{
    const char *first = d;
    long p = 0;
    for (; d < end && *d >= '0' && *d <= '9' && p <= 65535; d++)
        p = p * 10 + (*d - '0');
    if (d != end || d == first || p < 1 || p > 65535)
        return 0;
    *port = (int)p;
    return 1;
}

/* One list entry (n bytes at v) into host (NUL-terminated, at most hostsize-1) and port:
 * "host:port", "[v6]:port", and unless need_port also "host" or a bare IPv6 address (with
 * SERVER_PORT). 0: malformed. */
static int parse_entry(const char *v, size_t n, int need_port, char *host, size_t hostsize, int *port)
{
    const char *end = v + n, *from = v, *to = end, *colon = NULL;
    if (n && v[0] == '[') {
        const char *close = memchr(v, ']', n);
        if (!close || close + 1 >= end || close[1] != ':')
            return 0;
        from = v + 1;
        to = close;
        colon = close + 1;
    } else {
        const char *first = memchr(v, ':', n);
        if (first && first == memrchr(v, ':', n))
            to = colon = first;
        else if (first && need_port)
            return 0; /* an IPv6 address needs [...] before a port */
    }
    size_t hl = (size_t)(to - from);
    if (hl == 0 || hl >= hostsize)
        return 0;
    memcpy(host, from, hl);
    host[hl] = 0;
    if (colon)
        return parse_port(colon + 1, end, port);
    *port = OGRT_CFG_SERVER_PORT;
    return !need_port;
}

/* OGRT_SERVER's list, copied: the program may overwrite its environment before its end
 * record is sent. In .bss: touched only where the variable is used. */
static char env_list[OGRT_SERVER_LIST_MAX + 1];

int ogrt_servers_init(struct ogrt_servers *s)
{
    const char *v = getenv("OGRT_SERVER");
    s->list = OGRT_CFG_SERVER_HOST;
    s->from_env = 0;
    s->count = 0;
    if (v && *v) {
        if (!OGRT_CFG_ALLOW_SERVER_ENV) {
            ogrt_log("OGRT_SERVER ignored: built with ALLOW_SERVER_ENV=no");
        } else {
            size_t n = strlen(v);
            if (n > OGRT_SERVER_LIST_MAX) {
                ogrt_log("OGRT_SERVER= is longer than %d bytes", OGRT_SERVER_LIST_MAX);
                return 0;
            }
            memcpy(env_list, v, n + 1);
            s->list = env_list;
            s->from_env = 1;
        }
    }
    char host[256];
    int port, count = 0;
    for (const char *e = s->list;;) {
        const char *comma = strchr(e, ',');
        size_t n = comma ? (size_t)(comma - e) : strlen(e);
        if (count == OGRT_SERVERS_MAX || !parse_entry(e, n, s->from_env, host, sizeof host, &port)) {
            ogrt_log("%s='%s' is not a list of at most %d host:port or [address]:port",
                     s->from_env ? "OGRT_SERVER" : "SERVER_HOST", s->list, OGRT_SERVERS_MAX);
            return 0;
        }
        count++;
        if (!comma)
            break;
        e = comma + 1;
    }
    return s->count = count;
}

/* 64-bit finalizer (MurmurHash3's fmix64): every bit of the name's hash moves the result */
static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

int ogrt_server_primary(const struct ogrt_servers *s, const char *nodename)
{
    if (s->count < 2)
        return 0;
    return (int)(mix64(ogrt_fnv1a64(nodename, 0)) % (uint64_t)s->count);
}

int ogrt_server_entry(const struct ogrt_servers *s, int i, struct ogrt_server *srv, int resolve)
{
    const char *e = s->list;
    for (int k = 0; k < i && e; k++) {
        e = strchr(e, ',');
        if (e)
            e++;
    }
    if (!e || i < 0)
        return 0;
    const char *comma = strchr(e, ',');
    char host[256];
    int port;
    if (!parse_entry(e, comma ? (size_t)(comma - e) : strlen(e), s->from_env, host, sizeof host, &port))
        return 0;
    server_text(host, port, srv);
    return resolve ? lookup(host, port, srv) : 1;
}
