/* Internal interfaces of libogrt.so, one section per source file. main.c holds the
 * lifecycle (constructor, on_exit handler, destructor); each other file one concern.
 * Everything here has hidden visibility (-fvisibility=hidden and the version script
 * export nothing). */
#ifndef OGRT_H
#define OGRT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "config.h"
#include "encode.h"

/* debug.c: OGRT_DEBUG / OGRT_SILENT / OGRT_SCHLEICHFAHRT / OGRT_DEBUG_INFO */
extern int ogrt_debug_on;
int ogrt_env_true(const char *name);
void ogrt_debug_init(void);
void ogrt_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* 1 when it printed the settings (OGRT_DEBUG_INFO), each an "OGRT name: value" line (ogrt_info) */
int ogrt_print_settings(void);
void ogrt_info(const char *name, const char *value);

/* collect.c: process facts for the start and end records */
/* Room for the paths of the start record, on the constructor's stack (pages the loader has
 * already touched); longer paths go to mapped PATH_MAX buffers. */
struct ogrt_path_bufs {
    char cwd[512];
    char exe[512];
};
/* s->uid is set by the caller (one getuid per process); s->cwd and s->exe may point into bufs */
void ogrt_collect_start(struct ogrt_start *s, int argc, char **argv, struct ogrt_path_bufs *bufs);
/* Unmaps the buffers of paths longer than the static ones (after the start record is sent). */
void ogrt_collect_release(void);
/* pid and uid are those of the start record (the caller has checked the pid is unchanged) */
void ogrt_collect_end(struct ogrt_end *e, int32_t pid, uint32_t uid);
int64_t ogrt_now_us(void);
void ogrt_random_uuid(uint8_t uuid[16]);

/* libs.c: loaded objects and their OGRT notes, read from memory */
/* Fills the start set; returns the shared objects loaded now (not the executable). */
size_t ogrt_libs_at_start(const struct ogrt_lib **libs, const char **exe_sig);
/* Shared objects loaded now that were not loaded at start. */
size_t ogrt_libs_new(const struct ogrt_lib **libs);
/* Frees the array returned last (when it was mmap'd). */
void ogrt_libs_release(void);

/* filter.c: FILTER_REGEXPS */
#define OGRT_REGEX_MAX 4096 /* bytes of one regex with its NUL; a longer one is truncated */
int ogrt_filtered(const char *exe);
/* a plain-string regex ("^/opt/x/"): 1 if it matches s, 0 if not; -1: not plain (regcomp's);
 * a plain one is overwritten with its unescaped string */
int ogrt_filter_plain(char *regex, const char *s);
/* Build-time check: 1 with the first regex of FILTER_REGEXPS that does not compile in
 * pattern (the caller's buffer, so the library holds none), 0 when all compile. */
int ogrt_filter_invalid(char *pattern, size_t size);

/* resolve.c: the collector list (compiled in, or OGRT_SERVER when allowed) */
#define OGRT_SERVERS_MAX 16        /* entries of a list */
#define OGRT_SERVER_LIST_MAX 1023  /* bytes of OGRT_SERVER */
struct ogrt_servers {
    const char *list; /* comma-separated entries */
    int from_env;     /* OGRT_SERVER: every entry names its port */
    int count;
};
struct ogrt_server {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[300]; /* "host:port" for messages and the back-off key */
};
/* The list in use and its entries (0: none usable, logged). */
int ogrt_servers_init(struct ogrt_servers *s);
/* The entry this node tries first: a stable hash of its node name modulo the count. */
int ogrt_server_primary(const struct ogrt_servers *s, const char *nodename);
/* Entry i's text into srv->text, and with resolve its address; 0 when it cannot be resolved. */
int ogrt_server_entry(const struct ogrt_servers *s, int i, struct ogrt_server *srv, int resolve);

/* backoff.c: shared marker /dev/shm/ogrt-backoff-<uid>-<hash of server>; uid: getuid().
 * Only a TCP connect timeout creates a marker, so UDP builds never look for one. */
#define OGRT_BACKOFF_ENABLED (OGRT_CFG_BACKOFF_SECONDS > 0 && !OGRT_CFG_TRANSPORT_UDP)
int ogrt_backoff_active(const struct ogrt_server *srv, uid_t uid);
void ogrt_backoff_start(const struct ogrt_server *srv, uid_t uid);

/* transport.c: send one frame; buf holds OGRT_FRAME_HEADER free bytes then the payload */
enum ogrt_send_result { OGRT_SENT = 0, OGRT_REFUSED, OGRT_TIMEOUT, OGRT_FAILED };
enum ogrt_send_result ogrt_send_frame(const struct ogrt_server *srv, uint32_t type, const uint8_t uuid[16],
                                      uint8_t *buf, size_t payload_len);
/* The same frames as UDP's datagrams on the Unix socket RELAY_SOCKET, without waiting:
 * 0 when all were queued, else the -errno of the first that was not (-ENOENT: no socket,
 * -ECONNREFUSED: nobody bound, -EAGAIN: its queue is full); the caller then sends directly. */
int ogrt_send_relay(uint32_t type, const uint8_t uuid[16], uint8_t *buf, size_t payload_len);

/* common.c: helpers shared by the files above */
/* mmap-backed memory (never malloc: the program's heap stays as it would be); NULL on failure.
 * ogrt_unmap takes the size given to ogrt_map and ignores NULL. */
void *ogrt_map(size_t size);
void ogrt_unmap(void *p, size_t size);
/* text without stdio: append s / n in decimal / v in 16 hex digits at p, return the new end */
char *ogrt_put_str(char *p, const char *s);
char *ogrt_put_uint(char *p, unsigned long n);
char *ogrt_put_hex64(char *p, uint64_t v);
/* 64-bit FNV-1a of the NUL-terminated s, from the offset basis XOR salt (0: plain FNV-1a) */
uint64_t ogrt_fnv1a64(const char *s, uint64_t salt);

#endif
