/* What rank 0 records about training: one metrics.jsonl line per
 * step, eval.jsonl per evaluation, the progress display and summary.json. */
#include "metrics.h"

#include "audit.h"
#include "fsutil.h"
#include "hash.h"
#include "json.h"
#include "log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The phase of the slowest worker that, smoothed, takes the longest. */
static const char *smooth_and_pick_slowest(rm_metrics *m, const rm_step_acc *s)
{
    double alpha = m->steps_done <= 1 ? 1.0 : 0.05;
    m->ema_step_s += alpha * (s->phase[RM_PHASE_STEP][1] - m->ema_step_s);
    int best = 0;
    for (int p = 0; p < RM_PHASE_STEP; p++) {
        m->ema_phase_s[p] += alpha * (s->phase[p][1] - m->ema_phase_s[p]);
        if (m->ema_phase_s[p] > m->ema_phase_s[best])
            best = p;
    }
    return rm_phases[best].title;
}

static void accumulate(double pair[2], double v, int workers)
{
    pair[0] += v / workers;
    if (v > pair[1])
        pair[1] = v;
}

static void write_phase(FILE *f, const char *name, const double pair[2])
{
    fprintf(f, ",\"%s\":", name);
    rm_json_number(f, pair[0]);
    fprintf(f, ",\"%s_max\":", name);
    rm_json_number(f, pair[1]);
}

/* All reports of one step are in: log it, show progress. */
static void complete_step(rm_metrics *m, rm_step_acc *s)
{
    const rm_config *cfg = m->s.cfg;
    const rm_model *model = m->s.model;
    /* per prediction: per sample, or per token of a sequence model */
    double loss = s->loss_sum / (s->count * (double)model->positions);
    double step_s = s->phase[RM_PHASE_STEP][1];
    double samples_per_s = step_s > 0 ? (double)cfg->global_batch / step_s : 0;
    double epoch = (double)(s->step + 1) * (double)cfg->global_batch / (double)m->s.facts->train_samples;
    /* A checkpoint's stall: its step's, plus the next step's when the
     * snapshot was copied in the waits after the update (the rest of the
     * copy lands there). */
    double stall_s = s->phase[RM_PHASE_CKPT_STALL][1];
    if (s->checkpoint) {
        m->ckpt_stalls++;
        m->ckpt_last_stall_s = 0;
    }
    m->ckpt_last_stall_s += stall_s;
    m->ckpt_stall_total_s += stall_s;
    if (m->ckpt_stalls && m->ckpt_last_stall_s > m->ckpt_stall_max_s)
        m->ckpt_stall_max_s = m->ckpt_last_stall_s;
    if (!s->checkpoint)
        m->ckpt_last_stall_s = 0;
    m->steps_done++;
    m->last_loss = loss;
    /* the line is made whole in memory, then appended in one piece */
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    if (!f) {
        rm_run_dir_append(m->s.rd, RM_RUN_METRICS, NULL, 0); /* records the loss */
        return;
    }
    fprintf(f, "{\"step\":%ld,\"epoch\":", s->step + 1);
    rm_json_number(f, epoch);
    fputs(",\"loss\":", f);
    rm_json_number(f, loss);
    if (model->positions == 1) {
        fputs(",\"train_accuracy\":", f);
        rm_json_number(f, s->correct / s->count);
    }
    fputs(",\"lr\":", f);
    rm_json_number(f, s->lr);
    fputs(",\"grad_norm\":", f);
    rm_json_number(f, s->grad_norm);
    if (s->update_skipped)
        fputs(",\"update_skipped\":true", f);
    fprintf(f, ",\"batch_digest\":\"%016llx\"", (unsigned long long)s->batch_digest);
    fputs(",\"samples_per_second\":", f);
    rm_json_number(f, samples_per_s);
    if (model->positions > 1) {
        fputs(",\"tokens_per_second\":", f);
        rm_json_number(f, samples_per_s * (double)model->positions);
    }
    if (m->s.roster->peak_flops > 0) {
        fputs(",\"mfu\":", f);
        rm_json_number(f, samples_per_s * model->train_flops_per_sample / m->s.roster->peak_flops);
    }
    write_phase(f, rm_phases[RM_PHASE_STEP].json, s->phase[RM_PHASE_STEP]);
    for (int p = 0; p < RM_PHASE_STEP; p++)
        write_phase(f, rm_phases[p].json, s->phase[p]);
    fprintf(f, ",\"optimizer_state_bytes_per_worker\":%ld", m->s.roster->optimizer_state_bytes);
    rm_observe_step step = {.step = s->step, .lr = s->lr, .step_s = step_s, .samples_per_s = samples_per_s,
                            .epoch = epoch, .loss = loss};
    rm_observe_complete_step(m->s.obs, &step, f);
    fputs("}\n", f);
    fclose(f);
    rm_run_dir_append(m->s.rd, RM_RUN_METRICS, text, text_len); /* a failure stops the job (the loop) */
    free(text);

    long done_steps = s->step + 1;
    const char *slowest = smooth_and_pick_slowest(m, s);
    rm_progress_sample ps = {
        .step = done_steps,
        .epoch = epoch,
        .loss = loss,
        .samples_per_s = m->ema_step_s > 0 ? (double)cfg->global_batch / m->ema_step_s : 0,
        .eta_s = m->ema_step_s * (double)(m->s.total_steps - done_steps),
        .slowest_phase = slowest,
    };
    rm_progress_update(m->s.progress, &ps);
    memset(s, 0, sizeof *s);
    s->step = -1;
}

