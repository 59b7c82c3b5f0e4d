#include "ckpt_coord.h"

#include "audit.h"
#include "ckpt_fence.h"
#include "fsutil.h"
#include "hash.h"
#include "log.h"
#include "timer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int rm_ckpt_coord_init(rm_ckpt_coord *cc, const rm_config *cfg, const rm_model *model, int workers,
                       long train_samples, uint64_t dataset_hash, long last_committed, long generation,
                       rm_error *err)
{
    char root[RM_PATH_CAP];
    rm_config_ckpt_root(cfg, root, sizeof root);
    rm_ckpt_manifest base = {
        .seed = cfg->seed,
        .optimizer = cfg->optimizer,
        .n_state = cfg->optimizer == RM_OPT_ADAMW ? 3 : 2,
        .n_params = model->n_params,
        .world_size = workers,
        .config_hash = rm_config_hash(cfg),
        .training_hash = rm_config_training_hash(cfg),
        .dataset_hash = dataset_hash,
        .generation = generation,
    };
    if (rm_ckpt_coord_init_with(cc, root, workers, cfg->ckpt_keep, &base, model, cfg->global_batch, train_samples,
                                last_committed, err) != RM_OK)
        return RM_ERR;
    cc->commit_delay_s = cfg->debug_ckpt_commit_delay_s;
    return RM_OK;
}

int rm_ckpt_coord_init_with(rm_ckpt_coord *cc, const char *root, int workers, long keep, const rm_ckpt_manifest *base,
                            const rm_model *model, long global_batch, long train_samples, long last_committed,
                            rm_error *err)
{
    memset(cc, 0, sizeof *cc);
    if (snprintf(cc->root, sizeof cc->root, "%s", root) >= (int)sizeof cc->root)
        return rm_fail(err, "%s: checkpoint directory path too long", root);
    if (workers < 1)
        return rm_fail(err, "checkpoint commit: %d workers", workers);
    if (rm_private_dir(cc->root, err) != RM_OK)
        return RM_ERR;
    cc->workers = workers;
    cc->keep = keep;
    cc->model = model;
    cc->global_batch = global_batch;
    cc->train_samples = train_samples;
    cc->last_committed = last_committed;
    cc->base = *base;
    cc->base.files = NULL;
    cc->base.tensors = NULL;
    for (int i = 0; i < RM_CKPT_COORD_PENDING; i++) {
        cc->pending[i].step = -1;
        cc->pending[i].files = calloc((size_t)workers, sizeof *cc->pending[i].files);
        if (!cc->pending[i].files) {
            rm_ckpt_coord_free(cc);
            return rm_fail(err, "out of memory");
        }
    }
    return RM_OK;
}

void rm_ckpt_coord_free(rm_ckpt_coord *cc)
{
    for (int i = 0; i < RM_CKPT_COORD_PENDING; i++)
        free(cc->pending[i].files);
    memset(cc, 0, sizeof *cc);
}

int rm_ckpt_coord_in_flight(const rm_ckpt_coord *cc)
{
    int n = 0;
    for (int i = 0; i < RM_CKPT_COORD_PENDING; i++)
        n += cc->pending[i].step >= 0;
    return n;
}

int rm_ckpt_coord_expect(rm_ckpt_coord *cc, long steps_done, rm_error *err)
{
    for (int i = 0; i < RM_CKPT_COORD_PENDING; i++)
        if (cc->pending[i].step < 0) {
            rm_ckpt_file *files = cc->pending[i].files;
            memset(files, 0, (size_t)cc->workers * sizeof *files);
            memset(&cc->pending[i], 0, sizeof cc->pending[i]);
            cc->pending[i].files = files;
            cc->pending[i].step = steps_done;
            return RM_OK;
        }
    return rm_fail(err, "more than %d checkpoints in flight: checkpoint.every_steps is too small for the write speed",
                   RM_CKPT_COORD_PENDING);
}

/* Writes the manifest into the .tmp directory and commits it, after
 * checking that every worker's part is there as reported (size, and a
 * header naming this step, worker slice and layout): a missing, truncated
 * or foreign part keeps the checkpoint out. The payload checksums are
 * read back by every resume (rm_ckpt_find_latest); reading them here
 * would hold the coordinator's loop for the whole checkpoint's size. The
 * manifest records the audit trail's head (run_dir NULL: none), so lines
 * lost from its end are found. Returns RM_CKPT_FENCED (nothing changed)
 * when a newer generation holds the directory. */
