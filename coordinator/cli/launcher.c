#include "launcher.h"

#include "fsutil.h"
#include "log.h"
#include "protocol.h"
#include "timer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

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

int rm_hostfile_read(const char *path, rm_hostfile *hf, rm_error *err)
{
    memset(hf, 0, sizeof *hf);
    FILE *f = fopen(path, "r");
    if (!f)
        return rm_fail_errno(err, errno, "launch.hostfile %s: cannot open", path);
    char line[1024];
    int lineno = 0, rc = RM_OK;
    while (rc == RM_OK && fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char host[256];
        if (sscanf(line, "%255s", host) != 1)
            continue;
        if (hf->n == RM_HOSTFILE_MAX) {
            rc = rm_fail(err, "%s:%d: more than %d hosts", path, lineno, RM_HOSTFILE_MAX);
            break;
        }
        long slots = 1;
        const char *sl = strstr(line, "slots=");
        if (sl && (sscanf(sl, "slots=%ld", &slots) != 1 || slots < 1)) {
            rc = rm_fail(err, "%s:%d: slots= needs a positive number", path, lineno);
            break;
        }
        snprintf(hf->host[hf->n], sizeof hf->host[0], "%s", host);
        hf->slots[hf->n++] = slots;
    }
    fclose(f);
    if (rc == RM_OK && hf->n == 0)
        rc = rm_fail(err, "launch.hostfile %s names no host", path);
    return rc;
}

