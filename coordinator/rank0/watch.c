#include "watch.h"

#include "exit_codes.h"
#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "protocol.h"
#include "resume.h"
#include "timer.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int rm_watch_lock_run_dir(rm_watch *w, const rm_config *cfg, rm_error *err)
{
    w->cfg = cfg;
    const char *token = getenv("RINGMASTER_RUN_LOCK");
    w->supervised = token && *token;
    w->lock_checked_s = rm_now_s();
    if (w->supervised) {
        snprintf(w->lock_token, sizeof w->lock_token, "%s", token);
        return rm_run_lock_check_token(cfg->run_dir, token, err);
    }
    int state;
    if (rm_run_dir_inspect(cfg->run_dir, &state, err) != RM_OK || state == RM_RUN_DIR_FOREIGN)
        return RM_ERR;
    if (rm_private_dir(cfg->run_dir, err) != RM_OK ||
        rm_run_lock_acquire(&w->run_lock, cfg->run_dir, "run directory", 0, err) != RM_OK)
        return RM_ERR;
    if (cfg->ckpt_dir[0] &&
        (rm_private_dir(cfg->ckpt_dir, err) != RM_OK ||
         rm_run_lock_acquire(&w->ckpt_lock, cfg->ckpt_dir, "checkpoint directory", 0, err) != RM_OK))
        return RM_ERR;
    return RM_OK;
}

void rm_watch_release(rm_watch *w)
{
    rm_run_lock_release(&w->ckpt_lock);
    rm_run_lock_release(&w->run_lock);
}

void rm_watch_attach(rm_watch *w, rm_run_dir *rd, rm_progress *progress)
{
    w->rd = rd;
    w->progress = progress;
}

void rm_watch_lock(rm_watch *w, long step, rm_verdict *v)
{
    rm_verdict_go(v);
    double now = rm_now_s();
    if (now - w->lock_checked_s < 2.0)
        return;
    w->lock_checked_s = now;
    rm_error err;
    int lost = w->supervised ? rm_run_lock_check_token(w->cfg->run_dir, w->lock_token, &err) != RM_OK
                             : rm_run_lock_lost(&w->run_lock) || rm_run_lock_lost(&w->ckpt_lock);
    if (!lost)
        return;
    if (!w->supervised)
        snprintf(err.msg, sizeof err.msg, "the lock of %s was taken over", w->cfg->run_dir);
    rm_run_dir_close(w->rd); /* nothing more is written there: it is the other job's */
    rm_verdict_stop(v, RM_EXIT_FATAL, -1, step, "another job took over the run directory (%s): stopping at once",
                    err.msg);
}

/* 1 when one of `host`'s addresses answers a TCP connection within
 * timeout_s: accepted or refused (nothing listens on the discard port),
 * the host is up and its network works. No answer, or no route, means it
 * is cut off; a name that does not resolve, or any other error, counts as
 * an answer (nothing is known against the host). */
static int address_answers(const struct addrinfo *ai, double timeout_s)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 1;
    int answered = 1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            answered = errno != EHOSTUNREACH && errno != ENETUNREACH;
        } else {
            double until = rm_now_s() + timeout_s;
            struct pollfd p = {fd, POLLOUT, 0};
            int rc;
            do {
                double left = until - rm_now_s();
                rc = left > 0 ? poll(&p, 1, (int)(left * 1000) + 1) : 0;
            } while (rc < 0 && errno == EINTR);
            if (rc <= 0) {
                answered = 0;
            } else {
                int soerr = 0;
                socklen_t len = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
                answered = soerr != EHOSTUNREACH && soerr != ENETUNREACH && soerr != ETIMEDOUT;
            }
        }
    }
    close(fd);
    return answered;
}

static int host_answers(const char *host, double timeout_s)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, "9", &hints, &ai) != 0 || !ai)
        return 1;
    int answered = 0;
    for (const struct addrinfo *a = ai; a && !answered; a = a->ai_next)
        answered = address_answers(a, timeout_s);
    freeaddrinfo(ai);
    return answered;
}

