// Tries to read outside the preopen argv[1] (default /sandbox) in every way it can; prints OPEN or REFUSED per attempt.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *base = "/sandbox";

static void attempt_at(const char *path, const char *suffix) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        char buf[64] = {0};
        read(fd, buf, sizeof buf - 1);
        printf("OPEN %s: %s\n", suffix, buf);
        close(fd);
    } else {
        printf("REFUSED %s: %s\n", suffix, strerror(errno));
    }
}

// Reports base + suffix under the suffix alone, so the output does not depend on where the sandbox is.
static void attempt(const char *suffix) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s", base, suffix);
    attempt_at(path, suffix);
}

static void link_and_attempt(const char *target, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s", base, name);
    if (symlink(target, path) == 0) attempt(name);
}

int main(int argc, char **argv) {
    if (argc > 1) base = argv[1];
    attempt("/../secret.txt");
    attempt("/sub/../../secret.txt");
    attempt_at("/etc/passwd", "/etc/passwd");
    attempt("/link-out");
    attempt("/link-abs");
    attempt("/sub/link-up");
    attempt("/sub/../inside.txt");
    attempt("/link-in");
    link_and_attempt("../secret.txt", "/made-link");
    link_and_attempt("/etc/passwd", "/made-abs");
    return 0;
}
