// Sleeps 8 seconds in poll_oneoff: only an interrupt ends it early.
#include <stdio.h>
#include <unistd.h>

int main(void) {
    sleep(8);
    puts("woke up");
    return 0;
}
