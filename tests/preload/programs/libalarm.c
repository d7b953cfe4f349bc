/* Preloaded next to libogrt.so: from its constructor on, a SIGALRM handler without
 * SA_RESTART runs every 50 us, so blocking calls of any other library - connect, poll,
 * send at start and at exit - keep failing with EINTR. */
#include <signal.h>
#include <string.h>
#include <sys/time.h>

static volatile sig_atomic_t ticks;
static void on_alarm(int s) { (void)s; ticks++; }

__attribute__((constructor)) static void start_ticking(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &it, NULL);
}
