/* Signature test program: linked against libsiglib.so; dlopens the plugin named in argv[1]. */
#include <dlfcn.h>
#include <stdio.h>

int siglib_value(void);

int main(int argc, char **argv) {
    int v = siglib_value();
    if (argc > 1) {
        void *h = dlopen(argv[1], RTLD_NOW);
        if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
    }
    printf("siglib says %d\n", v);
    return 0;
}
