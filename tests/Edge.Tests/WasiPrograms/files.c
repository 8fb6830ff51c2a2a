// Files in a preopen: read, mkdir, write, stat, rename, unlink, readdir.
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void) {
    FILE *in = fopen("/data/input.txt", "r");
    if (!in) { perror("open input"); return 10; }
    char line[256];
    if (!fgets(line, sizeof line, in)) return 11;
    fclose(in);
    if (mkdir("/data/out", 0755) != 0) { perror("mkdir"); return 12; }
    FILE *out = fopen("/data/out/result.txt", "w");
    if (!out) { perror("create"); return 13; }
    fputs("upper:", out);
    for (char *p = line; *p; p++) fputc(*p >= 'a' && *p <= 'z' ? *p - 32 : *p, out);
    fclose(out);
    struct stat st;
    if (stat("/data/out/result.txt", &st) != 0) return 14;
    printf("size=%lld\n", (long long)st.st_size);
    if (rename("/data/out/result.txt", "/data/out/final.txt") != 0) { perror("rename"); return 15; }
    FILE *tmp = fopen("/data/tmp.txt", "w");
    fputs("x", tmp);
    fclose(tmp);
    if (unlink("/data/tmp.txt") != 0) { perror("unlink"); return 16; }
    DIR *d = opendir("/data");
    if (!d) return 17;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] != '.') printf("entry=%s\n", e->d_name);
    }
    closedir(d);
    return 0;
}
