/* A fast interval timer (SIGALRM every 50 us, handler installed without SA_RESTART) runs
 * until after exit() has started: every blocking call a library makes at start or at exit
 * is interrupted again and again (EINTR). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t ticks;
static void on_alarm(int s) { (void)s; ticks++; }

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* spin until 20 ticks were handled (at most 5 s, however loaded the machine is) */
    do clock_gettime(CLOCK_MONOTONIC, &t);
    while (ticks < 20 && (t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 5000000000L);
    printf("timer ticked: %s\n", ticks >= 20 ? "yes" : "no");
    fflush(stdout);
    exit(3);
}
