// Sleeps 30 seconds in poll_oneoff: only an interrupt ends it early.
#include <stdio.h>
#include <unistd.h>

int main(void) {
    sleep(30);
    puts("woke up");
    return 0;
}
