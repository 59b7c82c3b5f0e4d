#include "launcher.h"

#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int push(rm_launch_plan *p, const char *arg)
{
    char **grown = realloc(p->argv, (size_t)(p->argc + 2) * sizeof *grown);
    if (!grown)
        return RM_ERR;
    p->argv = grown;
    if (!(p->argv[p->argc] = strdup(arg)))
        return RM_ERR;
    p->argv[++p->argc] = NULL;
    return RM_OK;
}

/* Slots mpirun will offer: the Slurm allocation's task count inside a job,
 * else this machine's online cores. */
static long count_slots(int *in_slurm)
{
    const char *job = getenv("SLURM_JOB_ID");
    *in_slurm = job && *job;
    if (*in_slurm) {
        const char *ntasks = getenv("SLURM_NTASKS");
        if (!ntasks)
            ntasks = getenv("SLURM_NPROCS");
        if (ntasks && atol(ntasks) > 0)
            return atol(ntasks);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? cores : 1;
}

int rm_launch_plan_build(rm_launch_plan *plan, const rm_config *cfg, const char *bin_dir, const char *config_path,
                         rm_error *err)
{
    memset(plan, 0, sizeof *plan);
    char coordinator[RM_PATH_CAP + 64], worker[RM_PATH_CAP + 64], np[32];
    snprintf(coordinator, sizeof coordinator, "%s/ringmaster-coordinator", bin_dir);
    snprintf(worker, sizeof worker, "%s/ringmaster-worker", bin_dir);
    if (access(coordinator, X_OK) != 0 || access(worker, X_OK) != 0)
        return rm_fail(err, "cannot find ringmaster-coordinator and ringmaster-worker next to ringmaster in %s",
                       bin_dir);
    plan->slots = count_slots(&plan->in_slurm);
    long ranks = cfg->workers + 1;
    int ok = push(plan, cfg->mpirun);
    /* Open MPI refuses root unless told; containers and CI run as root. */
    if (geteuid() == 0)
        ok |= push(plan, "--allow-run-as-root");
    if (ranks > plan->slots) {
        /* The coordinator sleeps between messages, so one more rank than
         * cores costs little; without binding the kernel spreads them. */
        plan->oversubscribed = 1;
        ok |= push(plan, "--oversubscribe");
        ok |= push(plan, "--bind-to");
        ok |= push(plan, "none");
    }
    ok |= push(plan, "-x");
    ok |= push(plan, "RINGMASTER_TTY");
    snprintf(np, sizeof np, "%ld", cfg->workers);
    const char *tail[] = {"-np", "1", coordinator, config_path, ":", "-np", np, worker, config_path};
    for (size_t i = 0; i < sizeof tail / sizeof tail[0]; i++)
        ok |= push(plan, tail[i]);
    if (ok != RM_OK) {
        rm_launch_plan_free(plan);
        return rm_fail(err, "out of memory");
    }
    return RM_OK;
}

void rm_launch_plan_free(rm_launch_plan *plan)
{
    for (int i = 0; i < plan->argc; i++)
        free(plan->argv[i]);
    free(plan->argv);
    memset(plan, 0, sizeof *plan);
}

char *rm_launch_plan_format(const rm_launch_plan *plan)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    for (int i = 0; i < plan->argc; i++) {
        const char *a = plan->argv[i];
        if (i)
            fputc(' ', f);
        if (a[strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./:=,+@")] == '\0' && *a) {
            fputs(a, f);
        } else {
            fputc('\'', f);
            for (; *a; a++)
                a[0] == '\'' ? fputs("'\\''", f) : fputc(*a, f);
            fputc('\'', f);
        }
    }
    fclose(f);
    return text;
}

static pid_t child_pid;
static volatile sig_atomic_t stop_signal;

/* SIGTERM and SIGUSR1 (Slurm's warning before the time limit) become
 * SIGUSR1 to mpirun, which passes it to every rank: the coordinator then
 * checkpoints at the next step boundary and stops with RM_EXIT_REQUEUE.
 * SIGINT reaches mpirun from the terminal by itself. Either way the
 * supervisor does not restart. */
static void on_signal(int sig)
{
    stop_signal = sig;
    if (sig != SIGINT && child_pid > 0)
        kill(child_pid, SIGUSR1);
}

int rm_launch_stop_signal(void)
{
    return stop_signal;
}

void rm_launch_install_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* mpirun names the rank that died in a line such as
 * "mpirun noticed that process rank 2 with PID 123 on node n1 exited on
 * signal 9 (Killed)." Rank 0 is the coordinator, rank r the worker r-1. */
static int pid_of_rank(const char *run_dir, int rank)
{
    char path[4096], line[512];
    snprintf(path, sizeof path, "%s/ranks.txt", run_dir);
    FILE *f = fopen(path, "r");
    int pid = -1;
    while (f && fgets(line, sizeof line, f)) {
        int r, p;
        char role[32], host[256];
        if (sscanf(line, "%d %31s %255s %d", &r, role, host, &p) == 4 && r == rank)
            pid = p;
    }
    if (f)
        fclose(f);
    return pid;
}

static void explain_line(const char *line, const char *run_dir, char *verdict, size_t cap)
{
    const char *p = strstr(line, "noticed that process rank");
    if (!p)
        return;
    int rank = -1, pid = -1;
    char node[128] = "?", rest[256] = "";
    if (sscanf(p, "noticed that process rank %d with PID %d on node %127s %255[^\n]", &rank, &pid, node, rest) < 3)
        return;
    if (pid <= 0) /* some mpirun versions print PID 0 */
        pid = pid_of_rank(run_dir, rank);
    char who[64];
    if (rank == 0)
        snprintf(who, sizeof who, "the coordinator (rank 0");
    else
        snprintf(who, sizeof who, "worker %d (rank %d", rank - 1, rank);
    snprintf(verdict, cap, "%s, pid %d, host %s) %s", who, pid, node, rest);
}

int rm_launch_run(const rm_launch_plan *plan, const char *run_dir, char *verdict, size_t verdict_cap)
{
    int pipefd[2];
    if (pipe(pipefd) != 0) {
        rm_error_log("cannot create a pipe: %s", strerror(errno));
        return 1;
    }
    fflush(stdout);
    fflush(stderr);
    child_pid = fork();
    if (child_pid < 0) {
        rm_error_log("cannot fork: %s", strerror(errno));
        return 1;
    }
    if (child_pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], STDERR_FILENO);
        close(pipefd[1]);
        execvp(plan->argv[0], plan->argv);
        fprintf(stderr, "ringmaster: cannot run %s: %s\n", plan->argv[0], strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    if (stop_signal && stop_signal != SIGINT) /* arrived between attempts or before the fork */
        kill(child_pid, SIGUSR1);

    /* Pass mpirun's stderr through as it comes (progress lines are redrawn
     * with \r, not ended), and look at whole lines for mpirun's verdict. */
    verdict[0] = '\0';
    char line[4096];
    size_t line_len = 0;
    char chunk[4096];
    for (;;) {
        ssize_t n = read(pipefd[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        fwrite(chunk, 1, (size_t)n, stderr);
        fflush(stderr);
        for (ssize_t i = 0; i < n; i++) {
            if (chunk[i] == '\n' || line_len == sizeof line - 1) {
                line[line_len] = '\0';
                explain_line(line, run_dir, verdict, verdict_cap);
                line_len = 0;
            } else {
                line[line_len++] = chunk[i];
            }
        }
    }
    close(pipefd[0]);
    int status = 0;
    while (waitpid(child_pid, &status, 0) < 0 && errno == EINTR)
        ;
    child_pid = 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && !verdict[0])
        snprintf(verdict, verdict_cap, "mpirun exited with status %d", code);
    return code;
}

int rm_launch_plan_build_program(rm_launch_plan *plan, const rm_config *cfg, long ranks, const char *program,
                                 const char *const *args, int n_args, rm_error *err)
{
    memset(plan, 0, sizeof *plan);
    if (access(program, X_OK) != 0)
        return rm_fail(err, "cannot find %s (it is installed next to ringmaster)", program);
    plan->slots = count_slots(&plan->in_slurm);
    int ok = push(plan, cfg->mpirun);
    if (geteuid() == 0)
        ok |= push(plan, "--allow-run-as-root");
    if (ranks > plan->slots) {
        plan->oversubscribed = 1;
        ok |= push(plan, "--oversubscribe");
        ok |= push(plan, "--bind-to");
        ok |= push(plan, "none");
    }
    char np[32];
    snprintf(np, sizeof np, "%ld", ranks);
    ok |= push(plan, "-np");
    ok |= push(plan, np);
    ok |= push(plan, program);
    for (int i = 0; i < n_args; i++)
        ok |= push(plan, args[i]);
    if (ok != RM_OK) {
        rm_launch_plan_free(plan);
        return rm_fail(err, "out of memory");
    }
    return RM_OK;
}
