#include "roster.h"

#include "config.h"
#include "fsutil.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int rm_roster_init(rm_roster *r, int workers, rm_error *err)
{
    memset(r, 0, sizeof *r);
    r->workers = workers;
    r->info = calloc((size_t)workers, sizeof *r->info);
    return r->info ? RM_OK : rm_fail(err, "out of memory");
}

void rm_roster_free(rm_roster *r)
{
    free(r->info);
    r->info = NULL;
}

void rm_roster_heard(rm_roster *r, int w, double now_s, long progress)
{
    r->info[w].last_heard_s = now_s;
    if (progress > r->info[w].progress)
        r->info[w].progress = progress;
}

int rm_roster_one_host(const rm_roster *r)
{
    for (int w = 1; w < r->workers; w++)
        if (strcmp(r->info[w].host, r->info[0].host) != 0)
            return 0;
    return 1;
}

const char *rm_roster_name(const rm_roster *r, int w, char *buf, size_t cap)
{
    if (w < 0 || w >= r->workers)
        snprintf(buf, cap, "rank 0 (the coordinator)");
    else
        snprintf(buf, cap, "worker %d (rank %d, host %s, pid %d)", w, w + 1,
                 r->info[w].host[0] ? r->info[w].host : "?", r->info[w].pid);
    return buf;
}

void rm_roster_write_ranks(const rm_roster *r, const char *run_dir)
{
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/ranks.txt", run_dir);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        rm_warn("cannot write %s: out of memory", path);
        return;
    }
    fprintf(f, "0 coordinator %s %d\n", rm_log_host(), (int)getpid());
    for (int w = 0; w < r->workers; w++)
        fprintf(f, "%d %d %s %d\n", w + 1, w, r->info[w].host, r->info[w].pid);
    fclose(f);
    /* Replaced whole: a restart rewrites it while the launcher may read it. */
    rm_error err;
    if (rm_write_file_atomic(path, text, len, &err) != RM_OK)
        rm_warn("%s", err.msg);
    free(text);
}