/* The host of the silent workers that hold the job up (progress `least`)
 * when it is cut off: every worker on it is silent and it does not answer
 * on the network, while a worker on another host is still heard and that
 * host does answer the same probe (else it is rank 0's own network that is
 * down, or a firewall that drops the probe everywhere: the probe then says
 * nothing, and the hang is a plain one). NULL if none such. */
static const char *unreachable_host(const rm_roster *r, double now_s, double timeout_s, long least)
{
    const char *control = NULL; /* a host of a worker still heard, not rank 0's */
    for (int i = 0; i < r->workers && !control; i++)
        if (now_s - r->info[i].last_heard_s <= timeout_s && r->info[i].host[0] &&
            strcmp(r->info[i].host, rm_log_host()) != 0)
            control = r->info[i].host;
    int control_answers = -1; /* probed only if a candidate needs it */
    for (int i = 0; control && i < r->workers; i++) {
        const rm_worker_info *in = &r->info[i];
        if (now_s - in->last_heard_s <= timeout_s || in->progress != least || !in->host[0] ||
            strcmp(in->host, control) == 0 || strcmp(in->host, rm_log_host()) == 0)
            continue;
        int all_silent = 1, probed = 0;
        for (int j = 0; j < r->workers; j++) {
            if (strcmp(r->info[j].host, in->host) != 0)
                continue;
            all_silent &= now_s - r->info[j].last_heard_s > timeout_s;
            probed |= j < i && r->info[j].progress == least; /* this host was judged already */
        }
        if (!all_silent || probed || host_answers(in->host, 2.0))
            continue;
        if (control_answers < 0)
            control_answers = host_answers(control, 2.0);
        return control_answers ? in->host : NULL;
    }
    return NULL;
}

void rm_watch_hang(const rm_watch *w, const rm_roster *r, double now_s, rm_verdict *v)
{
    rm_verdict_go(v);
    double timeout_s = w->cfg->hang_timeout_s;
    long least = -1; /* least progress among the silent workers */
    for (int i = 0; i < r->workers; i++)
        if (now_s - r->info[i].last_heard_s > timeout_s && (least < 0 || r->info[i].progress < least))
            least = r->info[i].progress;
    if (least < 0)
        return;
    /* Workers waiting in a collective keep sending heartbeats: the silent
     * ones that got least far are the ones holding the job up. */
    char names[1024] = "", waiting[256] = "";
    for (int i = 0; i < r->workers; i++) {
        const rm_worker_info *in = &r->info[i];
        int silent = now_s - in->last_heard_s > timeout_s;
        if (silent && in->progress == least && strlen(names) < sizeof names - 200)
            snprintf(names + strlen(names), sizeof names - strlen(names),
                     "%sworker %d (rank %d, host %s, pid %d, silent %.1f s)", names[0] ? ", " : "", i, i + 1, in->host,
                     in->pid, now_s - in->last_heard_s);
        else if (strlen(waiting) < sizeof waiting - 16)
            snprintf(waiting + strlen(waiting), sizeof waiting - strlen(waiting), "%s%d", waiting[0] ? "," : "", i);
    }
    long step = least / 2 + 1; /* 1-based step that did not finish */
    if (w->rd)
        rm_run_dir_event(w->rd, "hang", "");
    const char *cut_off = waiting[0] ? unreachable_host(r, now_s, timeout_s, least) : NULL;
    if (cut_off) /* RM_VERDICT_UNREACHABLE: `ringmaster run` leaves the host out of the restart */
        rm_verdict_stop(v, RM_EXIT_FAILED, -1, step,
                        "hang: host %s" RM_VERDICT_UNREACHABLE ": %s stopped reporting in step %ld "
                        "(fault.hang_timeout_s %.0f) and %s does not answer on the network; workers %s are alive and "
                        "wait for it (in the gradient reduction)",
                        cut_off, names, step, timeout_s, cut_off, waiting);
    else
        rm_verdict_stop(v, RM_EXIT_FAILED, -1, step,
                        "hang: %s stopped reporting in step %ld (fault.hang_timeout_s %.0f)%s%s%s", names, step,
                        timeout_s, waiting[0] ? "; workers " : "", waiting,
                        waiting[0] ? " are alive and wait for it (in the gradient reduction)" : "");
}

