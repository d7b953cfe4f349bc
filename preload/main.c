/* Lifecycle: the constructor sends the start record before main(); an on_exit handler
 * sends the end record with the exit status (a destructor does so, without status, only if
 * on_exit could not be registered). Nothing happens unless OGRT_ACTIVE is 1/yes/true.
 *
 * Other C libraries (musl): on_exit is glibc's, so it is a weak reference: where it is
 * missing the destructor sends the end record (without exit status), and the constructor,
 * which such a library calls without (argc, argv, envp), finds argv from environ.
 *
 * Fork: a child that does not exec is the same program, not a new process start; it sends
 * nothing, and in particular not its parent's end record (detected by the pid change;
 * vfork children never touch the shared state). A child that execs is recorded by the
 * library in its new image. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/utsname.h>
#include <string.h>
#include <unistd.h>

#include "ogrt.h"
#include "sys.h"

/* glibc-only: weak, so the library loads where the C library lacks it (NULL there) */
#pragma weak on_exit

static struct {
    int sent_start;   /* start record delivered: an end record follows */
    int on_exit_ok;   /* on_exit registered: the destructor leaves the end to it */
    int end_claimed;  /* once-flag of the end record (atomic) */
    pid_t pid;
    uid_t uid;
    uint8_t uuid[16];
    int64_t start_us;
    struct ogrt_servers servers; /* the collector list (count 0: none usable) */
    int first;        /* the entry tried first: the node's primary, then the one that took a record */
    int cur;          /* the entry srv holds resolved (-1: none) */
    int checked;      /* the entry whose back-off marker the constructor looked at (-1: none) */
    unsigned unresolvable; /* entries whose name could not be resolved (bit i: entry i) */
    struct ogrt_server srv;
} st;

/* End records up to this size are encoded in place, larger ones (many objects dlopen'ed) in
 * an mmap'd buffer: small, so that the library's static data stays within one page. The
 * start record uses a buffer on the constructor's stack (START_BUF). */
static uint8_t small_buf[768];
#define START_BUF 3072

#define RECHECK_BACKOFF_US 1000000 /* end records of processes older than this check the marker */

typedef size_t (*encode_fn)(uint8_t *out, const void *record);

/* st.srv holds entry i, resolved (each entry is resolved when it is tried, once) */
static int use_server(int i)
{
    if (st.cur == i)
        return 1;
    if (st.unresolvable & (1u << i))
        return 0;
    st.cur = -1;
    if (!ogrt_server_entry(&st.servers, i, &st.srv, 1)) {
        st.unresolvable |= 1u << i;
        return 0;
    }
    st.cur = i;
    return 1;
}

/* st.first: this node's primary, unless a record went elsewhere already (a relay build asks
 * only when it falls back: its uname is saved where the relay takes the records) */
static void find_primary(void)
{
    st.first = 0;
    if (st.servers.count > 1) {
        struct utsname u;
        st.first = ogrt_server_primary(&st.servers, sys_uname(&u) == 0 ? u.nodename : "");
    }
}

/* The first entry, from st.first on, that resolves and is not backed off, into st.first and
 * st.srv; 0: none. */
static int pick_server(void)
{
    find_primary();
    for (int k = 0; k < st.servers.count; k++) {
        int i = (st.first + k) % st.servers.count;
        if (!use_server(i))
            continue;
        if (ogrt_backoff_active(&st.srv, st.uid)) {
            ogrt_log("backing off: not sending to %s", st.srv.text);
            continue;
        }
        st.first = st.checked = i;
        return 1;
    }
    return 0;
}

static void log_result(enum ogrt_send_result r, uint32_t type, size_t payload)
{
    switch (r) {
    case OGRT_SENT:
        ogrt_log("sent type %u record (%zu bytes) to %s", type, payload, st.srv.text);
        break;
    case OGRT_REFUSED:
        ogrt_log("server %s refused the connection", st.srv.text);
        break;
    case OGRT_TIMEOUT:
        ogrt_log("server %s did not answer within %d ms", st.srv.text, OGRT_CFG_CONNECT_TIMEOUT_MS);
        break;
    default:
        ogrt_log("could not send to %s", st.srv.text);
    }
}

