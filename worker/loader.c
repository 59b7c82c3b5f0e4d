#include "loader.h"

#include "timer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

void rm_sample_bytes(const rm_dataset *ds, long *input_bytes, long *target_bytes)
{
    if (ds->index.format == RM_DATA_TOKENS) {
        *input_bytes = *target_bytes = ds->index.context * (long)sizeof(int32_t);
    } else {
        *input_bytes = ds->index.input_dim * (long)sizeof(float);
        *target_bytes = 1;
    }
}

/* A window of context + 1 tokens: inputs are its first context tokens,
 * targets its last context (each position predicts the next token). */
static int decode_tokens(const rm_dataset *ds, long i, const uint8_t *rec, int32_t *input, int32_t *target,
                         rm_error *err)
{
    long T = ds->index.context, vocab = ds->index.vocab;
    int wide = ds->index.token_bytes == 4;
    for (long t = 0; t <= T; t++) {
        const uint8_t *p = rec + t * (wide ? 4 : 2);
        uint32_t tok = wide ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
                            : (uint32_t)p[0] | (uint32_t)p[1] << 8;
        if (tok >= (uint32_t)vocab)
            return rm_fail(err, "sample %ld: token %u at position %ld is outside the vocabulary of %ld", i, tok, t,
                           vocab);
        if (t < T)
            input[t] = (int32_t)tok;
        if (t > 0)
            target[t - 1] = (int32_t)tok;
    }
    return RM_OK;
}

int rm_sample_decode(const rm_dataset *ds, long i, void *input, void *target, rm_error *err)
{
    const rm_shard_index *idx = &ds->index;
    if (i < 0 || i >= idx->samples)
        return rm_fail(err, "sample %ld is outside the dataset (%ld samples)", i, idx->samples);
    const uint8_t *rec = rm_dataset_record(ds, i); /* may verify or decrypt a shard: off the compute thread */
    if (!rec)
        return rm_fail(err, "%s", rm_dataset_error(ds));
    if (idx->format == RM_DATA_TOKENS)
        return decode_tokens(ds, i, rec, input, target, err);
    if (rec[0] >= idx->classes)
        return rm_fail(err, "sample %ld has label %u but the dataset has %ld classes", i, rec[0], idx->classes);
    *(uint8_t *)target = rec[0];
    const float scale = 1.0f / 255.0f;
    float *row = input;
    for (long j = 0; j < idx->input_dim; j++)
        row[j] = (float)rec[1 + j] * scale;
    return RM_OK;
}

/* Fills one batch from the mapped shards; runs on the loader thread. */
static int fill_batch(rm_loader *ld, rm_batch *b, rm_error *err)
{
    for (long i = 0; i < b->assign.count; i++) {
        uint8_t *in = (uint8_t *)b->input + (size_t)i * (size_t)ld->input_bytes;
        uint8_t *tg = (uint8_t *)b->target + (size_t)i * (size_t)ld->target_bytes;
        rm_error why;
        if (rm_sample_decode(ld->ds, b->samples[i], in, tg, &why) != RM_OK)
            return rm_fail(err, "step %ld: %s", (long)b->assign.step, why.msg);
    }
    return RM_OK;
}

