/* Sending one frame: TCP on a short connection (non-blocking connect bounded by
 * CONNECT_TIMEOUT_MS), or UDP datagrams with Fragment frames for records larger than one
 * safe datagram, or the same datagrams on the node relay's Unix socket (never waiting). Descriptors are O_CLOEXEC and closed before returning; MSG_NOSIGNAL
 * keeps SIGPIPE away from the program; EINTR is retried with the remaining time. */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ogrt.h"
#include "sys.h"

#define UDP_PIECE 60000u /* payload bytes per datagram; well below 65507 */
/* Bound of one wait for a full send buffer: CONNECT_TIMEOUT_MS, at least 1 s. */
#define STALL_MS (OGRT_CFG_CONNECT_TIMEOUT_MS < 1000 ? 1000 : OGRT_CFG_CONNECT_TIMEOUT_MS)

static struct timespec ms_budget(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    return ts;
}

/* Wait for `events` on fd within the budget *left, which each wait reduces (the kernel writes
 * the time remaining back into ppoll's timeout: no clock reads, and a signal storm cannot
 * stretch it). 1: ready, 2: ready with an error or hang-up pending, 0: timeout, -1: error. */
static int wait_fd(int fd, short events, struct timespec *left)
{
    for (;;) {
        if (left->tv_sec <= 0 && left->tv_nsec <= 0)
            return 0;
        struct pollfd p = {fd, events, 0};
        long r = sys_ppoll(&p, 1, left);
        if (r > 0)
            return p.revents & (POLLERR | POLLHUP) ? 2 : 1;
        if (r == 0)
            return 0;
        if (r != -EINTR)
            return -1;
    }
}

static enum ogrt_send_result tcp_send(const struct ogrt_server *srv, const uint8_t *p, size_t n)
{
    int fd = (int)sys_socket(srv->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return OGRT_FAILED;
    enum ogrt_send_result res = OGRT_FAILED;
    long r = sys_connect(fd, &srv->addr, srv->addrlen);
    if (r != 0 && r != -EINPROGRESS && r != -EINTR) {
        res = r == -ECONNREFUSED ? OGRT_REFUSED : OGRT_FAILED;
        goto out;
    }
    /* The first send comes right after connect: a server on this host has completed the
     * handshake by then (one poll saved); otherwise it fails with EAGAIN and the connect is
     * waited for, CONNECT_TIMEOUT_MS at most. Then each stall of the send gets STALL_MS. */
    int connecting = r != 0;
    struct timespec left = ms_budget(OGRT_CFG_CONNECT_TIMEOUT_MS);
    while (n) {
        long s = sys_sendto(fd, p, n, MSG_NOSIGNAL, NULL, 0);
        if (s > 0) {
            p += s;
            n -= (size_t)s;
            connecting = 0;
            continue;
        }
        if (s == -EINTR)
            continue;
        if (s != -EAGAIN && s != -EWOULDBLOCK) {
            res = s == -ECONNREFUSED ? OGRT_REFUSED : OGRT_FAILED;
            goto out;
        }
        if (connecting) { /* the handshake is under way: a failed one shows in the next send */
            int w = wait_fd(fd, POLLOUT, &left);
            if (w == 0)
                res = OGRT_TIMEOUT;
            if (w <= 0)
                goto out;
            connecting = 0;
            continue;
        }
        left = ms_budget(STALL_MS);
        if (wait_fd(fd, POLLOUT, &left) >= 1)
            continue; /* an error shows in the next send */
        res = OGRT_TIMEOUT;
        goto out;
    }
    res = OGRT_SENT;
out:
    sys_close(fd);
    return res;
}

/* One datagram on a non-blocking socket. wait: a full send buffer is waited for, boundedly
 * (UDP); otherwise it fails at once (the relay: the record then takes the direct path). */
static int send_datagram(int fd, const void *addr, socklen_t addrlen, int wait, const uint8_t *p, size_t n)
{
    struct timespec left = ms_budget(STALL_MS); /* all waits of this datagram together */
    for (;;) {
        long s = sys_sendto(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT, addr, addrlen);
        if (s == (long)n)
            return 0;
        if (s == -EINTR)
            continue;
        if (wait && (s == -EAGAIN || s == -EWOULDBLOCK || s == -ENOBUFS) && wait_fd(fd, POLLOUT, &left) >= 1)
            continue;
        return s < 0 ? (int)s : -EMSGSIZE;
    }
}

/* A record as datagrams to addr: one frame, or Fragment frames for a payload over UDP_PIECE.
 * 0 or the -errno of the first datagram that failed. */
static int dgram_send(int family, const void *addr, socklen_t addrlen, int wait, uint32_t type,
                      const uint8_t uuid[16], uint8_t *buf, size_t payload_len)
{
    int fd = (int)sys_socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    int res;
    if (payload_len <= UDP_PIECE) {
        res = send_datagram(fd, addr, addrlen, wait, buf, OGRT_FRAME_HEADER + payload_len);
        goto out;
    }
    /* Too large for one datagram: Fragment frames, joined by the receiver (never truncated). */
    uint32_t count = (uint32_t)((payload_len + UDP_PIECE - 1) / UDP_PIECE);
    size_t cap = OGRT_FRAME_HEADER + ogrt_encode_fragment(NULL, uuid, type, count, count,
                                                          (uint32_t)payload_len, buf, UDP_PIECE);
    uint8_t *frag = ogrt_map(cap);
    res = -ENOMEM;
    if (!frag)
        goto out;
    const uint8_t *payload = buf + OGRT_FRAME_HEADER;
    res = 0;
    for (uint32_t i = 0; i < count && res == 0; i++) {
        size_t off = (size_t)i * UDP_PIECE;
        size_t n = payload_len - off < UDP_PIECE ? payload_len - off : UDP_PIECE;
        size_t len = ogrt_encode_fragment(frag + OGRT_FRAME_HEADER, uuid, type, i, count,
                                          (uint32_t)payload_len, payload + off, n);
        ogrt_frame_header(frag, OGRT_TYPE_FRAGMENT, (uint32_t)len);
        res = send_datagram(fd, addr, addrlen, wait, frag, OGRT_FRAME_HEADER + len);
    }
    ogrt_unmap(frag, cap);
out:
    sys_close(fd);
    return res;
}

int ogrt_send_relay(uint32_t type, const uint8_t uuid[16], uint8_t *buf, size_t payload_len)
{
    static const struct sockaddr_un relay = {AF_UNIX, OGRT_CFG_RELAY_SOCKET};
    if (payload_len > UINT32_MAX - OGRT_FRAME_HEADER)
        return -EMSGSIZE;
    ogrt_frame_header(buf, type, (uint32_t)payload_len);
    return dgram_send(AF_UNIX, &relay, (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                                                   sizeof OGRT_CFG_RELAY_SOCKET), 0, type, uuid, buf, payload_len);
}

enum ogrt_send_result ogrt_send_frame(const struct ogrt_server *srv, uint32_t type, const uint8_t uuid[16],
                                      uint8_t *buf, size_t payload_len)
{
    if (payload_len > UINT32_MAX - OGRT_FRAME_HEADER)
        return OGRT_FAILED;
    ogrt_frame_header(buf, type, (uint32_t)payload_len);
    if (OGRT_CFG_TRANSPORT_UDP)
        return dgram_send(srv->addr.ss_family, &srv->addr, srv->addrlen, 1, type, uuid, buf, payload_len) == 0
                   ? OGRT_SENT : OGRT_FAILED;
    return tcp_send(srv, buf, OGRT_FRAME_HEADER + payload_len);
}