/* The frame in buf to a collector (TCP or UDP): the list from st.first on, wrapping, until
 * one takes it. Each entry costs at most CONNECT_TIMEOUT_MS, and one that timed out is
 * backed off (for this user's processes on this node), so later records skip it. */
static enum ogrt_send_result send_direct(uint32_t type, uint8_t *buf, size_t payload, int64_t time_us)
{
    enum ogrt_send_result r = OGRT_FAILED;
    /* The constructor checked the back-off marker of st.checked for the start record (not
     * in a relay build: there the relay comes first). A marker that another process created
     * meanwhile matters only to a process that ran a while: a short one (the common case)
     * sends its end record there without a second look. */
    int long_running = type == OGRT_TYPE_PROCESS_END && time_us - st.start_us >= RECHECK_BACKOFF_US;
    if (st.first < 0)
        find_primary();
    for (int k = 0; k < st.servers.count; k++) {
        int i = (st.first + k) % st.servers.count;
        if (!use_server(i))
            continue;
        if (OGRT_BACKOFF_ENABLED && (i != st.checked || long_running) && ogrt_backoff_active(&st.srv, st.uid)) {
            ogrt_log("backing off: not sending to %s", st.srv.text);
            r = OGRT_TIMEOUT;
            continue;
        }
        r = ogrt_send_frame(&st.srv, type, st.uuid, buf, payload);
        log_result(r, type, payload);
        if (r == OGRT_SENT) {
            st.first = i; /* this process's other record goes there too */
            break;
        }
        if (r == OGRT_TIMEOUT)
            ogrt_backoff_start(&st.srv, st.uid);
    }
    return r;
}

/* small/small_size: where a record that fits is encoded; time_us: the record's time */
static enum ogrt_send_result send_record(uint32_t type, encode_fn encode, const void *record, uint8_t *small,
                                         size_t small_size, int64_t time_us)
{
    size_t payload = encode(NULL, record);
    size_t total = OGRT_FRAME_HEADER + payload;
    uint8_t *buf = total <= small_size ? small : ogrt_map(total);
    if (!buf)
        return OGRT_FAILED;
    encode(buf + OGRT_FRAME_HEADER, record);
    enum ogrt_send_result r = OGRT_FAILED;
    int err = OGRT_CFG_TRANSPORT_RELAY ? ogrt_send_relay(type, st.uuid, buf, payload) : 1;
    if (err == 0) {
        ogrt_log("sent type %u record (%zu bytes) to the relay %s", type, payload, OGRT_CFG_RELAY_SOCKET);
        r = OGRT_SENT;
    } else {
        if (OGRT_CFG_TRANSPORT_RELAY)
            ogrt_log("relay %s did not take the record (errno %d): sending directly", OGRT_CFG_RELAY_SOCKET, -err);
        r = send_direct(type, buf, payload, time_us);
    }
    if (buf != small)
        ogrt_unmap(buf, total);
    return r;
}

static size_t enc_start(uint8_t *out, const void *r) { return ogrt_encode_start(out, r); }
static size_t enc_end(uint8_t *out, const void *r) { return ogrt_encode_end(out, r); }

static void send_end(int has_exit, int status)
{
    /* A forked child without exec (or a vfork child calling exit) is not this process. */
    if (!st.sent_start || sys_getpid() != st.pid)
        return;
    if (__atomic_exchange_n(&st.end_claimed, 1, __ATOMIC_ACQ_REL))
        return;
    struct ogrt_end e;
    memset(&e, 0, sizeof e);
    memcpy(e.uuid, st.uuid, sizeof e.uuid);
    e.start_time_us = st.start_us;
    e.has_exit = has_exit;
    e.exit_status = status;
    ogrt_collect_end(&e, st.pid, (uint32_t)st.uid);
    e.n_libs = ogrt_libs_new(&e.libs);
    send_record(OGRT_TYPE_PROCESS_END, enc_end, &e, small_buf, sizeof small_buf, e.time_us);
}