/* A sequence model's evaluation: loss in nats per token, and in bits per
 * byte where each token is a byte. */
static void complete_token_eval(rm_metrics *m, rm_eval_acc *e, double loss)
{
    const rm_config *cfg = m->s.cfg;
    double tokens = e->count * (double)m->s.model->positions;
    int bytes = strcmp(m->s.facts->tokenizer, "bytes") == 0;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int made = f != NULL;
    if (made) {
        fprintf(f, "{\"step\":%ld,\"val_loss\":", e->step + 1);
        rm_json_number(f, loss);
        if (bytes) {
            fputs(",\"bits_per_byte\":", f);
            rm_json_number(f, loss / log(2.0));
        }
        fprintf(f, ",\"tokens\":%.0f,\"seconds\":", tokens);
        rm_json_number(f, e->eval_s);
        fputs("}\n", f);
        fclose(f);
    }
    rm_run_dir_append(m->s.rd, RM_RUN_EVAL, made ? text : NULL, len);
    free(text);
    if (cfg->verbosity != RM_VERBOSITY_QUIET) {
        rm_progress_break(m->s.progress);
        if (bytes)
            rm_info("step %ld: %s loss %.4f nats/token (%.4f bits/byte, %.0f tokens)", e->step + 1, cfg->eval_split,
                    loss, loss / log(2.0), tokens);
        else
            rm_info("step %ld: %s loss %.4f nats/token (%.0f tokens)", e->step + 1, cfg->eval_split, loss, tokens);
    }
}

static void complete_eval(rm_metrics *m, rm_eval_acc *e)
{
    const rm_config *cfg = m->s.cfg;
    double acc = e->correct / e->count, loss = e->loss_sum / (e->count * (double)m->s.model->positions);
    m->last_eval_accuracy = acc;
    m->last_eval_loss = loss;
    m->evals_done++;
    if (m->s.model->positions > 1) {
        complete_token_eval(m, e, loss);
        memset(e, 0, sizeof *e);
        e->step = -1;
        return;
    }
    rm_observe_eval(m->s.obs, e->step, acc);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int made = f != NULL;
    if (made) {
        fprintf(f, "{\"step\":%ld,\"test_accuracy\":", e->step + 1);
        rm_json_number(f, acc);
        fputs(",\"test_loss\":", f);
        rm_json_number(f, loss);
        fprintf(f, ",\"samples\":%.0f,\"seconds\":", e->count);
        rm_json_number(f, e->eval_s);
        fputs("}\n", f);
        fclose(f);
    }
    rm_run_dir_append(m->s.rd, RM_RUN_EVAL, made ? text : NULL, len);
    free(text);
    if (cfg->verbosity != RM_VERBOSITY_QUIET) {
        rm_progress_break(m->s.progress);
        rm_info("step %ld: %s accuracy %.4f, loss %.4f (%.0f samples)", e->step + 1, cfg->eval_split, acc, loss,
                e->count);
    }
    memset(e, 0, sizeof *e);
    e->step = -1;
}

static rm_eval_acc *eval_slot(rm_metrics *m, long step)
{
    for (int i = 0; i < 4; i++)
        if (m->evals[i].step == step)
            return &m->evals[i];
    for (int i = 0; i < 4; i++)
        if (m->evals[i].step < 0) {
            m->evals[i].step = step;
            return &m->evals[i];
        }
    return NULL;
}

/* Training time: the slowest worker's own steps, summed. Each worker's
 * steps follow each other, so this never exceeds the wall time (a sum of
 * per-step maxima would, as the slowest worker changes from step to step
 * and the workers' step boundaries drift against each other). */
static double train_seconds(const rm_metrics *m)
{
    double t = 0;
    for (int w = 0; w < m->s.roster->workers; w++)
        if (m->train_s[w] > t)
            t = m->train_s[w];
    return t;
}

