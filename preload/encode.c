/* Protobuf wire encoding (varints, length-delimited fields) for OGRT records. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strchrnul */
#endif
#include "encode.h"

#include <string.h>


struct w {
    uint8_t *p; /* NULL: measure only */
    size_t n;
};

enum { WT_VARINT = 0, WT_LEN = 2 };

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static void put_raw(struct w *w, const void *data, size_t n)
{
    if (w->p && n)
        memcpy(w->p + w->n, data, n);
    w->n += n;
}

static void put_varint(struct w *w, uint64_t v)
{
    if (!w->p) {
        w->n += varint_len(v);
        return;
    }
    while (v >= 0x80) {
        w->p[w->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    w->p[w->n++] = (uint8_t)v;
}

static void put_tag(struct w *w, unsigned field, unsigned wt) { put_varint(w, ((uint64_t)field << 3) | wt); }

/* Scalar fields: proto3 omits zero values unless the field is `optional` (force). */
static void f_u64(struct w *w, unsigned field, uint64_t v, int force)
{
    if (!v && !force)
        return;
    put_tag(w, field, WT_VARINT);
    put_varint(w, v);
}
/* int32/int64 negative values are sign-extended to 64 bits (10-byte varint). */
static void f_i64(struct w *w, unsigned field, int64_t v, int force) { f_u64(w, field, (uint64_t)v, force); }

static void f_len(struct w *w, unsigned field, const void *data, size_t n)
{
    put_tag(w, field, WT_LEN);
    put_varint(w, n);
    put_raw(w, data, n);
}

/* Optional-style bytes: absent when NULL or empty. */
static void f_str(struct w *w, unsigned field, const char *s)
{
    if (s && *s)
        f_len(w, field, s, strlen(s));
}

static size_t sig_len(const char *sig) { return sig ? strnlen(sig, OGRT_SIG_LEN) : 0; }

static size_t lib_body_len(const struct ogrt_lib *l)
{
    size_t n = 0, pl = l->path ? strlen(l->path) : 0, sl = sig_len(l->sig);
    if (pl)
        n += 1 + varint_len(pl) + pl;
    if (sl)
        n += 1 + varint_len(sl) + sl;
    return n;
}

static void f_libs(struct w *w, unsigned field, const struct ogrt_lib *libs, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct ogrt_lib *l = &libs[i];
        put_tag(w, field, WT_LEN);
        put_varint(w, lib_body_len(l));
        f_str(w, 1, l->path);
        if (sig_len(l->sig))
            f_len(w, 2, l->sig, sig_len(l->sig));
    }
}

size_t ogrt_encode_start(uint8_t *out, const struct ogrt_start *s)
{
    struct w w = {out, 0};
    f_len(&w, 1, s->uuid, 16);
    f_i64(&w, 2, s->time_us, 0);
    f_str(&w, 3, s->exe);
    f_i64(&w, 4, s->pid, 0);
    f_i64(&w, 5, s->ppid, 0);
    f_u64(&w, 6, s->uid, 0);
    f_u64(&w, 7, s->gid, 0);
    f_str(&w, 8, s->user);
    f_str(&w, 9, s->hostname);
    f_str(&w, 10, s->job_id);
    for (int i = 0; i < s->argc && s->argv && s->argv[i]; i++)
        f_len(&w, 11, s->argv[i], strlen(s->argv[i]));
    f_str(&w, 12, s->cwd);
    for (size_t i = 0; i < s->n_env; i++) {
        size_t nl = strlen(s->env[i].name), vl = strlen(s->env[i].value);
        put_tag(&w, 13, WT_LEN);
        put_varint(&w, nl + 1 + vl);
        put_raw(&w, s->env[i].name, nl);
        put_raw(&w, "=", 1);
        put_raw(&w, s->env[i].value, vl);
    }
    if (s->modules) {
        const char *p = s->modules;
        while (*p) {
            const char *e = strchrnul(p, ':');
            if (e > p)
                f_len(&w, 14, p, (size_t)(e - p));
            p = *e ? e + 1 : e;
        }
    }
    if (s->has_rank)
        f_i64(&w, 15, s->rank, 1);
    f_libs(&w, 16, s->libs, s->n_libs);
    if (sig_len(s->signature))
        f_len(&w, 17, s->signature, sig_len(s->signature));
    f_str(&w, 18, s->step_id);
    return w.n;
}

size_t ogrt_encode_end(uint8_t *out, const struct ogrt_end *e)
{
    struct w w = {out, 0};
    f_len(&w, 1, e->uuid, 16);
    f_i64(&w, 2, e->time_us, 0);
    f_i64(&w, 3, e->start_time_us, 0);
    f_i64(&w, 4, e->pid, 0);
    f_u64(&w, 5, e->uid, 0);
    f_str(&w, 6, e->hostname);
    f_str(&w, 7, e->job_id);
    if (e->has_exit)
        f_i64(&w, 8, e->exit_status, 1);
    f_i64(&w, 9, e->utime_us, 0);
    f_i64(&w, 10, e->stime_us, 0);
    f_i64(&w, 11, e->maxrss_kb, 0);
    f_i64(&w, 12, e->minflt, 0);
    f_i64(&w, 13, e->majflt, 0);
    f_i64(&w, 14, e->inblock, 0);
    f_i64(&w, 15, e->oublock, 0);
    f_i64(&w, 16, e->nvcsw, 0);
    f_i64(&w, 17, e->nivcsw, 0);
    f_libs(&w, 18, e->libs, e->n_libs);
    return w.n;
}

size_t ogrt_encode_fragment(uint8_t *out, const uint8_t uuid[16], uint32_t type, uint32_t index,
                            uint32_t count, uint32_t total_length, const uint8_t *data, size_t n)
{
    struct w w = {out, 0};
    f_len(&w, 1, uuid, 16);
    f_u64(&w, 2, type, 0);
    f_u64(&w, 3, index, 0);
    f_u64(&w, 4, count, 0);
    f_u64(&w, 5, total_length, 0);
    if (n)
        f_len(&w, 6, data, n);
    return w.n;
}

void ogrt_frame_header(uint8_t *out, uint32_t type, uint32_t payload_len)
{
    out[0] = (uint8_t)(type >> 24);
    out[1] = (uint8_t)(type >> 16);
    out[2] = (uint8_t)(type >> 8);
    out[3] = (uint8_t)type;
    out[4] = (uint8_t)(payload_len >> 24);
    out[5] = (uint8_t)(payload_len >> 16);
    out[6] = (uint8_t)(payload_len >> 8);
    out[7] = (uint8_t)payload_len;
}
