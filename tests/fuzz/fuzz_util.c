#include "fuzz_util.h"

#include "crypto.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[256];

static void remove_scratch(void)
{
    fuzz_clear(scratch);
    rmdir(scratch);
}

const char *fuzz_scratch(void)
{
    if (!scratch[0]) {
        struct stat st;
        const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
        snprintf(scratch, sizeof scratch, "%s/ringmaster-fuzz.XXXXXX", base);
        if (!mkdtemp(scratch))
            abort();
        atexit(remove_scratch);
    }
    return scratch;
}

const char *fuzz_path(int slot, const char *name)
{
    static char paths[4][512];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fuzz_scratch(), name);
    return paths[slot];
}

void fuzz_write(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n <= 0)
            abort();
        p += n;
        len -= (size_t)n;
    }
    close(fd);
}

void fuzz_clear(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) {
            fuzz_clear(path);
            rmdir(path);
        }
    }
    closedir(d);
}

void fuzz_load_key(void)
{
    static int loaded;
    if (loaded)
        return;
    loaded = 1;
    /* a fixed key: inputs that replay must mean the same thing every time */
    uint8_t key[RM_KEY_BYTES];
    for (int i = 0; i < RM_KEY_BYTES; i++)
        key[i] = (uint8_t)(i * 37 + 11);
    const char *path = fuzz_path(0, "fuzz.key");
    fuzz_write(path, key, sizeof key);
    rm_error err;
    if (rm_security_load(path, &err) != RM_OK) {
        fprintf(stderr, "fuzz: %s\n", err.msg);
        abort();
    }
    unlink(path);
}