int rm_metrics_write_summary(rm_metrics *m, const rm_run_outcome *out, rm_error *err)
{
    const rm_config *cfg = m->s.cfg;
    const rm_model *model = m->s.model;
    const rm_roster *roster = m->s.roster;
    double train_s = train_seconds(m);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return rm_fail(err, "out of memory");
    char digest[17], cfg_hash[17];
    rm_hash_hex(out->weights_digest, digest);
    rm_hash_hex(rm_config_hash(cfg), cfg_hash);
    long trained = m->steps_done * cfg->global_batch; /* in this attempt */
    double sps = train_s > 0 ? (double)trained / train_s : 0;
    double flops = model->train_flops_per_sample;
    fputs("{\n  \"status\": \"completed\",\n  \"test_accuracy\": ", f);
    if (m->evals_done && model->positions == 1)
        rm_json_number(f, m->last_eval_accuracy);
    else
        fputs("null", f);
    fputs(",\n  \"test_loss\": ", f);
    if (m->evals_done)
        rm_json_number(f, m->last_eval_loss);
    else
        fputs("null", f);
    fputs(",\n  \"val_loss\": ", f);
    if (m->evals_done)
        rm_json_number(f, m->last_eval_loss);
    else
        fputs("null", f);
    fputs(",\n  \"final_train_loss\": ", f);
    rm_json_number(f, m->last_loss);
    fputs(",\n  \"samples_per_second\": ", f);
    rm_json_number(f, sps);
    if (model->positions > 1) {
        fputs(",\n  \"tokens_per_second\": ", f);
        rm_json_number(f, sps * (double)model->positions);
    }
    fprintf(f, ",\n  \"model\": \"%s\"", model->name);
    fputs(",\n  \"achieved_flops_per_second\": ", f);
    rm_json_number(f, sps * flops);
    /* model FLOPs (6 per weight per position, plus attention) over what
     * the workers' own sgemm does at best, measured at start-up */
    fputs(",\n  \"sgemm_peak_flops_per_second\": ", f);
    rm_json_number(f, roster->peak_flops);
    fputs(",\n  \"mfu\": ", f);
    if (roster->peak_flops > 0)
        rm_json_number(f, sps * flops / roster->peak_flops);
    else
        fputs("null", f);
    fprintf(f, ",\n  \"steps\": %ld,\n  \"samples\": %ld,\n  \"epochs\": ", m->s.total_steps,
            m->s.total_steps * cfg->global_batch);
    rm_json_number(f, (double)m->s.total_steps * (double)cfg->global_batch / (double)m->s.facts->train_samples);
    fputs(",\n  \"train_seconds\": ", f);
    rm_json_number(f, train_s);
    fputs(",\n  \"wall_seconds\": ", f);
    rm_json_number(f, out->wall_s);
    fprintf(f, ",\n  \"workers\": %d,\n  \"global_batch\": %ld,\n  \"backend\": \"%s\",\n  \"parameters\": %ld",
            roster->workers, cfg->global_batch, rm_backend_name(roster->backend), model->n_params);
    fprintf(f, ",\n  \"memory_bytes_per_worker\": %ld", roster->memory_bytes);
    if (model->type == RM_MODEL_GPT) /* the path the workers' backend took, and what its backward recomputes */
        fprintf(f, ",\n  \"recompute\": %ld,\n  \"attention\": \"%s\"", cfg->recompute,
                roster->backend != RM_BACKEND_GPU      ? "cpu (causal blocks, probabilities kept)"
                : cfg->attention == RM_ATT_FUSED ? "fused (flash_attn.cu, scores never stored)"
                                                 : "simple (cuBLAS products, probabilities kept)");
    fprintf(f, ",\n  \"optimizer_state_bytes_per_worker\": %ld,\n  \"zero\": %ld", roster->optimizer_state_bytes,
            cfg->zero);
    fprintf(f, ",\n  \"resumed_from_step\": %ld,\n  \"checkpoints_committed\": %ld,\n  \"checkpoints_failed\": %ld",
            m->s.first_step, out->ckpt_committed, out->ckpt_failed);
    fputs(",\n  \"checkpoint_stall_mean_s\": ", f);
    rm_json_number(f, m->ckpt_stalls ? m->ckpt_stall_total_s / (double)m->ckpt_stalls : 0);
    fputs(",\n  \"checkpoint_stall_max_s\": ", f);
    rm_json_number(f, m->ckpt_stall_max_s);
    fputs(",\n  \"step_seconds_mean\": ", f);
    rm_json_number(f, m->steps_done ? train_s / (double)m->steps_done : 0);
    rm_observe_write_summary(m->s.obs, sps, f);
    fprintf(f, ",\n  \"weights_digest\": \"%s\",\n  \"config_hash\": \"%s\"", digest, cfg_hash);
    /* the audit trail's end (its run_end line): a trail cut short is found */
    long audit_seq;
    char audit_head[65];
    if (rm_audit_head(m->s.rd->path, &audit_seq, audit_head, err) != RM_OK) {
        fclose(f);
        free(text);
        return RM_ERR;
    }
    fprintf(f, ",\n  \"audit_seq\": %ld,\n  \"audit_head\": \"%s\"\n}\n", audit_seq, audit_head);
    fclose(f);
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/summary.json", m->s.rd->path);
    int rc = rm_write_file_atomic(path, text, len, err);
    free(text);
    if (rc == RM_OK && cfg->verbosity != RM_VERBOSITY_QUIET) {
        rm_progress_break(m->s.progress);
        /* the held-out figure, or the last step's training loss without one */
        char result[128];
        if (!m->evals_done)
            snprintf(result, sizeof result, "final training loss %.4f (no evaluation)", m->last_loss);
        else if (model->positions > 1)
            snprintf(result, sizeof result, "%s loss %.4f", cfg->eval_split, m->last_eval_loss);
        else
            snprintf(result, sizeof result, "%s accuracy %.4f", cfg->eval_split, m->last_eval_accuracy);
        printf("done: %ld steps on %d workers, %s, %.0f %s/s, weights %s\nrun directory: %s\n", m->s.total_steps,
               roster->workers, result, model->positions > 1 ? sps * (double)model->positions : sps,
               model->positions > 1 ? "tokens" : "samples", digest, m->s.rd->path);
        fflush(stdout);
    }
    return rc;
}


