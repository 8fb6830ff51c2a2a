// Sleeps in poll_oneoff, 8 seconds or argv[1]: only an interrupt ends it early.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    sleep(argc > 1 ? atoi(argv[1]) : 8);
    puts("woke up");
    return 0;
}
