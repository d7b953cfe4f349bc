/* The server address: SERVER_HOST/SERVER_PORT compiled in, or OGRT_SERVER=host:port /
 * [v6addr]:port when built with ALLOW_SERVER_ENV=yes.
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

static int lookup(const char *host, int port, struct ogrt_server *srv)
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
    if (numeric(host, port, srv))
        return 1;
    if (!strcasecmp(host, "localhost"))
        return numeric("127.0.0.1", port, srv);
    if (from_hosts_file(host, port, srv) || by_resolver(host, port, srv))
        return 1;
    ogrt_log("cannot resolve server host '%s'", host);
    return 0;
}

/* "host:port" or "[v6]:port" into host (NUL-terminated, at most hostsize-1) and port. */
static int parse_server_env(const char *v, char *host, size_t hostsize, int *port)
{
    const char *colon;
    size_t hl;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close[1] != ':')
            return 0;
        hl = (size_t)(close - v - 1);
        memcpy(host, v + 1, hl < hostsize ? hl : 0);
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (!colon || strchr(v, ':') != colon)
            return 0;
        hl = (size_t)(colon - v);
        memcpy(host, v, hl < hostsize ? hl : 0);
    }
    if (hl == 0 || hl >= hostsize)
        return 0;
    host[hl] = 0;
    long p = 0;
    const char *d = colon + 1;
    for (; *d >= '0' && *d <= '9' && p <= 65535; d++)
        p = p * 10 + (*d - '0');
    if (*d || d == colon + 1 || p < 1 || p > 65535)
        return 0;
    *port = (int)p;
    return 1;
}

int ogrt_resolve_server(struct ogrt_server *srv)
{
    const char *v = getenv("OGRT_SERVER");
    if (v && *v) {
        if (!OGRT_CFG_ALLOW_SERVER_ENV) {
            ogrt_log("OGRT_SERVER ignored: built with ALLOW_SERVER_ENV=no");
        } else {
            char host[256];
            int port;
            if (parse_server_env(v, host, sizeof host, &port))
                return lookup(host, port, srv);
            ogrt_log("OGRT_SERVER='%s' is not host:port or [address]:port", v);
            return 0;
        }
    }
    return lookup(OGRT_CFG_SERVER_HOST, OGRT_CFG_SERVER_PORT, srv);
}