/* Takes the step's slot in the ring, or says why it cannot. */
static rm_step_acc *step_slot(rm_metrics *m, long step, rm_error *err)
{
    rm_step_acc *s = &m->steps[step % m->s.step_slots];
    if (s->step == step)
        return s;
    if (s->step >= 0) {
        rm_fail(err, "a worker reported step %ld while step %ld is incomplete", step, s->step);
        return NULL;
    }
    s->step = step;
    return s;
}

int rm_metrics_add_report(rm_metrics *m, const rm_msg_report *r, int worker, long *completed, int *nonfinite,
                          rm_error *err)
{
    *completed = -1;
    *nonfinite = 0;
    rm_step_acc *s = step_slot(m, r->step, err);
    if (!s)
        return RM_ERR;
    int workers = m->s.roster->workers;
    s->reports++;
    s->loss_sum += r->loss_sum;
    s->correct += (double)r->correct;
    s->count += (double)r->count;
    s->lr = r->lr;
    s->grad_norm = r->grad_norm;
    s->nonfinite |= r->nonfinite;
    s->update_skipped |= r->update_skipped;
    s->checkpoint |= r->checkpoint;
    s->batch_digest += r->batch_digest;
    for (int p = 0; p < RM_N_PHASES; p++)
        accumulate(s->phase[p], r->phase_s[p], workers);
    m->train_s[worker] += r->phase_s[RM_PHASE_STEP];
    rm_observe_add_report(m->s.obs, r, worker);
    if (s->reports < workers)
        return RM_OK;
    *completed = s->step;
    *nonfinite = s->nonfinite;
    complete_step(m, s);
    return RM_OK;
}

int rm_metrics_add_eval(rm_metrics *m, const rm_msg_eval_result *r, rm_error *err)
{
    rm_eval_acc *e = eval_slot(m, r->step);
    if (!e)
        return rm_fail(err, "too many evaluations in flight");
    e->results++;
    e->loss_sum += r->loss_sum;
    e->correct += (double)r->correct;
    e->count += (double)r->count;
    if (r->eval_s > e->eval_s)
        e->eval_s = r->eval_s;
    if (e->results == m->s.roster->workers)
        complete_eval(m, e);
    return RM_OK;
}

int rm_metrics_init(rm_metrics *m, const rm_metrics_setup *setup, rm_error *err)
{
    memset(m, 0, sizeof *m);
    m->s = *setup;
    m->steps = calloc((size_t)setup->step_slots, sizeof *m->steps);
    m->train_s = calloc((size_t)setup->roster->workers, sizeof *m->train_s);
    if (!m->steps || !m->train_s)
        return rm_fail(err, "out of memory");
    for (int i = 0; i < setup->step_slots; i++)
        m->steps[i].step = -1;
    for (int i = 0; i < 4; i++)
        m->evals[i].step = -1;
    return RM_OK;
}

void rm_metrics_free(rm_metrics *m)
{
    free(m->steps);
    free(m->train_s);
    m->steps = NULL;
    m->train_s = NULL;
}
