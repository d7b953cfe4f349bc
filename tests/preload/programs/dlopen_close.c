/* dlopen a plugin, use it, dlclose it, dlopen/dlclose again, then exit: a library that
 * remembers loaded objects must not touch the unloaded one at exit. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    for (int round = 0; round < 3; round++) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) { printf("dlopen failed: %s\n", dlerror()); return 1; }
        const char *(*hello)(void) = (const char *(*)(void))dlsym(h, "plugin_hello");
        printf("round %d: %s\n", round, hello ? hello() : "(no symbol)");
        if (dlclose(h) != 0) { printf("dlclose failed\n"); return 1; }
    }
    void *h = dlopen("libplugin-does-not-exist.so", RTLD_NOW);
    printf("missing plugin: %s\n", h ? "loaded?!" : "not found");
    return 0;
}
