/* `ringmaster doctor CONFIG`: validates the config, writes the resolved
 * config where the ranks can read it, and runs ringmaster-doctor on the
 * job's worker count with the job's mpirun options. */
#include "doctor_cmd.h"

#include "config.h"
#include "fsutil.h"
#include "launcher.h"
#include "log.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SETS 64

static void usage(FILE *out)
{
    fprintf(out, "usage: ringmaster doctor CONFIG [--workers N] [--set section.key=value ...] [--run-dir DIR | --out FILE]\n"
                 "  measures storage, memory, sgemm, optimizer and all-reduce rates on the job's ranks, predicts\n"
                 "  the step time and names the bottleneck. It prints the report; the JSON report goes to --out\n"
                 "  FILE, or to RUN_DIR/doctor.json (where a later `ringmaster run --run-dir DIR` compares it\n"
                 "  with what it measures), and nowhere otherwise\n");
}

int rm_doctor_cmd_main(int argc, char **argv)
{
    const char *config = NULL, *run_dir = NULL, *out = NULL;
    char *sets[MAX_SETS + 1];
    char workers_set[64];
    int n_sets = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = !strcmp(a, "--set") || !strcmp(a, "--workers") || !strcmp(a, "--run-dir") || !strcmp(a, "--out");
        if (takes && !v) {
            rm_error_log("%s needs a value", a);
            return 2;
        }
        if (takes && n_sets >= MAX_SETS) {
            rm_error_log("too many options");
            return 2;
        }
        if (!strcmp(a, "--set")) {
            sets[n_sets++] = argv[++i];
        } else if (!strcmp(a, "--workers")) {
            snprintf(workers_set, sizeof workers_set, "launch.workers=%s", argv[++i]);
            sets[n_sets++] = workers_set;
        } else if (!strcmp(a, "--run-dir")) {
            run_dir = argv[++i];
        } else if (!strcmp(a, "--out")) {
            out = argv[++i];
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' || config) {
            rm_error_log("unexpected argument %s", a);
            usage(stderr);
            return 2;
        } else {
            config = a;
        }
    }
    if (!config) {
        usage(stderr);
        return 2;
    }
    rm_config cfg;
    rm_dataset_facts facts;
    rm_error err;
    if (rm_config_load(config, sets, n_sets, &cfg, &facts, &err) != RM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }

    /* Where the ranks read the resolved config: the run directory, or a
     * scratch directory removed afterwards. */
    char dir[PATH_MAX], cfg_path[PATH_MAX + 32], out_path[PATH_MAX + 32] = "";
    int scratch = 0;
    if (run_dir) {
        snprintf(dir, sizeof dir, "%s", run_dir);
        if (rm_private_dir(dir, &err) != RM_OK) {
            rm_error_log("%s", err.msg);
            return 1;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/ringmaster-doctor.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            rm_error_log("cannot create a scratch directory %s: %s", dir, strerror(errno));
            return 1;
        }
        scratch = 1;
    }
    snprintf(cfg_path, sizeof cfg_path, "%s/doctor-config.yaml", dir);
    if (out)
        snprintf(out_path, sizeof out_path, "%s", out);
    else if (run_dir)
        snprintf(out_path, sizeof out_path, "%s/doctor.json", dir);
    if (out_path[0] && out_path[0] != '/') { /* the ranks may start elsewhere */
        char cwd[PATH_MAX], joined[PATH_MAX + 32];
        if (getcwd(cwd, sizeof cwd)) {
            snprintf(joined, sizeof joined, "%s/%s", cwd, out_path);
            snprintf(out_path, sizeof out_path, "%s", joined);
        }
    }

    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) {
        rm_error_log("out of memory");
        return 1;
    }
    rm_config_write(&cfg, mem);
    fclose(mem);
    int rc = rm_write_file_atomic(cfg_path, text, len, &err);
    free(text);
    if (rc != RM_OK) {
        rm_error_log("%s", err.msg);
        return 1;
    }

    char exe[PATH_MAX], program[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        rm_error_log("cannot find the ringmaster executable's directory");
        return 1;
    }
    exe[n] = '\0';
    snprintf(program, sizeof program, "%s/ringmaster-doctor", dirname(exe));
    const char *args[] = {cfg_path, "--out", out_path};
    rm_launch_plan plan;
    if (rm_launch_plan_build_program(&plan, &cfg, cfg.workers + 1, program, args, out_path[0] ? 3 : 1, &err) !=
        RM_OK) {
        rm_error_log("%s", err.msg);
        return 1;
    }
    char *line = rm_launch_plan_format(&plan);
    printf("ringmaster: %s\n", line ? line : "(out of memory)");
    fflush(stdout);
    free(line);
    rm_launch_result res;
    rc = rm_launch_run(&plan, dir, NULL, 0, &res);
    rm_launch_plan_free(&plan);
    if (rc != 0)
        rm_error_log("doctor failed: %s", res.verdict);
    if (scratch) {
        unlink(cfg_path);
        rmdir(dir);
    }
    return rc == 0 ? 0 : 1;
}
