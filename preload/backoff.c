/* Back-off shared by the processes of one user on one node: after a connect to a server
 * timed out, a marker file /dev/shm/ogrt-backoff-<uid>-<hash of host:port> gets an mtime
 * BACKOFF_SECONDS in the future; until then processes skip sending to that server, so an
 * unresponsive daemon costs CONNECT_TIMEOUT_MS once, not once per process.
 * Markers owned by another user, or not regular files, are ignored (O_NOFOLLOW). */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ogrt.h"
#include "sys.h"

#define MARKER_PATH_MAX 64 /* "/dev/shm/ogrt-backoff-" + uid (10 digits) + '-' + 16 hex digits + NUL */

static void marker_path(const struct ogrt_server *srv, uid_t uid, char path[MARKER_PATH_MAX])
{
    char *p = ogrt_put_str(path, "/dev/shm/ogrt-backoff-");
    p = ogrt_put_uint(p, (unsigned long)uid);
    *p++ = '-';
    p = ogrt_put_hex64(p, ogrt_fnv1a64(srv->text, 0));
    *p = 0;
}

int ogrt_backoff_active(const struct ogrt_server *srv, uid_t uid)
{
    char path[MARKER_PATH_MAX];
    struct stat st;
    struct timespec now;
    if (!OGRT_BACKOFF_ENABLED)
        return 0;
    marker_path(srv, uid, path);
    if (sys_lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != uid)
        return 0;
    if (sys_clock_gettime(CLOCK_REALTIME, &now) != 0)
        return 0;
    if (st.st_mtim.tv_sec > now.tv_sec + OGRT_CFG_BACKOFF_SECONDS) /* clock stepped back: ignore */
        return 0;
    return st.st_mtim.tv_sec > now.tv_sec;
}

void ogrt_backoff_start(const struct ogrt_server *srv, uid_t uid)
{
    char path[MARKER_PATH_MAX];
    struct stat st;
    struct timespec now;
    if (OGRT_CFG_BACKOFF_SECONDS == 0)
        return;
    marker_path(srv, uid, path);
    int fd = (int)sys_open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
    if (fd < 0)
        return;
    if (sys_fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == uid) {
        if (sys_clock_gettime(CLOCK_REALTIME, &now) != 0)
            now.tv_sec = 0;
        time_t until = now.tv_sec + OGRT_CFG_BACKOFF_SECONDS;
        struct timespec t[2] = {{until, 0}, {until, 0}};
        sys_futimens(fd, t);
        ogrt_log("server %s unresponsive: backing off for %d s (%s)", srv->text, OGRT_CFG_BACKOFF_SECONDS, path);
    }
    sys_close(fd);
}
