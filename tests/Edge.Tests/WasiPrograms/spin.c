// Never ends: only fuel or a timeout stops it.
int main(void) {
    volatile unsigned long n = 0;
    for (;;) n++;
}
