// Monotonic and realtime clocks, and a 20 ms sleep (poll_oneoff).
#include <stdio.h>
#include <time.h>

int main(void) {
    struct timespec a, b, r, pause = {0, 20000000};
    clock_gettime(CLOCK_MONOTONIC, &a);
    nanosleep(&pause, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    clock_gettime(CLOCK_REALTIME, &r);
    long long ms = ((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec)) / 1000000;
    printf("slept_ms=%lld\nrealtime=%lld\n", ms, (long long)r.tv_sec);
    return 0;
}
