// Runaway recursion that the optimiser cannot turn into a loop.
#include <stdio.h>

__attribute__((noinline)) int dive(int n) {
    volatile char pad[32];
    pad[0] = (char)n;
    return dive(n + 1) + pad[0];
}

int main(void) {
    printf("%d\n", dive(0));
    return 0;
}
