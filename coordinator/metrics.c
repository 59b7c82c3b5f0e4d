/* What the coordinator records about training: one metrics.jsonl line per
 * step, eval.jsonl per evaluation, the progress display and summary.json. */
#include "coordinator.h"
#include "audit.h"
#include "fsutil.h"
#include "hash.h"
#include "json.h"
#include "log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *smooth_and_pick_slowest(coordinator *c, const step_acc *s)
{
    static const char *names[] = {"data wait", "compute", "all-reduce wait", "optimizer"};
    double v[] = {s->data_wait_s[1], s->compute_s[1], s->allreduce_wait_s[1], s->optimizer_s[1]};
    double alpha = c->steps_done <= 1 ? 1.0 : 0.05;
    c->ema_step_s += alpha * (s->step_s[1] - c->ema_step_s);
    int best = 0;
    for (int i = 0; i < 4; i++) {
        c->ema_phase_s[i] += alpha * (v[i] - c->ema_phase_s[i]);
        if (c->ema_phase_s[i] > c->ema_phase_s[best])
            best = i;
    }
    return names[best];
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
void metrics_complete_step(coordinator *c, step_acc *s)
{
    /* per prediction: per sample, or per token of a sequence model */
    double loss = s->loss_sum / (s->count * (double)c->model.positions);
    double step_s = s->step_s[1];
    double samples_per_s = step_s > 0 ? (double)c->cfg.global_batch / step_s : 0;
    double epoch = (double)(s->step + 1) * (double)c->cfg.global_batch / (double)c->facts.train_samples;
    if (s->ckpt_stall_s[1] > 0) {
        c->ckpt_stalls++;
        c->ckpt_stall_total_s += s->ckpt_stall_s[1];
        if (s->ckpt_stall_s[1] > c->ckpt_stall_max_s)
            c->ckpt_stall_max_s = s->ckpt_stall_s[1];
    }
    c->steps_done++;
    c->last_loss = loss;
    /* the line is made whole in memory, then appended in one piece */
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    if (!f) {
        rm_run_dir_append(&c->rd, RM_RUN_METRICS, NULL, 0); /* records the loss */
        return;
    }
    fprintf(f, "{\"step\":%ld,\"epoch\":", s->step + 1);
    rm_json_number(f, epoch);
    fputs(",\"loss\":", f);
    rm_json_number(f, loss);
    if (c->model.positions == 1) {
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
    if (c->model.positions > 1) {
        fputs(",\"tokens_per_second\":", f);
        rm_json_number(f, samples_per_s * (double)c->model.positions);
    }
    if (c->peak_flops > 0) {
        fputs(",\"mfu\":", f);
        rm_json_number(f, samples_per_s * c->model.train_flops_per_sample / c->peak_flops);
    }
    write_phase(f, "step_s", s->step_s);
    write_phase(f, "data_wait_s", s->data_wait_s);
    write_phase(f, "compute_s", s->compute_s);
    write_phase(f, "allreduce_wait_s", s->allreduce_wait_s);
    write_phase(f, "optimizer_s", s->optimizer_s);
    write_phase(f, "ckpt_stall_s", s->ckpt_stall_s);
    fprintf(f, ",\"optimizer_state_bytes_per_worker\":%ld", c->optimizer_state_bytes);
    observe_complete_step(c->obs, s, samples_per_s, epoch, loss, f);
    fputs("}\n", f);
    fclose(f);
    rm_run_dir_append(&c->rd, RM_RUN_METRICS, text, text_len); /* a failure stops the job (run_steps) */
    free(text);

    long done_steps = s->step + 1;
    const char *slowest = smooth_and_pick_slowest(c, s);
    rm_progress_sample ps = {
        .step = done_steps,
        .epoch = epoch,
        .loss = loss,
        .samples_per_s = c->ema_step_s > 0 ? (double)c->cfg.global_batch / c->ema_step_s : 0,
        .eta_s = c->ema_step_s * (double)(c->total_steps - done_steps),
        .slowest_phase = slowest,
    };
    rm_progress_update(&c->progress, &ps);
    memset(s, 0, sizeof *s);
    s->step = -1;
}

/* A sequence model's evaluation: loss in nats per token, and in bits per
 * byte where each token is a byte. */
static void complete_token_eval(coordinator *c, eval_acc *e, double loss)
{
    double tokens = e->count * (double)c->model.positions;
    int bytes = strcmp(c->facts.tokenizer, "bytes") == 0;
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
    rm_run_dir_append(&c->rd, RM_RUN_EVAL, made ? text : NULL, len);
    free(text);
    if (c->cfg.verbosity != RM_VERBOSITY_QUIET) {
        rm_progress_break(&c->progress);
        if (bytes)
            rm_info("step %ld: %s loss %.4f nats/token (%.4f bits/byte, %.0f tokens)", e->step + 1, c->cfg.eval_split,
                    loss, loss / log(2.0), tokens);
        else
            rm_info("step %ld: %s loss %.4f nats/token (%.0f tokens)", e->step + 1, c->cfg.eval_split, loss, tokens);
    }
}

static void complete_eval(coordinator *c, eval_acc *e)
{
    double acc = e->correct / e->count, loss = e->loss_sum / (e->count * (double)c->model.positions);
    c->last_eval_accuracy = acc;
    c->last_eval_loss = loss;
    c->evals_done++;
    if (c->model.positions > 1) {
        complete_token_eval(c, e, loss);
        memset(e, 0, sizeof *e);
        e->step = -1;
        return;
    }
    observe_eval(c->obs, e->step, acc);
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
    rm_run_dir_append(&c->rd, RM_RUN_EVAL, made ? text : NULL, len);
    free(text);
    if (c->cfg.verbosity != RM_VERBOSITY_QUIET) {
        rm_progress_break(&c->progress);
        rm_info("step %ld: %s accuracy %.4f, loss %.4f (%.0f samples)", e->step + 1, c->cfg.eval_split, acc, loss,
                e->count);
    }
    memset(e, 0, sizeof *e);
    e->step = -1;
}

static eval_acc *eval_slot(coordinator *c, long step)
{
    for (int i = 0; i < 4; i++)
        if (c->evals[i].step == step)
            return &c->evals[i];
    for (int i = 0; i < 4; i++)
        if (c->evals[i].step < 0) {
            c->evals[i].step = step;
            return &c->evals[i];
        }
    return NULL;
}

/* Training time: the slowest worker's own steps, summed. Each worker's
 * steps follow each other, so this never exceeds the wall time (a sum of
 * per-step maxima would, as the slowest worker changes from step to step
 * and the workers' step boundaries drift against each other). */
static double train_seconds(const coordinator *c)
{
    double t = 0;
    for (int w = 0; w < c->workers; w++)
        if (c->info[w].train_s > t)
            t = c->info[w].train_s;
    return t;
}

int metrics_write_summary(coordinator *c, double wall_s, rm_error *err)
{
    c->train_s = train_seconds(c);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return rm_fail(err, "out of memory");
    char digest[17], cfg_hash[17];
    rm_hash_hex(c->info[0].weights_digest, digest);
    rm_hash_hex(rm_config_hash(&c->cfg), cfg_hash);
    long trained = c->steps_done * c->cfg.global_batch; /* in this attempt */
    double sps = c->train_s > 0 ? (double)trained / c->train_s : 0;
    double flops = c->model.train_flops_per_sample;
    fputs("{\n  \"status\": \"completed\",\n  \"test_accuracy\": ", f);
    if (c->evals_done && c->model.positions == 1)
        rm_json_number(f, c->last_eval_accuracy);
    else
        fputs("null", f);
    fputs(",\n  \"test_loss\": ", f);
    if (c->evals_done)
        rm_json_number(f, c->last_eval_loss);
    else
        fputs("null", f);
    fputs(",\n  \"val_loss\": ", f);
    if (c->evals_done)
        rm_json_number(f, c->last_eval_loss);
    else
        fputs("null", f);
    fputs(",\n  \"final_train_loss\": ", f);
    rm_json_number(f, c->last_loss);
    fputs(",\n  \"samples_per_second\": ", f);
    rm_json_number(f, sps);
    if (c->model.positions > 1) {
        fputs(",\n  \"tokens_per_second\": ", f);
        rm_json_number(f, sps * (double)c->model.positions);
    }
    fprintf(f, ",\n  \"model\": \"%s\"", c->model.name);
    fputs(",\n  \"achieved_flops_per_second\": ", f);
    rm_json_number(f, sps * flops);
    /* model FLOPs (6 per weight per position, plus attention) over what
     * the workers' own sgemm does at best, measured at start-up */
    fputs(",\n  \"sgemm_peak_flops_per_second\": ", f);
    rm_json_number(f, c->peak_flops);
    fputs(",\n  \"mfu\": ", f);
    if (c->peak_flops > 0)
        rm_json_number(f, sps * flops / c->peak_flops);
    else
        fputs("null", f);
    fprintf(f, ",\n  \"steps\": %ld,\n  \"samples\": %ld,\n  \"epochs\": ", c->total_steps,
            c->total_steps * c->cfg.global_batch);
    rm_json_number(f, (double)c->total_steps * (double)c->cfg.global_batch / (double)c->facts.train_samples);
    fputs(",\n  \"train_seconds\": ", f);
    rm_json_number(f, c->train_s);
    fputs(",\n  \"wall_seconds\": ", f);
    rm_json_number(f, wall_s);
    fprintf(f, ",\n  \"workers\": %d,\n  \"global_batch\": %ld,\n  \"backend\": \"%s\",\n  \"parameters\": %ld",
            c->workers, c->cfg.global_batch, rm_backend_name(c->backend), c->model.n_params);
    fprintf(f, ",\n  \"optimizer_state_bytes_per_worker\": %ld,\n  \"zero\": %ld", c->optimizer_state_bytes,
            c->cfg.zero);
    fprintf(f, ",\n  \"resumed_from_step\": %ld,\n  \"checkpoints_committed\": %ld,\n  \"checkpoints_failed\": %ld",
            c->first_step, c->ckpt.committed, c->ckpt.failed);
    fputs(",\n  \"checkpoint_stall_mean_s\": ", f);
    rm_json_number(f, c->ckpt_stalls ? c->ckpt_stall_total_s / (double)c->ckpt_stalls : 0);
    fputs(",\n  \"checkpoint_stall_max_s\": ", f);
    rm_json_number(f, c->ckpt_stall_max_s);
    fputs(",\n  \"step_seconds_mean\": ", f);
    rm_json_number(f, c->steps_done ? c->train_s / (double)c->steps_done : 0);
    observe_write_summary(c->obs, sps, f);
    fprintf(f, ",\n  \"weights_digest\": \"%s\",\n  \"config_hash\": \"%s\"", digest, cfg_hash);
    /* the audit trail's end (its run_end line): a trail cut short is found */
    long audit_seq;
    char audit_head[65];
    if (rm_audit_head(c->rd.path, &audit_seq, audit_head, err) != RM_OK) {
        fclose(f);
        free(text);
        return RM_ERR;
    }
    fprintf(f, ",\n  \"audit_seq\": %ld,\n  \"audit_head\": \"%s\"\n}\n", audit_seq, audit_head);
    fclose(f);
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/summary.json", c->rd.path);
    int rc = rm_write_file_atomic(path, text, len, err);
    free(text);
    if (rc == RM_OK && c->cfg.verbosity != RM_VERBOSITY_QUIET) {
        rm_progress_break(&c->progress);
        if (c->model.positions > 1)
            printf("done: %ld steps on %d workers, %s loss %.4f, %.0f tokens/s, weights %s\nrun directory: %s\n",
                   c->total_steps, c->workers, c->evals_done ? c->cfg.eval_split : "no eval,",
                   c->evals_done ? c->last_eval_loss : 0.0, sps * (double)c->model.positions, digest, c->rd.path);
        else
            printf("done: %ld steps on %d workers, %s accuracy %.4f, %.0f samples/s, weights %s\nrun directory: %s\n",
                   c->total_steps, c->workers, c->evals_done ? c->cfg.eval_split : "no eval,",
                   c->evals_done ? c->last_eval_accuracy : 0.0, sps, digest, c->rd.path);
        fflush(stdout);
    }
    return rc;
}


void metrics_add_report(coordinator *c, step_acc *s, const rm_msg_report *r, int worker)
{
    s->reports++;
    s->loss_sum += r->loss_sum;
    s->correct += (double)r->correct;
    s->count += (double)r->count;
    s->lr = r->lr;
    s->grad_norm = r->grad_norm;
    s->nonfinite |= r->nonfinite;
    s->update_skipped |= r->update_skipped;
    s->batch_digest += r->batch_digest;
    accumulate(s->ckpt_stall_s, r->ckpt_stall_s, c->workers);
    accumulate(s->data_wait_s, r->data_wait_s, c->workers);
    accumulate(s->compute_s, r->compute_s, c->workers);
    accumulate(s->allreduce_wait_s, r->allreduce_wait_s, c->workers);
    accumulate(s->optimizer_s, r->optimizer_s, c->workers);
    accumulate(s->step_s, r->step_s, c->workers);
    c->info[worker].train_s += r->step_s;
    observe_add_report(c->obs, r, worker);
}

int metrics_add_eval(coordinator *c, const rm_msg_eval_result *r, rm_error *err)
{
    eval_acc *e = eval_slot(c, r->step);
    if (!e)
        return rm_fail(err, "too many evaluations in flight");
    e->results++;
    e->loss_sum += r->loss_sum;
    e->correct += (double)r->correct;
    e->count += (double)r->count;
    if (r->eval_s > e->eval_s)
        e->eval_s = r->eval_s;
    if (e->results == c->workers)
        complete_eval(c, e);
    return RM_OK;
}
