// Recursive Fibonacci: calls, call-depth checks at function entry.
unsigned fib_n = 32;

static unsigned fib(unsigned n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

unsigned run(void) { return fib(fib_n); }