int rm_hostfile_write(const char *path, const rm_hostfile *hf, rm_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return rm_fail(err, "out of memory");
    for (int i = 0; i < hf->n; i++)
        fprintf(f, "%s slots=%ld\n", hf->host[i], hf->slots[i]);
    fclose(f);
    int rc = rm_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

long rm_hostfile_slots(const rm_hostfile *hf)
{
    long n = 0;
    for (int i = 0; i < hf->n; i++)
        n += hf->slots[i];
    return n;
}

int rm_hostfile_remove(rm_hostfile *hf, const char *host)
{
    for (int i = 0; i < hf->n; i++)
        if (strcmp(hf->host[i], host) == 0) {
            memmove(hf->host[i], hf->host[i + 1], (size_t)(hf->n - i - 1) * sizeof hf->host[0]);
            memmove(&hf->slots[i], &hf->slots[i + 1], (size_t)(hf->n - i - 1) * sizeof hf->slots[0]);
            hf->n--;
            return 1;
        }
    return 0;
}

/* The host names `cmd` (an scontrol show hostnames line) prints, into hf
 * (emptied first); its exit status as pclose gives it, -1 if it cannot run. */
static int slurm_hostnames(const char *cmd, rm_hostfile *hf)
{
    memset(hf, 0, sizeof *hf);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char host[256];
    while (hf->n < RM_HOSTFILE_MAX && fscanf(p, "%255s", host) == 1)
        snprintf(hf->host[hf->n++], sizeof hf->host[0], "%s", host);
    return pclose(p);
}

int rm_hostfile_from_slurm(rm_hostfile *hf, rm_error *err)
{
    memset(hf, 0, sizeof *hf);
    const char *job = getenv("SLURM_JOB_ID"), *nodes = getenv("SLURM_JOB_NUM_NODES");
    const char *tasks = getenv("SLURM_TASKS_PER_NODE");
    if (!job || !*job || !nodes || atol(nodes) < 2)
        return 0;
    if (!tasks || !*tasks || !getenv("SLURM_JOB_NODELIST"))
        return rm_fail(err, "Slurm job %s: SLURM_JOB_NODELIST or SLURM_TASKS_PER_NODE is not set", job);
    /* with no argument scontrol expands SLURM_JOB_NODELIST */
    int status = slurm_hostnames("scontrol show hostnames", hf);
    if (status != 0 || hf->n != atol(nodes))
        return rm_fail(err, "Slurm job %s: scontrol show hostnames listed %d of its %s nodes (exit status %d)", job,
                       hf->n, nodes, status);
    /* "2(x3),1": 2 tasks on each of 3 nodes, then 1 */
    int at = 0;
    for (const char *t = tasks; *t;) {
        long n = 0, times = 1;
        int used = 0;
        if (sscanf(t, "%ld%n", &n, &used) != 1 || n < 1)
            break;
        t += used;
        if (sscanf(t, "(x%ld)%n", &times, &used) == 1)
            t += used;
        for (long i = 0; i < times && at < hf->n; i++)
            hf->slots[at++] = n;
        if (*t == ',')
            t++;
    }
    if (at != hf->n)
        return rm_fail(err, "Slurm job %s: SLURM_TASKS_PER_NODE=%s does not give tasks to each of its %d nodes", job,
                       tasks, hf->n);
    return 1;
}

/* --hostfile and the interface between hosts: what a user launching
 * across hosts by hand would write. The slots are the hostfile's. */
static int push_hosts(rm_launch_plan *plan, const rm_config *cfg, rm_error *err)
{
    int ok = RM_OK;
    if (cfg->hostfile[0]) {
        rm_hostfile *hf = malloc(sizeof *hf);
        if (!hf)
            return rm_fail(err, "out of memory");
        if (rm_hostfile_read(cfg->hostfile, hf, err) != RM_OK) {
            free(hf);
            return RM_ERR;
        }
        plan->slots = rm_hostfile_slots(hf);
        plan->in_slurm = 0;
        free(hf);
        ok |= push(plan, "--hostfile");
        ok |= push(plan, cfg->hostfile);
    }
    if (cfg->hostfile[0] || plan->in_slurm) {
        /* A host that dies without closing its connections (power, kernel,
         * network) is noticed by TCP keepalive only: Open MPI's default
         * (300 s idle, then 9 probes 20 s apart) leaves mpirun, and the
         * daemons of a dead mpirun's host, waiting 8 minutes. Within
         * about 3/4 of fault.hang_timeout_s, a lost daemon is named by
         * mpirun before the ranks give up on their own, and daemons whose
         * mpirun died end with their ranks instead of staying behind. */
        long idle_s = (long)(cfg->hang_timeout_s / 4 + 0.5), interval_s = (long)(cfg->hang_timeout_s / 8 + 0.5);
        char idle[32], interval[32];
        snprintf(idle, sizeof idle, "%ld", idle_s > 1 ? idle_s : 1);
        snprintf(interval, sizeof interval, "%ld", interval_s > 1 ? interval_s : 1);
        const char *args[] = {"--mca", "oob_tcp_keepalive_time", idle,      "--mca", "oob_tcp_keepalive_intvl",
                              interval, "--mca", "oob_tcp_keepalive_probes", "4"};
        for (size_t i = 0; i < sizeof args / sizeof args[0]; i++)
            ok |= push(plan, args[i]);
    }
    if (cfg->network_interface[0]) {
        char nccl[RM_NAME_CAP + 32];
        snprintf(nccl, sizeof nccl, "NCCL_SOCKET_IFNAME=%s", cfg->network_interface);
        const char *args[] = {"--mca", "btl_tcp_if_include", cfg->network_interface, "--mca", "oob_tcp_if_include",
                              cfg->network_interface, "-x", nccl};
        for (size_t i = 0; i < sizeof args / sizeof args[0]; i++)
            ok |= push(plan, args[i]);
    }
    /* NCCL's settings in this environment (NCCL_IB_HCA, NCCL_DEBUG, ...)
     * reach every rank, in name order so the line is the same each run. */
    extern char **environ;
    char **names = NULL;
    size_t n_names = 0;
    for (char **e = environ; *e && ok == RM_OK; e++) {
        const char *eq = strchr(*e, '=');
        if (strncmp(*e, "NCCL_", 5) != 0 || !eq)
            continue;
        if (cfg->network_interface[0] && strncmp(*e, "NCCL_SOCKET_IFNAME=", 19) == 0)
            continue; /* launch.network_interface's, above */
        char **grown = realloc(names, (n_names + 1) * sizeof *grown);
        if (!grown || !(grown[n_names] = strndup(*e, (size_t)(eq - *e)))) {
            names = grown ? grown : names;
            ok = RM_ERR;
            break;
        }
        names = grown;
        n_names++;
    }
    if (n_names > 1)
        qsort(names, n_names, sizeof *names, compare_names);
    for (size_t i = 0; i < n_names; i++) {
        if (ok == RM_OK)
            ok |= push(plan, "-x");
        if (ok == RM_OK)
            ok |= push(plan, names[i]);
        free(names[i]);
    }
    free(names);
    return ok == RM_OK ? RM_OK : rm_fail(err, "out of memory");
}

/* launch.coordinator_host: rank 0 on that host of the hostfile, the
 * workers on every other slot (`--host` per program, as a user places
 * MPMD programs by hand). *coord is "" when the coordinator takes mpirun's
 * first slot: no coordinator_host, or a host the supervisor has dropped
 * from the live hostfile (then a warning says so). */
static int place_coordinator(const rm_config *cfg, char *coord, size_t coord_cap, char **workers, rm_error *err)
{
    *coord = '\0';
    *workers = NULL;
    if (!cfg->coordinator_host[0] || !cfg->hostfile[0])
        return RM_OK;
    rm_hostfile *hf = malloc(sizeof *hf);
    if (!hf)
        return rm_fail(err, "out of memory");
    if (rm_hostfile_read(cfg->hostfile, hf, err) != RM_OK) {
        free(hf);
        return RM_ERR;
    }
    int at = -1;
    for (int i = 0; i < hf->n; i++)
        if (strcmp(hf->host[i], cfg->coordinator_host) == 0)
            at = i;
    if (at < 0) {
        rm_warn("launch.coordinator_host %s is not in %s (a host lost and left out?): the coordinator takes the "
                "first slot",
                cfg->coordinator_host, cfg->hostfile);
        free(hf);
        return RM_OK;
    }
    size_t cap = (size_t)hf->n * 280 + 1, len = 0;
    char *list = malloc(cap);
    if (!list) {
        free(hf);
        return rm_fail(err, "out of memory");
    }
    list[0] = '\0';
    for (int i = 0; i < hf->n; i++) {
        long slots = hf->slots[i] - (i == at);
        if (slots > 0)
            len += (size_t)snprintf(list + len, cap - len, "%s%s:%ld", len ? "," : "", hf->host[i], slots);
    }
    free(hf);
    if (!len) {
        free(list);
        return rm_fail(err, "%s: no slot is left for a worker once the coordinator takes one on %s",
                       cfg->hostfile, cfg->coordinator_host);
    }
    snprintf(coord, coord_cap, "%s", cfg->coordinator_host);
    *workers = list;
    return RM_OK;
}

int rm_launch_plan_build(rm_launch_plan *plan, const rm_config *cfg, const char *bin_dir, const char *config_path,
                         const char *const *rank_sets, int n_rank_sets, rm_error *err)
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
    if (ok != RM_OK || push_hosts(plan, cfg, err) != RM_OK) {
        rm_launch_plan_free(plan);
        return ok != RM_OK ? rm_fail(err, "out of memory") : RM_ERR;
    }
    if (ranks > plan->slots) {
        /* The coordinator sleeps between messages, so one more rank than
         * cores costs little; without binding the kernel spreads them. */
        plan->oversubscribed = 1;
        ok |= push(plan, "--oversubscribe");
        ok |= push(plan, "--bind-to");
        ok |= push(plan, "none");
    }
    /* the progress display's terminal, and the run lock the coordinator
     * checks it was launched under */
    ok |= push(plan, "-x");
    ok |= push(plan, "RINGMASTER_TTY");
    ok |= push(plan, "-x");
    ok |= push(plan, "RINGMASTER_RUN_LOCK");
    snprintf(np, sizeof np, "%ld", cfg->workers);
    char coord_host[RM_NAME_CAP];
    char *worker_hosts;
    if (ok != RM_OK || place_coordinator(cfg, coord_host, sizeof coord_host, &worker_hosts, err) != RM_OK) {
        rm_launch_plan_free(plan);
        return ok != RM_OK ? rm_fail(err, "out of memory") : RM_ERR;
    }
    const char *const programs[] = {coordinator, worker};
    const char *const hosts[] = {coord_host, worker_hosts};
    for (int p = 0; p < 2; p++) {
        if (p)
            ok |= push(plan, ":");
        ok |= push(plan, "-np");
        ok |= push(plan, p ? np : "1");
        if (coord_host[0]) {
            ok |= push(plan, "--host");
            ok |= push(plan, hosts[p]);
        }
        ok |= push(plan, programs[p]);
        ok |= push(plan, config_path);
        for (int i = 0; i < n_rank_sets; i++) {
            ok |= push(plan, "--set");
            ok |= push(plan, rank_sets[i]);
        }
    }
    free(worker_hosts);
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

char *rm_shell_join(char *const *argv, int argc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
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

char *rm_launch_plan_format(const rm_launch_plan *plan)
{
    return rm_shell_join(plan->argv, plan->argc);
}

static pid_t child_pid;
static volatile sig_atomic_t stop_kind;   /* RM_STOP_* of the first stop signal */
static volatile sig_atomic_t stop_signal; /* ... and the signal itself */
static volatile sig_atomic_t interrupts;  /* Ctrl-Cs so far */
static int wake_pipe[2] = {-1, -1};      /* the handler wakes the run loop through it */

/* SIGINT (Ctrl-C) asks for a stop at the next step boundary with exit 130,
 * SIGTERM and SIGUSR1 (Slurm's warning, a user's kill) for the same with
 * exit 75 (requeue). mpirun runs in its own process group, so a terminal's
 * Ctrl-C reaches only this process, and the run loop passes the request on
 * as a signal mpirun forwards to every rank: SIGUSR2 for an interrupt,
 * SIGUSR1 for a requeue (the coordinator acts on them, the workers ignore
 * them). A second Ctrl-C ends the job at once. */
static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGINT)
        interrupts++;
    if (!stop_kind) {
        stop_kind = sig == SIGINT ? RM_STOP_INTERRUPT : RM_STOP_REQUEUE;
        stop_signal = sig;
    }
    if (wake_pipe[1] >= 0 && write(wake_pipe[1], "!", 1) < 0) {
        /* full: the loop is awake already */
    }
    errno = saved;
}

