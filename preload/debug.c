/* Diagnostics: silent by default. OGRT_DEBUG=1 prints to stderr (with write(2), never
 * through stdio, so the program's streams and buffers are untouched); OGRT_SILENT or its
 * alias OGRT_SCHLEICHFAHRT silences everything; OGRT_DEBUG_INFO=1 prints the compiled-in
 * settings, one "OGRT name: value" per line. */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include "ogrt.h"
#include "sys.h"

/* In .data, not .bss: the constructor writes them in every process, and .data shares a page
 * the loader has already written (relocations), whereas the first write to a .bss page costs
 * a page fault. */
#define OGRT_HOT __attribute__((section(".data")))
int ogrt_debug_on OGRT_HOT;
static int silent OGRT_HOT;

int ogrt_env_true(const char *name)
{
    const char *v = getenv(name);
    return v && (!strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "true"));
}

static int env_set_not_off(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") && strcasecmp(v, "no") && strcasecmp(v, "false");
}

void ogrt_debug_init(void)
{
    silent = env_set_not_off("OGRT_SILENT") || env_set_not_off("OGRT_SCHLEICHFAHRT");
    ogrt_debug_on = !silent && ogrt_env_true("OGRT_DEBUG");
}

static void write_all(const char *p, size_t n)
{
    while (n) {
        long r = sys_write(2, p, n);
        if (r < 0) {
            if (r == -EINTR)
                continue;
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

static void vlog(const char *fmt, va_list ap)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "OGRT[%d]: ", (int)sys_getpid());
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + ((size_t)m < sizeof line - (size_t)n - 1 ? (size_t)m : sizeof line - (size_t)n - 2);
    line[len++] = '\n';
    write_all(line, len);
}

void ogrt_log(const char *fmt, ...)
{
    if (!ogrt_debug_on)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

void ogrt_info(const char *name, const char *value)
{
    char line[2048];
    int n = snprintf(line, sizeof line, "OGRT %s: %s\n", name, value);
    if (n > 0)
        write_all(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

int ogrt_print_settings(void)
{
    char num[32];
    if (silent || !ogrt_env_true("OGRT_DEBUG_INFO"))
        return 0;
    ogrt_info("server_host", OGRT_CFG_SERVER_HOST);
    snprintf(num, sizeof num, "%d", OGRT_CFG_SERVER_PORT);
    ogrt_info("server_port", num);
    ogrt_info("transport", OGRT_CFG_TRANSPORT_UDP ? "udp" : OGRT_CFG_TRANSPORT_RELAY ? "relay" : "tcp");
    ogrt_info("relay_socket", OGRT_CFG_RELAY_SOCKET);
    ogrt_info("jobid_var", OGRT_CFG_JOBID_VAR);
    snprintf(num, sizeof num, "%d", OGRT_CFG_CONNECT_TIMEOUT_MS);
    ogrt_info("connect_timeout_ms", num);
    snprintf(num, sizeof num, "%d", OGRT_CFG_BACKOFF_SECONDS);
    ogrt_info("backoff_seconds", num);
    ogrt_info("env_whitelist", OGRT_CFG_ENV_WHITELIST_TEXT);
    ogrt_info("send_cmdline", OGRT_CFG_SEND_CMDLINE ? "yes" : "no");
    ogrt_info("filter_regexps", OGRT_CFG_FILTER_REGEXPS);
    ogrt_info("allow_server_env", OGRT_CFG_ALLOW_SERVER_ENV ? "yes" : "no");
    ogrt_info("active", ogrt_env_true("OGRT_ACTIVE") ? "yes" : "no");
    return 1;
}