static int commit(rm_ckpt_coord *cc, rm_ckpt_pending *p, const char *run_dir, rm_error *why)
{
    char name[48], tmp[RM_PATH_CAP + 64];
    rm_ckpt_tmp_dir_name(p->step, cc->base.generation, name, sizeof name);
    snprintf(tmp, sizeof tmp, "%s/%s", cc->root, name);
    rm_ckpt_manifest m = cc->base;
    m.step = p->step;
    m.data_cursor = p->step * cc->global_batch;
    m.epoch = cc->train_samples > 0 ? (double)m.data_cursor / (double)cc->train_samples : 0;
    m.opt_steps = p->opt_steps;
    m.created_unix = (long)time(NULL);
    m.n_files = cc->workers;
    m.files = p->files;
    if (rm_ckpt_verify_parts(tmp, &m, why) != RM_OK)
        return RM_ERR;
    if (run_dir && rm_audit_head(run_dir, &m.audit_seq, m.audit_head, why) != RM_OK)
        return RM_ERR;
    if (rm_ckpt_manifest_write(tmp, &m, cc->model, why) != RM_OK)
        return RM_ERR;
    if (cc->commit_delay_s > 0)
        usleep((useconds_t)(cc->commit_delay_s * 1e6));
    long current;
    int rc = rm_ckpt_commit_fenced(cc->root, tmp, p->step, cc->base.generation, &current, why);
    if (rc == RM_CKPT_FENCED)
        cc->fenced_by = current;
    return rc;
}

int rm_ckpt_coord_receive(rm_ckpt_coord *cc, const rm_msg_ckpt_done *d, const char *run_dir, int *outcome, long *step,
                          double *write_s, rm_error *why, rm_error *err)
{
    *outcome = 0;
    rm_ckpt_pending *p = NULL;
    for (int i = 0; i < RM_CKPT_COORD_PENDING; i++)
        if (cc->pending[i].step >= 0 && cc->pending[i].step == d->step)
            p = &cc->pending[i];
    if (!p || d->worker < 0 || d->worker >= cc->workers)
        return rm_fail(err, "worker %d reported checkpoint step %lld, which was not requested", d->worker,
                       (long long)d->step);
    rm_ckpt_file *f = &p->files[d->worker];
    f->worker = d->worker;
    f->begin = d->begin;
    f->end = d->end;
    f->bytes = d->bytes;
    f->checksum = d->checksum;
    if (d->worker == 0)
        p->opt_steps = d->opt_steps;
    if (d->write_s > p->write_s_max)
        p->write_s_max = d->write_s;
    if (!d->ok && !p->failed) {
        p->failed = 1;
        snprintf(p->reason, sizeof p->reason, "worker %d: %.*s", d->worker, RM_REASON_CAP - 1, d->reason);
    }
    if (++p->received < cc->workers)
        return RM_OK;

    *step = p->step;
    *write_s = p->write_s_max;
    double t0 = rm_now_s();
    /* a stale job learns it before it reads or removes anything: a newer
     * generation's pruning may have taken its parts away already */
    long current;
    int rc = rm_ckpt_fence_check(cc->root, p->step, cc->base.generation, &current, why);
    if (rc == RM_CKPT_FENCED)
        cc->fenced_by = current;
    else if (rc == RM_OK)
        rc = p->failed ? RM_ERR : commit(cc, p, run_dir, why);
    if (rc == RM_CKPT_FENCED) {
        /* the directory is a newer job's: not even our own parts are touched */
        *outcome = RM_CKPT_COORD_FENCED;
    } else if (rc != RM_OK) {
        if (p->failed)
            snprintf(why->msg, sizeof why->msg, "%s", p->reason);
        rm_ckpt_discard_tmp(cc->root, p->step, cc->base.generation);
        cc->failed++;
        *outcome = -1;
    } else {
        cc->last_committed = p->step;
        cc->committed++;
        cc->commit_s_total += rm_now_s() - t0;
        rm_ckpt_prune(cc->root, (int)cc->keep, p->step, cc->base.generation);
        *outcome = 1;
    }
    p->step = -1;
    return RM_OK;
}

int rm_ckpt_coord_on_done(rm_ckpt_coord *cc, const rm_msg_ckpt_done *d, rm_run_dir *rd, int *outcome, long *step,
                          rm_error *why, rm_error *err)
{
    double t0 = rm_now_s(), write_s = 0;
    if (rm_ckpt_coord_receive(cc, d, rd->path, outcome, step, &write_s, why, err) != RM_OK)
        return RM_ERR;
    if (*outcome != 1)
        return RM_OK;
    char name[32], fields[512], final_dir[RM_PATH_CAP + 48], digest[65] = "";
    rm_ckpt_dir_name(*step, name, sizeof name);
    snprintf(final_dir, sizeof final_dir, "%s/%s", cc->root, name);
    rm_error derr;
    if (rm_ckpt_manifest_digest(final_dir, digest, &derr) != RM_OK)
        rm_warn("%s", derr.msg);
    /* the manifest's digest names the checkpoint: it lists every file's checksum */
    snprintf(fields, sizeof fields,
             "\"step\":%ld,\"dir\":\"%s\",\"manifest_blake2b\":\"%s\",\"write_s\":%.6f,\"commit_s\":%.6f", *step, name,
             digest, write_s, rm_now_s() - t0);
    rm_run_dir_event(rd, "checkpoint", fields);
    rm_run_dir_sync(rd); /* the logs up to this checkpoint are on disk with it (a failure stops the job) */
    return RM_OK;
}
