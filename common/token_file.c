#include "token_file.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int rm_token_file_read(const char *path, char *out, size_t cap, rm_error *err)
{
    /* O_NOFOLLOW is not used: a symlink to a 0600 file is fine, and fstat
     * below looks at the file actually opened. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rm_fail_errno(err, errno, "%s: cannot open the token file", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rm_fail_errno(err, e, "%s: cannot stat the token file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return rm_fail(err, "%s: the token file is not a regular file", path);
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        return rm_fail(err, "%s: the token file has mode %04o; it must be readable by its owner only (chmod 600 %s)",
                       path, (unsigned)(st.st_mode & 07777), path);
    }
    char buf[RM_TOKEN_CAP + 2];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return rm_fail_errno(err, e, "%s: cannot read the token file", path);
    buf[n] = '\0';
    char *start = buf;
    while (*start && isspace((unsigned char)*start))
        start++;
    size_t len = strcspn(start, "\r\n");
    while (len > 0 && isspace((unsigned char)start[len - 1]))
        len--;
    if (len == 0)
        return rm_fail(err, "%s: the token file is empty", path);
    if (len >= cap || len > RM_TOKEN_CAP - 1)
        return rm_fail(err, "%s: the token is longer than %zu characters", path, (cap < RM_TOKEN_CAP ? cap : RM_TOKEN_CAP) - 1);
    memcpy(out, start, len);
    out[len] = '\0';
    return RM_OK;
}

int rm_address_is_loopback(const char *address)
{
    if (strcmp(address, "localhost") == 0)
        return 1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, address, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, address, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return -1;
}

int rm_token_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned diff = (unsigned)(alen ^ blen);
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)a[i] ^ (unsigned char)b[i];
    return diff == 0;
}
