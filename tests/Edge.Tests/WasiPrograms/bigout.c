// Writes argv[1] lines of 68 bytes to stdout.
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int lines = argc > 1 ? atoi(argv[1]) : 16384;
    for (int i = 0; i < lines; i++) {
        printf("%08d-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123\n", i);
    }
    return 0;
}
