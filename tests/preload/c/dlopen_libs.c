/* dlopen()s every argument (RTLD_NOW), prints how many loaded, then exits 0 from main. */
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv)
{
    int ok = 0;
    for (int i = 1; i < argc; i++)
        if (dlopen(argv[i], RTLD_NOW | RTLD_LOCAL))
            ok++;
    printf("loaded %d\n", ok);
    return 0;
}
