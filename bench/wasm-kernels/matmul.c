// Dense 192x192 double matrix multiply: f64 loads, multiply-add, nested loops.
#define N 192
static double a[N * N], b[N * N], c[N * N];

unsigned run(void) {
  for (unsigned i = 0; i < N * N; i++) {
    a[i] = (double)(i % 97) * 0.5;
    b[i] = (double)(i % 89) * 0.25;
  }
  for (unsigned i = 0; i < N; i++) {
    for (unsigned j = 0; j < N; j++) {
      double sum = 0;
      for (unsigned k = 0; k < N; k++) sum += a[i * N + k] * b[k * N + j];
      c[i * N + j] = sum;
    }
  }
  double total = 0;
  for (unsigned i = 0; i < N * N; i++) total += c[i];
  return (unsigned)(long long)total;
}
