// A WASI program for the end-to-end tests: prints its arguments, two environment variables and the first line of the
// file named by DATA_FILE (reachable only through a PROPLET_DIRS preopen).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    printf("%s%s", i > 1 ? " " : "", argv[i]);
  }
  const char *greeting = getenv("GREETING");
  printf("\ngreeting=%s proplet=%s", greeting ? greeting : "", getenv("PROPLET_ID") ? "set" : "unset");
  const char *path = getenv("DATA_FILE");
  if (path) {
    char line[128] = "";
    FILE *f = fopen(path, "r");
    if (!f || !fgets(line, sizeof line, f)) {
      printf(" data=unreadable\n");
      return 2;
    }
    line[strcspn(line, "\n")] = 0;
    printf(" data=%s", line);
    fclose(f);
  }
  printf("\n");
  return 0;
}
