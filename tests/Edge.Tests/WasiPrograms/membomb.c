// Allocates and touches 1 MiB blocks until malloc fails, then exits with 12.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Kept in a volatile global so the compiler cannot elide the allocation.
static char *volatile last;

int main(void) {
    for (int i = 0;; i++) {
        char *p = malloc(1 << 20);
        if (!p) {
            printf("allocated %d MiB\n", i);
            return 12;
        }
        memset(p, 1, 1 << 20);
        last = p;
    }
}
