// Sieve of Eratosthenes over 4M bytes: byte loads/stores, tight loops, bounds checks.
#define N 4000000
static unsigned char composite[N];

unsigned run(void) {
  for (unsigned i = 0; i < N; i++) composite[i] = 0;
  unsigned count = 0;
  for (unsigned i = 2; i < N; i++) {
    if (!composite[i]) {
      count++;
      for (unsigned j = i * 2; j < N; j += i) composite[j] = 1;
    }
  }
  return count;
}