static void on_exit_handler(int status, void *arg)
{
    (void)arg;
    send_end(1, status);
}

/* OGRT_DEBUG_INFO: the collector list in use and this node's primary */
static void print_servers(void)
{
    struct ogrt_servers servers;
    struct ogrt_server srv;
    struct utsname u;
    if (!ogrt_servers_init(&servers))
        return;
    const char *node = sys_uname(&u) == 0 ? u.nodename : "";
    int primary = ogrt_server_primary(&servers, node);
    ogrt_info("servers", servers.list);
    if (ogrt_server_entry(&servers, primary, &srv, 0)) {
        char line[512];
        snprintf(line, sizeof line, "%s (entry %d of %d, by the node name '%s')", srv.text, primary + 1,
                 servers.count, node);
        ogrt_info("primary_server", line);
    }
}

/* The argument vector below the initial environment on the process stack (argc, argv[],
 * NULL, envp[]), for C libraries that call constructors without arguments. Trusted only
 * while environ is still that array: between this frame and the AT_EXECFN string, both
 * on the initial stack (a copied environment lives elsewhere); otherwise no arguments. */
static int args_from_stack(char ***argv)
{
    char **env = environ;
    uintptr_t lo = (uintptr_t)&env, hi = (uintptr_t)getauxval(AT_EXECFN);
    if (!env || (uintptr_t)env <= lo || (uintptr_t)env >= hi)
        return 0;
    char **p = env - 1; /* argv's NULL terminator */
    if (*p)
        return 0;
    for (uintptr_t n = 0; (uintptr_t)(p - 1) > lo && n < 65536; n++, p--)
        if ((uintptr_t)p[-1] == n) { /* argc: a count, where argv holds pointers */
            *argv = p;
            return (int)n;
        }
    return 0;
}

__attribute__((constructor)) static void ogrt_init(int argc, char **argv, char **envp)
{
    (void)envp;
    if (!on_exit) { /* not glibc: the arguments are not ours to read */
        argc = args_from_stack(&argv);
        if (!argc)
            argv = NULL;
    }
    ogrt_debug_init();
    if (ogrt_print_settings())
        print_servers();
    if (!ogrt_env_true("OGRT_ACTIVE"))
        return;
    if (!ogrt_servers_init(&st.servers))
        return;
    st.uid = (uid_t)sys_getuid();
    st.first = st.cur = st.checked = -1;
    /* Backing off from every collector: nothing will be sent, so nothing is collected
     * either (cheapest path). A relay build resolves and looks only when it falls back. */
    if (!OGRT_CFG_TRANSPORT_RELAY && !pick_server())
        return;
    struct ogrt_start s;
    struct ogrt_path_bufs paths;
    uint8_t start_buf[START_BUF];
    memset(&s, 0, sizeof s);
    s.uid = (uint32_t)st.uid;
    ogrt_collect_start(&s, argc, argv, &paths);
    if (ogrt_filtered(s.exe)) {
        ogrt_collect_release();
        return;
    }
    st.pid = s.pid;
    st.start_us = s.time_us;
    memcpy(st.uuid, s.uuid, sizeof st.uuid);
    s.n_libs = ogrt_libs_at_start(&s.libs, &s.signature);
    enum ogrt_send_result r = send_record(OGRT_TYPE_PROCESS_START, enc_start, &s, start_buf, sizeof start_buf, s.time_us);
    ogrt_libs_release();
    ogrt_collect_release();
    if (r != OGRT_SENT)
        return;
    st.sent_start = 1;
    st.on_exit_ok = on_exit && on_exit(on_exit_handler, NULL) == 0;
}

__attribute__((destructor)) static void ogrt_fini(void)
{
    if (!st.on_exit_ok)
        send_end(0, 0);
}