int rm_launch_stop_kind(void)
{
    return stop_kind;
}

int rm_launch_stop_signal(void)
{
    return stop_signal;
}

void rm_launch_install_signals(void)
{
    if (wake_pipe[0] < 0 && pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        wake_pipe[0] = wake_pipe[1] = -1;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
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

/* "worker 1 (rank 2), ..." for the ranks ranks.txt places on host. */
static void ranks_on_host(const char *run_dir, const char *host, char *out, size_t cap)
{
    char path[4096], line[512];
    snprintf(path, sizeof path, "%s/ranks.txt", run_dir);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        int r, p;
        char role[32], h[256];
        if (sscanf(line, "%d %31s %255s %d", &r, role, h, &p) != 4 || strcmp(h, host) != 0)
            continue;
        size_t at = strlen(out);
        if (r == 0)
            snprintf(out + at, cap - at, "%sthe coordinator (rank 0)", at ? ", " : "");
        else
            snprintf(out + at, cap - at, "%sworker %d (rank %d)", at ? ", " : "", r - 1, r);
    }
    if (f)
        fclose(f);
}

/* Open MPI's "ORTE has lost communication with a remote daemon" notice
 * names the host in "  Remote daemon: [[11090,0],1] on node n1": the host
 * died or its network went down. That verdict stands over the ranks'
 * own deaths that follow from it. */
static int explain_lost_host(const char *line, const char *run_dir, char *lost, char *verdict, size_t cap)
{
    const char *p = strstr(line, "Remote daemon:");
    const char *on = p ? strstr(p, " on node ") : NULL;
    if (!on || lost[0])
        return lost[0] != 0;
    char host[256];
    if (sscanf(on, " on node %255s", host) != 1)
        return 0;
    snprintf(lost, 256, "%s", host);
    char ranks[256];
    ranks_on_host(run_dir, host, ranks, sizeof ranks);
    snprintf(verdict, cap, "host %s was lost: mpirun lost its daemon there (it ran %s); the host died or its network "
             "is down", host, ranks[0] ? ranks : "no rank yet");
    return 1;
}

/* The coordinator's hang watch found a host cut off (its workers silent,
 * the host not answering): "hang: host n2 is unreachable: ...". mpirun
 * knows nothing yet (its daemon there is silent, not gone): the host is
 * lost as surely as one that died. */
static int explain_unreachable_host(const char *line, char *lost, char *verdict, size_t cap)
{
    const char *p = strstr(line, "hang: host ");
    char host[256];
    int end = 0;
    if (!p || lost[0] || sscanf(p, "hang: host %255[^ ]%n", host, &end) != 1 ||
        strncmp(p + end, RM_VERDICT_UNREACHABLE, strlen(RM_VERDICT_UNREACHABLE)) != 0)
        return 0;
    snprintf(lost, 256, "%s", host);
    snprintf(verdict, cap, "%s", p);
    return 1;
}

/* The nodes Slurm now gives job `job` (scontrol's NodeList, expanded), into
 * hf; RM_ERR when Slurm cannot say. */
static int slurm_job_nodes(const char *job, rm_hostfile *hf)
{
    char cmd[128], line[4096], list[2048] = "";
    snprintf(cmd, sizeof cmd, "scontrol show job %s 2>/dev/null", job);
    FILE *p = popen(cmd, "r");
    if (!p)
        return RM_ERR;
    while (fgets(line, sizeof line, p)) {
        const char *at = strstr(line, " NodeList=");
        if (at && !list[0])
            sscanf(at, " NodeList=%2047s", list);
    }
    const char *hostlist_chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.,[]";
    if (pclose(p) != 0 || !list[0] || list[strspn(list, hostlist_chars)])
        return RM_ERR;
    /* list holds only the characters of a Slurm host list (checked above) */
    char expand[sizeof list + 64];
    snprintf(expand, sizeof expand, "scontrol show hostnames '%s' 2>/dev/null", list);
    return slurm_hostnames(expand, hf) == 0 && hf->n > 0 ? RM_OK : RM_ERR;
}

int rm_launch_slurm_lost(const rm_hostfile *hosts, const char *run_dir, rm_launch_result *res)
{
    const char *job = getenv("SLURM_JOB_ID");
    if (!hosts || !job || !*job || job[strspn(job, "0123456789_")] || strlen(job) > 32)
        return 0;
    rm_hostfile *now = malloc(sizeof *now);
    if (!now || slurm_job_nodes(job, now) != RM_OK) {
        free(now);
        return 0;
    }
    int found = 0;
    for (int i = 0; i < hosts->n && !found; i++) {
        int kept = 0;
        for (int j = 0; j < now->n && !kept; j++)
            kept = strcmp(now->host[j], hosts->host[i]) == 0;
        if (kept)
            continue;
        found = 1;
        snprintf(res->lost_host, sizeof res->lost_host, "%s", hosts->host[i]);
        char ranks[256];
        ranks_on_host(run_dir, res->lost_host, ranks, sizeof ranks);
        snprintf(res->verdict, sizeof res->verdict,
                 "host %s was lost: Slurm took it out of job %s (it ran %s); the node failed or was set DOWN",
                 res->lost_host, job, ranks[0] ? ranks : "no rank yet");
    }
    free(now);
    return found;
}

static void explain_line(const char *line, const char *run_dir, char *lost, char *verdict, size_t cap)
{
    if (explain_unreachable_host(line, lost, verdict, cap) || explain_lost_host(line, run_dir, lost, verdict, cap))
        return;
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

/* Open MPI's boxed notices ("-----" lines around them) that say what the
 * supervisor says better in its own verdict: they are not passed on. Any
 * other box is. */
static int boilerplate_box(const char *box)
{
    static const char *const known[] = {
        "MPI_ABORT was invoked on rank",
        "Primary job  terminated normally, but",
        "mpirun detected that one or more processes exited with non-zero status",
        "mpirun noticed that process rank",
        "mpirun has exited due to process rank",
        "ORTE has lost communication with a remote daemon",
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strstr(box, known[i]))
            return 1;
    return 0;
}

static int boilerplate_line(const char *line)
{
    return strstr(line, "more processes have sent help message") ||
           strstr(line, "more process has sent help message") ||
           strstr(line, "Set MCA parameter \"orte_base_help_aggregate\" to 0") ||
           strncmp(line, "mpirun: Forwarding signal", 25) == 0; /* the stop request ringmaster run sent */
}

/* mpirun's stderr on its way to ours: passed through as it comes (progress
 * lines are redrawn with \r, not ended), whole lines looked at for the
 * verdict, Open MPI's known notices held back and dropped. */
typedef struct stderr_filter {
    const char *run_dir;
    char *verdict;
    size_t verdict_cap;
    char *lost_host; /* 256 bytes */
    int hang_named;  /* the coordinator's hang watch stopped the job */
    char line[4096];
    size_t line_len, line_shown; /* bytes of the current line, and how many of them went out */
    int holding;                 /* inside a notice: its lines are held back */
    int box_seps;                /* separators seen in it */
    char *box;                   /* the notice held back */
    size_t box_len, box_cap;
} stderr_filter;

static int separator(const char *line, size_t len)
{
    if (len < 20)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (line[i] != '-')
            return 0;
    return 1;
}

static void hold(stderr_filter *f, const char *text, size_t len)
{
    if (f->box_len + len + 1 > f->box_cap) {
        size_t cap = (f->box_len + len + 1) * 2;
        char *grown = realloc(f->box, cap);
        if (!grown)
            return;
        f->box = grown;
        f->box_cap = cap;
    }
    memcpy(f->box + f->box_len, text, len);
    f->box_len += len;
    f->box[f->box_len] = '\0';
}

static void release_box(stderr_filter *f, int show)
{
    if (show && f->box_len)
        fwrite(f->box, 1, f->box_len, stderr);
    f->box_len = 0;
    f->holding = 0;
}

/* A line is complete (ended: by its newline, else it was too long). */
static void filter_line_done(stderr_filter *f, int ended)
{
    f->line[f->line_len] = '\0';
    explain_line(f->line, f->run_dir, f->lost_host, f->verdict, f->verdict_cap);
    f->hang_named |= strstr(f->line, "error: hang: ") != NULL;
    int sep = ended && separator(f->line, f->line_len);
    if (f->holding) {
        hold(f, f->line, f->line_len);
        hold(f, "\n", ended);
        /* a box ends at its second separator; a very long one is shown */
        if ((sep && f->box_seps++ >= 1) || f->box_len > 16384)
            release_box(f, f->box_len > 16384 || !boilerplate_box(f->box));
    } else if (sep) {
        f->holding = 1;
        f->box_seps = 1;
        f->box_len = 0;
        hold(f, f->line, f->line_len);
        hold(f, "\n", 1);
    } else if (boilerplate_line(f->line)) {
        /* dropped */
    } else {
        fwrite(f->line + f->line_shown, 1, f->line_len - f->line_shown, stderr);
        if (ended)
            fputc('\n', stderr);
    }
    f->line_len = f->line_shown = 0;
}

static void filter_feed(stderr_filter *f, const char *chunk, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (chunk[i] == '\n') {
            filter_line_done(f, 1);
            continue;
        }
        if (chunk[i] == '\r' && !f->holding) { /* a progress bar redrawn: no notice in it */
            fwrite(f->line + f->line_shown, 1, f->line_len - f->line_shown, stderr);
            fputc('\r', stderr);
            f->line_len = f->line_shown = 0;
            continue;
        }
        if (f->line_len == sizeof f->line - 1)
            filter_line_done(f, 0);
        f->line[f->line_len++] = chunk[i];
    }
    /* what may not be part of a notice goes out now: a line that starts
     * with anything but '-' outside a box, e.g. a progress bar's redraw */
    if (!f->holding && f->line_len > f->line_shown && f->line[0] != '-') {
        fwrite(f->line + f->line_shown, 1, f->line_len - f->line_shown, stderr);
        f->line_shown = f->line_len;
    }
    fflush(stderr);
}

static void filter_finish(stderr_filter *f)
{
    if (f->line_len)
        filter_line_done(f, 0);
    release_box(f, 1); /* an unfinished box is not a known notice */
    free(f->box);
    fflush(stderr);
}

/* The job got past its handshake: the coordinator wrote ranks.txt anew
 * (rank 0 and every worker have their signal handling in place by then). */
typedef struct file_stamp {
    int exists;
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
} file_stamp;

static file_stamp stamp_of(const char *path)
{
    file_stamp s = {0};
    struct stat st;
    if (stat(path, &st) == 0) {
        s.exists = 1;
        s.dev = st.st_dev;
        s.ino = st.st_ino;
        s.mtime = st.st_mtim;
    }
    return s;
}

static int stamp_changed(const file_stamp *before, const char *path)
{
    file_stamp now = stamp_of(path);
    return now.exists && (!before->exists || now.dev != before->dev || now.ino != before->ino ||
                          now.mtime.tv_sec != before->mtime.tv_sec || now.mtime.tv_nsec != before->mtime.tv_nsec);
}

/* The child: mpirun in a process group of its own (a terminal's Ctrl-C is
 * for ringmaster run alone), reading nothing from the terminal, allowed to
 * write to it from the background, and ended if ringmaster run dies. */
static void exec_mpirun(const rm_launch_plan *plan, int err_fd)
{
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) /* the parent died before prctl */
        _exit(127);
    signal(SIGTTOU, SIG_IGN);
    signal(SIGTTIN, SIG_IGN);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd >= 0) {
        dup2(null_fd, STDIN_FILENO);
        close(null_fd);
    }
    dup2(err_fd, STDERR_FILENO);
    close(err_fd);
    execvp(plan->argv[0], plan->argv);
    fprintf(stderr, "ringmaster: cannot run %s: %s\n", plan->argv[0], strerror(errno));
    _exit(127);
}