/* Stretches the read of batch b to what throttle_bytes_per_s allows. */
static void throttle(const rm_loader *ld, const rm_batch *b, double spent_s)
{
    double bytes = (double)b->assign.count * (double)rm_dataset_sample_bytes(ld->ds);
    double wait_s = bytes / ld->throttle_bytes_per_s - spent_s;
    if (wait_s <= 0)
        return;
    struct timespec ts = {(time_t)wait_s, (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void *loader_main(void *arg)
{
    rm_loader *ld = arg;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        while (!ld->stopping && (ld->assigns_taken == ld->assigns_pushed ||
                                 ld->slots_filled - ld->slots_released >= ld->n_slots))
            pthread_cond_wait(&ld->changed, &ld->mu);
        if (ld->stopping)
            break;
        int a = (int)(ld->assigns_taken % ld->n_assign);
        rm_batch *b = &ld->slots[ld->slots_filled % ld->n_slots];
        b->assign = ld->assigns[a];
        memcpy(b->samples, ld->assign_samples + (size_t)a * (size_t)ld->batch_cap,
               (size_t)b->assign.count * sizeof *b->samples);
        ld->assigns_taken++;
        pthread_cond_broadcast(&ld->changed);
        pthread_mutex_unlock(&ld->mu);

        rm_error err;
        double t0 = rm_now_s();
        int rc = fill_batch(ld, b, &err);
        if (ld->throttle_bytes_per_s > 0 && b->assign.step >= ld->throttle_from_step)
            throttle(ld, b, rm_now_s() - t0);

        pthread_mutex_lock(&ld->mu);
        if (rc != RM_OK) {
            ld->failed = 1;
            ld->error = err;
            pthread_cond_broadcast(&ld->changed);
            break;
        }
        ld->slots_filled++;
        pthread_cond_broadcast(&ld->changed);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

int rm_loader_start(rm_loader *ld, const rm_dataset *ds, long batch_cap, int prefetch, int max_pending, rm_error *err)
{
    memset(ld, 0, sizeof *ld);
    ld->ds = ds;
    rm_sample_bytes(ds, &ld->input_bytes, &ld->target_bytes);
    ld->batch_cap = batch_cap;
    ld->n_slots = prefetch;
    ld->n_assign = max_pending;
    ld->slots = calloc((size_t)prefetch, sizeof *ld->slots);
    ld->assigns = calloc((size_t)max_pending, sizeof *ld->assigns);
    ld->assign_samples = malloc((size_t)max_pending * (size_t)batch_cap * sizeof(uint32_t));
    if (!ld->slots || !ld->assigns || !ld->assign_samples)
        goto oom;
    for (int i = 0; i < prefetch; i++) {
        rm_batch *b = &ld->slots[i];
        b->input = malloc((size_t)batch_cap * (size_t)ld->input_bytes);
        b->target = malloc((size_t)batch_cap * (size_t)ld->target_bytes);
        b->samples = malloc((size_t)batch_cap * sizeof(uint32_t));
        if (!b->input || !b->target || !b->samples)
            goto oom;
    }
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->changed, NULL);
    if (pthread_create(&ld->thread, NULL, loader_main, ld) != 0) {
        rm_loader_stop(ld);
        return rm_fail(err, "cannot start the loader thread");
    }
    ld->thread_started = 1;
    return RM_OK;
oom:
    rm_loader_stop(ld);
    return rm_fail(err, "out of memory for %d prefetch batches of %ld samples", prefetch, batch_cap);
}

void rm_loader_stop(rm_loader *ld)
{
    if (ld->thread_started) {
        pthread_mutex_lock(&ld->mu);
        ld->stopping = 1;
        pthread_cond_broadcast(&ld->changed);
        pthread_mutex_unlock(&ld->mu);
        pthread_join(ld->thread, NULL);
        pthread_mutex_destroy(&ld->mu);
        pthread_cond_destroy(&ld->changed);
    }
    for (int i = 0; ld->slots && i < ld->n_slots; i++) {
        free(ld->slots[i].input);
        free(ld->slots[i].target);
        free(ld->slots[i].samples);
    }
    free(ld->slots);
    free(ld->assigns);
    free(ld->assign_samples);
    memset(ld, 0, sizeof *ld);
}

int rm_loader_free_assign_slots(rm_loader *ld)
{
    pthread_mutex_lock(&ld->mu);
    int n = ld->n_assign - (int)(ld->assigns_pushed - ld->assigns_taken);
    pthread_mutex_unlock(&ld->mu);
    return n;
}

long rm_loader_outstanding(rm_loader *ld)
{
    pthread_mutex_lock(&ld->mu);
    long n = ld->assigns_pushed - ld->slots_released;
    pthread_mutex_unlock(&ld->mu);
    return n;
}

int rm_loader_push(rm_loader *ld, const rm_msg_assign *a, const uint32_t *samples, rm_error *err)
{
    if (a->count < 0 || a->count > ld->batch_cap)
        return rm_fail(err, "assignment for step %ld has %d samples; at most %ld expected", (long)a->step, a->count,
                       ld->batch_cap);
    pthread_mutex_lock(&ld->mu);
    if (ld->assigns_pushed - ld->assigns_taken >= ld->n_assign) {
        pthread_mutex_unlock(&ld->mu);
        return rm_fail(err, "loader queue is full (coordinator sent too far ahead)");
    }
    int i = (int)(ld->assigns_pushed % ld->n_assign);
    ld->assigns[i] = *a;
    memcpy(ld->assign_samples + (size_t)i * (size_t)ld->batch_cap, samples, (size_t)a->count * sizeof *samples);
    ld->assigns_pushed++;
    pthread_cond_broadcast(&ld->changed);
    pthread_mutex_unlock(&ld->mu);
    return RM_OK;
}

int rm_loader_next(rm_loader *ld, rm_batch **batch, rm_error *err)
{
    pthread_mutex_lock(&ld->mu);
    while (!ld->failed && ld->slots_filled == ld->slots_released)
        pthread_cond_wait(&ld->changed, &ld->mu);
    if (ld->failed && ld->slots_filled == ld->slots_released) {
        *err = ld->error;
        pthread_mutex_unlock(&ld->mu);
        return RM_ERR;
    }
    *batch = &ld->slots[ld->slots_released % ld->n_slots];
    pthread_mutex_unlock(&ld->mu);
    return RM_OK;
}

void rm_loader_release(rm_loader *ld)
{
    pthread_mutex_lock(&ld->mu);
    ld->slots_released++;
    pthread_cond_broadcast(&ld->changed);
    pthread_mutex_unlock(&ld->mu);
}

int rm_loader_peek(rm_loader *ld, rm_batch **batch)
{
    pthread_mutex_lock(&ld->mu);
    int ready = ld->slots_filled - ld->slots_released >= 2;
    if (ready)
        *batch = &ld->slots[(ld->slots_released + 1) % ld->n_slots];
    pthread_mutex_unlock(&ld->mu);
    return ready;
}
