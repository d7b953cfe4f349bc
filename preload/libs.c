/* Loaded ELF objects (dl_iterate_phdr) and their OGRT notes, read from memory.
 *
 * Note format (shared with preload/tools): name "OGRT" (namesz 5), type 0x4f475254,
 * descriptor = version byte 0x01, 36 characters of UUID text, NUL (descsz 38), in an
 * SHF_ALLOC section, so it is inside a PT_NOTE segment of the loaded object.
 *
 * The objects loaded at start are remembered as 64-bit hashes (name + load address) in a
 * fixed-size open-addressing set, so the end record can list those loaded later (dlopen). */
#include <elf.h>
#include <link.h>
#include <string.h>

#include "ogrt.h"

#define OGRT_NOTE_TYPE 0x4f475254u
/* Static room for a common process (few pages touched); more objects use mmap. */
#define SMALL_LIBS 48
#define SMALL_SET 64

static struct ogrt_lib libs_small[SMALL_LIBS];
static struct ogrt_lib *libs_arr;
static size_t libs_cap, libs_n;

static uint64_t set_small[SMALL_SET];
static uint64_t *set = set_small;
static size_t set_size = SMALL_SET; /* power of two, at least twice the start count */
static size_t set_n;

static const char *exe_signature;

/* Identity of a loaded object in the start set: its name and load address. */
static uint64_t lib_hash(const struct dl_phdr_info *info)
{
    uint64_t h = ogrt_fnv1a64(info->dlpi_name, (uint64_t)info->dlpi_addr);
    h ^= h >> 29;
    return h ? h : 1;
}

static void set_add(uint64_t h)
{
    if (set_n + 1 >= set_size) /* keep an empty slot so lookups end */
        return;
    size_t i = (size_t)h & (set_size - 1);
    while (set[i] && set[i] != h)
        i = (i + 1) & (set_size - 1);
    if (!set[i])
        set_n++;
    set[i] = h;
}

static int set_has(uint64_t h)
{
    size_t i = (size_t)h & (set_size - 1);
    while (set[i]) {
        if (set[i] == h)
            return 1;
        i = (i + 1) & (set_size - 1);
    }
    return 0;
}

static const char *note_signature(const struct dl_phdr_info *info)
{
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        size_t align = ph->p_align == 8 ? 8 : 4;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        const unsigned char *end = p + ph->p_memsz;
        while ((size_t)(end - p) >= sizeof(ElfW(Nhdr))) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)(const void *)p;
            size_t name_off = sizeof *nh;
            size_t desc_off = name_off + ((nh->n_namesz + align - 1) & ~(align - 1));
            size_t next = desc_off + ((nh->n_descsz + align - 1) & ~(align - 1));
            if (nh->n_namesz > (size_t)(end - p) || nh->n_descsz > (size_t)(end - p) || next > (size_t)(end - p))
                break;
            const char *name = (const char *)p + name_off;
            const char *desc = (const char *)p + desc_off;
            if (nh->n_type == OGRT_NOTE_TYPE && nh->n_namesz == 5 && !memcmp(name, "OGRT", 5) &&
                nh->n_descsz == 1 + OGRT_SIG_LEN + 1 && desc[0] == 1 && desc[1 + OGRT_SIG_LEN] == 0 &&
                strnlen(desc + 1, OGRT_SIG_LEN) == OGRT_SIG_LEN)
                return desc + 1;
            p += next;
        }
    }
    return NULL;
}

/* State of one dl_iterate_phdr walk: objects seen (the first is the executable) and objects
 * counted by the counting callbacks. */
struct walk {
    size_t index, count;
};

/* Advances the walk; whether the object is a shared object (named, not the executable). */
static int next_is_shared_object(const struct dl_phdr_info *info, struct walk *w)
{
    return w->index++ > 0 && info->dlpi_name && info->dlpi_name[0];
}

static void append_lib(const struct dl_phdr_info *info)
{
    if (libs_n < libs_cap) {
        libs_arr[libs_n].path = info->dlpi_name;
        libs_arr[libs_n].sig = note_signature(info);
        libs_n++;
    }
}

/* dl_iterate_phdr callbacks, by pairs: count to size libs_arr, then fill it. */

static int count_loaded(struct dl_phdr_info *info, size_t size, void *data)
{
    struct walk *w = data;
    if (next_is_shared_object(info, w))
        w->count++;
    return 0;
}

/* The executable's signature; each shared object into the start set and libs_arr. */
static int record_start(struct dl_phdr_info *info, size_t size, void *data)
{
    struct walk *w = data;
    if (w->index == 0)
        exe_signature = note_signature(info);
    if (!next_is_shared_object(info, w))
        return 0;
    set_add(lib_hash(info));
    append_lib(info);
    return 0;
}

/* Advances the walk; whether the object is a shared object not in the start set. */
static int next_is_new_object(const struct dl_phdr_info *info, struct walk *w)
{
    return next_is_shared_object(info, w) && !set_has(lib_hash(info));
}

static int count_new(struct dl_phdr_info *info, size_t size, void *data)
{
    struct walk *w = data;
    if (next_is_new_object(info, w))
        w->count++;
    return 0;
}

/* Shared objects not in the start set into libs_arr. */
static int record_new(struct dl_phdr_info *info, size_t size, void *data)
{
    struct walk *w = data;
    if (next_is_new_object(info, w))
        append_lib(info);
    return 0;
}

static void reserve(size_t n)
{
    libs_n = 0;
    if (n <= SMALL_LIBS) {
        libs_arr = libs_small;
        libs_cap = SMALL_LIBS;
        return;
    }
    libs_arr = ogrt_map(n * sizeof *libs_arr);
    libs_cap = libs_arr ? n : 0;
}

size_t ogrt_libs_at_start(const struct ogrt_lib **libs, const char **exe_sig)
{
    struct walk w = {0, 0};
    dl_iterate_phdr(count_loaded, &w);
    if (w.count * 2 > SMALL_SET) {
        size_t sz = SMALL_SET;
        while (sz < w.count * 2)
            sz *= 2;
        uint64_t *big = ogrt_map(sz * sizeof *big);
        if (big) {
            set = big;
            set_size = sz;
        }
    }
    /* +16: objects a constructor of another library might load meanwhile are not lost */
    reserve(w.count + 16);
    w = (struct walk){0, 0};
    dl_iterate_phdr(record_start, &w);
    *libs = libs_arr;
    *exe_sig = exe_signature;
    return libs_n;
}

void ogrt_libs_release(void)
{
    if (libs_arr && libs_arr != libs_small)
        ogrt_unmap(libs_arr, libs_cap * sizeof *libs_arr);
    libs_arr = NULL;
    libs_cap = libs_n = 0;
}

size_t ogrt_libs_new(const struct ogrt_lib **libs)
{
    struct walk w = {0, 0};
    dl_iterate_phdr(count_new, &w);
    if (!w.count) {
        *libs = NULL;
        return 0;
    }
    reserve(w.count + 16);
    w = (struct walk){0, 0};
    dl_iterate_phdr(record_new, &w);
    *libs = libs_arr;
    return libs_n;
}