/* SIGKILL to pid's children (mpirun's remote shells and local ranks). */
static void kill_children(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "r");
    int child;
    while (f && fscanf(f, "%d", &child) == 1)
        if (child > 0)
            kill(child, SIGKILL);
    if (f)
        fclose(f);
}

int rm_launch_run(const rm_launch_plan *plan, const char *run_dir, const rm_run_lock *const *locks, int n_locks,
                  rm_launch_result *res)
{
    memset(res, 0, sizeof *res);
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        rm_error_log("cannot create a pipe: %s", strerror(errno));
        return res->status = 1;
    }
    char ranks_path[4096];
    snprintf(ranks_path, sizeof ranks_path, "%s/ranks.txt", run_dir);
    file_stamp before = stamp_of(ranks_path);
    if (stop_kind) { /* asked to stop before the job was launched */
        close(pipefd[0]);
        close(pipefd[1]);
        snprintf(res->verdict, sizeof res->verdict, "stopped before the job was launched");
        return res->status = 128 + stop_signal;
    }
    fflush(stdout);
    fflush(stderr);
    child_pid = fork();
    if (child_pid < 0) {
        rm_error_log("cannot fork: %s", strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        return res->status = 1;
    }
    if (child_pid == 0) {
        close(pipefd[0]);
        exec_mpirun(plan, pipefd[1]);
    }
    setpgid(child_pid, child_pid); /* either side may get there first */
    close(pipefd[1]);

    stderr_filter filter = {.run_dir = run_dir, .verdict = res->verdict, .verdict_cap = sizeof res->verdict,
                            .lost_host = res->lost_host};
    int forwarded = 0, interrupts_acted = 0, lock_acted = 0, lost_acted = 0, status = 0, reaped = 0;
    double lost_named_s = 0;
    char chunk[4096];
    for (;;) {
        /* A host that is cut off, not dead, keeps mpirun waiting for its
         * ranks to end, and its remote shell there open (holding our pipe):
         * once the host is named, mpirun gets a few seconds to end the job,
         * then it and its remote shells are killed, and its exit is the
         * end (nothing more comes from the host). After a hang that names
         * no host, mpirun gets longer (a host may still be out of reach). */
        if ((res->lost_host[0] || filter.hang_named) && !lost_acted) {
            double now = rm_now_s();
            if (lost_named_s == 0)
                lost_named_s = now;
            if (now - lost_named_s > (res->lost_host[0] ? 3.0 : 15.0)) {
                if (res->lost_host[0])
                    rm_warn("host %s is lost and mpirun is still waiting for it: ending the job", res->lost_host);
                else
                    rm_warn("the job hung and mpirun has not ended it in 15 s: ending it");
                kill_children(child_pid);
                kill(-child_pid, SIGKILL);
                lost_acted = 1;
            }
        }
        if (lost_acted && waitpid(child_pid, &status, WNOHANG) == child_pid) {
            reaped = 1;
            break;
        }
        /* a stop goes to the ranks once they can take it; before that there
         * is nothing to checkpoint and mpirun ends them */
        if (!res->started)
            res->started = stamp_changed(&before, ranks_path);
        if (stop_kind && !forwarded) {
            const char *name = stop_signal == SIGINT ? "Ctrl-C" : stop_signal == SIGTERM ? "SIGTERM" : "SIGUSR1";
            if (isatty(STDERR_FILENO))
                fputc('\n', stderr); /* off the progress bar's line */
            if (res->started) {
                kill(child_pid, stop_kind == RM_STOP_INTERRUPT ? SIGUSR2 : SIGUSR1);
                res->stop_forwarded = 1;
                rm_info("%s: checkpointing at the next step boundary, then stopping%s", name,
                        stop_kind == RM_STOP_INTERRUPT ? " (Ctrl-C again stops at once)" : "");
            } else {
                kill(child_pid, SIGTERM);
                res->stopped_at_once = 1;
                rm_info("%s: the job has not started training: ending it", name);
            }
            forwarded = 1;
        }
        /* Ctrl-C while already stopping: mpirun's own interrupt ends every
         * rank now; one more kills mpirun's process group */
        int at_once = interrupts - (stop_signal == SIGINT ? 1 : 0);
        if (forwarded && at_once > interrupts_acted) {
            kill(interrupts_acted == 0 ? child_pid : -child_pid, interrupts_acted == 0 ? SIGINT : SIGKILL);
            if (interrupts_acted == 0)
                rm_warn("Ctrl-C again: stopping at once, without a checkpoint (once more kills mpirun)");
            interrupts_acted = at_once;
            res->stopped_at_once = 1;
        }
        for (int i = 0; i < n_locks && !lock_acted; i++)
            if (locks[i] && rm_run_lock_lost(locks[i])) {
                rm_error_log("another job took over the lock of %s: ending this job at once", run_dir);
                kill(child_pid, SIGTERM);
                lock_acted = res->lock_lost = 1;
            }

        struct pollfd fds[2] = {{pipefd[0], POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
        int n = poll(fds, wake_pipe[0] >= 0 ? 2 : 1, 250);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && wake_pipe[0] >= 0 && (fds[1].revents & POLLIN))
            while (read(wake_pipe[0], chunk, sizeof chunk) > 0)
                ;
        if (n <= 0 || !(fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t got = read(pipefd[0], chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        filter_feed(&filter, chunk, (size_t)got);
    }
    filter_finish(&filter);
    close(pipefd[0]);
    while (!reaped && waitpid(child_pid, &status, 0) < 0 && errno == EINTR)
        ;
    child_pid = 0;
    if (!res->started)
        res->started = stamp_changed(&before, ranks_path);
    res->killed = !WIFEXITED(status);
    res->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (res->status != 0 && !res->verdict[0])
        snprintf(res->verdict, sizeof res->verdict, "mpirun exited with status %d", res->status);
    return res->status;
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
    if (ok != RM_OK || push_hosts(plan, cfg, err) != RM_OK) {
        rm_launch_plan_free(plan);
        return ok != RM_OK ? rm_fail(err, "out of memory") : RM_ERR;
    }
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