int rm_watch_nonfinite(rm_watch *w, long step, int rolled_back_over, rm_verdict *v, rm_error *err)
{
    static const char *policy_names[] = {"stop", "skip", "rollback"};
    rm_verdict_go(v);
    int policy = (int)w->cfg->nan_policy;
    char fields[128];
    snprintf(fields, sizeof fields, "\"step\":%ld,\"policy\":\"%s\"", step + 1,
             rolled_back_over ? "skipped after rollback" : policy_names[policy]);
    rm_run_dir_event(w->rd, "nonfinite", fields);
    rm_progress_break(w->progress);
    if (rolled_back_over) {
        rm_warn("step %ld: non-finite again; its update is skipped (rolled back over before)", step + 1);
        return RM_OK;
    }
    if (policy == RM_NAN_SKIP) {
        rm_warn("step %ld: non-finite loss or gradient; update skipped (fault.nan_policy: skip)", step + 1);
        return RM_OK;
    }
    if (policy == RM_NAN_ROLLBACK) {
        if (rm_resume_add_skip(w->rd->path, step, err) != RM_OK)
            return RM_ERR;
        rm_verdict_stop(v, RM_EXIT_FAILED, -1, step + 1,
                        "non-finite loss or gradient (fault.nan_policy: rollback): restarting from the last "
                        "checkpoint with this step's update skipped");
        return RM_OK;
    }
    rm_verdict_stop(v, RM_EXIT_FATAL, -1, step + 1,
                    "non-finite loss or gradient (fault.nan_policy: stop); lower train.lr or use skip/rollback");
    return RM_OK;
}

int rm_watch_ckpt_done(rm_watch *w, rm_ckpt_coord *ck, const rm_msg_ckpt_done *d, long end_step, int stopping,
                       rm_verdict *v, rm_error *err)
{
    rm_verdict_go(v);
    int outcome;
    long step;
    rm_error why;
    if (rm_ckpt_coord_on_done(ck, d, w->rd, &outcome, &step, &why, err) != RM_OK)
        return RM_ERR;
    if (outcome == 0)
        return RM_OK;
    if (outcome == RM_CKPT_COORD_FENCED) {
        /* A newer job took this run over while this one was cut off: the
         * run directory is its now, nothing more is written there. */
        rm_progress_break(w->progress);
        rm_run_dir_close(w->rd);
        rm_verdict_stop(v, RM_EXIT_FATAL, -1, step, "checkpoint %s; stopping at once", why.msg);
        return RM_OK;
    }
    char name[32];
    rm_ckpt_dir_name(step, name, sizeof name);
    if (outcome > 0) {
        if (w->cfg->verbosity == RM_VERBOSITY_VERBOSE || (stopping && !w->supervised)) {
            rm_progress_break(w->progress);
            rm_info("checkpoint %s committed", name);
        }
        return RM_OK;
    }
    char previous[64] = "none yet";
    if (ck->last_committed >= 0)
        rm_ckpt_dir_name(ck->last_committed, previous, sizeof previous);
    rm_progress_break(w->progress);
    rm_error_log("checkpoint %s was not written: %s; the latest checkpoint is still %s (intact)", name, why.msg,
                 previous);
    char *fields = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&fields, &len);
    if (mem) {
        fprintf(mem, "\"step\":%ld,\"latest\":\"%s\",\"reason\":", step, previous);
        rm_json_string(mem, why.msg);
        fclose(mem);
        rm_run_dir_event(w->rd, "checkpoint_failed", fields);
        free(fields);
    }
    /* The final checkpoint is the run's model, and the one after a stop
     * signal is what a requeue resumes from: neither is optional. */
    if (step >= end_step)
        rm_verdict_stop(v, RM_EXIT_STORAGE, -1, step, "%s",
                        stopping ? "the checkpoint before stopping failed"
                                 : "the final checkpoint (the run's model) failed");
    else if (w->cfg->ckpt_on_error == RM_CKPT_ON_ERROR_STOP)
        rm_verdict_stop(v, RM_EXIT_STORAGE, -1, step, "stopping: checkpoint.on_error is stop");
    return RM_OK;
}
