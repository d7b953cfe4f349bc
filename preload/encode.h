/* Hand-written protobuf encoder for the messages of protocol/ogrt.proto.
 *
 * Every encoder takes an output pointer; with NULL it only measures, so callers size a
 * buffer exactly (one pass to measure, one to write) and never need malloc. Text fields
 * are NUL-terminated byte strings (NULL or "" = absent, proto3 default); repeated bytes
 * entries are always written, even when empty. */
#ifndef OGRT_ENCODE_H
#define OGRT_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#define OGRT_TYPE_PROCESS_START 12u
#define OGRT_TYPE_PROCESS_END 13u
#define OGRT_TYPE_FRAGMENT 14u
#define OGRT_FRAME_HEADER 8u
#define OGRT_SIG_LEN 36u

struct ogrt_lib {
    const char *path;
    const char *sig; /* OGRT_SIG_LEN characters of UUID text (NUL-terminated) or NULL */
};

struct ogrt_env {
    const char *name;
    const char *value;
};

struct ogrt_start {
    uint8_t uuid[16];
    int64_t time_us;
    const char *exe;
    int32_t pid, ppid;
    uint32_t uid, gid;
    const char *user, *hostname, *job_id;
    int argc;
    char *const *argv;
    const char *cwd;
    const struct ogrt_env *env;
    size_t n_env;
    const char *modules; /* LOADEDMODULES as is: split at ':' while encoding, empty parts dropped */
    int has_rank;
    int32_t rank;
    const struct ogrt_lib *libs;
    size_t n_libs;
    const char *signature;
    const char *step_id; /* SLURM_STEP_ID as given, or NULL */
};

struct ogrt_end {
    uint8_t uuid[16];
    int64_t time_us, start_time_us;
    int32_t pid;
    uint32_t uid;
    const char *hostname, *job_id;
    int has_exit;
    int32_t exit_status;
    int64_t utime_us, stime_us, maxrss_kb, minflt, majflt, inblock, oublock, nvcsw, nivcsw;
    const struct ogrt_lib *libs;
    size_t n_libs;
};

size_t ogrt_encode_start(uint8_t *out, const struct ogrt_start *s);
size_t ogrt_encode_end(uint8_t *out, const struct ogrt_end *e);
size_t ogrt_encode_fragment(uint8_t *out, const uint8_t uuid[16], uint32_t type, uint32_t index,
                            uint32_t count, uint32_t total_length, const uint8_t *data, size_t n);
void ogrt_frame_header(uint8_t *out, uint32_t type, uint32_t payload_len);

#endif
