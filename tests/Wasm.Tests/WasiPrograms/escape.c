// Tries to read outside the preopen /sandbox in every way it can; prints OPEN or REFUSED per attempt.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void attempt(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        char buf[64] = {0};
        read(fd, buf, sizeof buf - 1);
        printf("OPEN %s: %s\n", path, buf);
        close(fd);
    } else {
        printf("REFUSED %s: %s\n", path, strerror(errno));
    }
}

int main(void) {
    attempt("/sandbox/../secret.txt");
    attempt("/sandbox/sub/../../secret.txt");
    attempt("/etc/passwd");
    attempt("/sandbox/link-out");
    attempt("/sandbox/link-abs");
    attempt("/sandbox/sub/link-up");
    attempt("/sandbox/sub/../inside.txt");
    attempt("/sandbox/link-in");
    if (symlink("../secret.txt", "/sandbox/made-link") == 0) attempt("/sandbox/made-link");
    if (symlink("/etc/passwd", "/sandbox/made-abs") == 0) attempt("/sandbox/made-abs");
    return 0;
}
