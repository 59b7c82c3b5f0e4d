/* ringmaster-sample: text from a trained GPT, one process, no MPI (what
 * `ringmaster sample` runs). The weights are those of the run's newest
 * checkpoint that verifies; the prompt is encoded with the tokenizer the
 * run's data was made with; generation runs on a key/value cache
 * (gpt_infer.h), so each new token costs one position. The same seed gives
 * the same text. */
#include "checkpoint.h"
#include "config.h"
#include "crypto.h"
#include "exit_codes.h"
#include "gpt_infer.h"
#include "log.h"
#include "rng.h"
#include "timer.h"
#include "tokenizer.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sample_args {
    const char *run_dir, *prompt, *vocab_dir;
    long tokens, top_k;
    double temperature;
    uint64_t seed;
} sample_args;

static void usage(FILE *out)
{
    fprintf(out, "usage: ringmaster sample RUN_DIR [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] "
                 "[--seed S] [--vocab-dir D]\n"
                 "  text from the newest checkpoint of a GPT run that verifies; --tokens 256, --temperature 1.0\n"
                 "  (0: always the likeliest token), --top-k 0 (0: the whole vocabulary), --seed 1\n");
}

static int parse_number(const char *flag, const char *text, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (*end || !text[0] || !(v >= lo && v <= hi)) {
        rm_error_log("%s %s: expected a number in [%g, %g]", flag, text, lo, hi);
        return RM_ERR;
    }
    *out = v;
    return RM_OK;
}

static int parse_args(int argc, char **argv, sample_args *a)
{
    *a = (sample_args){.prompt = "", .tokens = 256, .temperature = 1.0, .seed = 1};
    for (int i = 1; i < argc; i++) {
        double v;
        const char *flag = argv[i];
        if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) {
            usage(stdout);
            exit(RM_EXIT_OK);
        }
        if (flag[0] != '-') {
            if (a->run_dir)
                return RM_ERR;
            a->run_dir = flag;
            continue;
        }
        if (i + 1 >= argc) {
            rm_error_log("%s needs a value", flag);
            return RM_ERR;
        }
        const char *val = argv[++i];
        if (strcmp(flag, "--prompt") == 0) {
            a->prompt = val;
        } else if (strcmp(flag, "--vocab-dir") == 0) {
            a->vocab_dir = val;
        } else if (strcmp(flag, "--tokens") == 0) {
            if (parse_number(flag, val, 0, 1e7, &v) != RM_OK)
                return RM_ERR;
            a->tokens = (long)v;
        } else if (strcmp(flag, "--temperature") == 0) {
            if (parse_number(flag, val, 0, 100, &a->temperature) != RM_OK)
                return RM_ERR;
        } else if (strcmp(flag, "--top-k") == 0) {
            if (parse_number(flag, val, 0, 1e9, &v) != RM_OK)
                return RM_ERR;
            a->top_k = (long)v;
        } else if (strcmp(flag, "--seed") == 0) {
            if (parse_number(flag, val, 0, 9007199254740992.0, &v) != RM_OK)
                return RM_ERR;
            a->seed = (uint64_t)v;
        } else {
            rm_error_log("unknown option %s", flag);
            return RM_ERR;
        }
    }
    return a->run_dir ? RM_OK : RM_ERR;
}

typedef struct token_buf {
    int32_t *ids;
    long n, cap;
} token_buf;

static int collect(void *ctx, const uint32_t *tokens, size_t n, rm_error *err)
{
    token_buf *b = ctx;
    for (size_t i = 0; i < n; i++) {
        if (b->n == b->cap)
            return rm_fail(err, "the prompt is longer than the context of %ld tokens (with the end-of-text token "
                                "that starts every document)", b->cap);
        b->ids[b->n++] = (int32_t)tokens[i];
    }
    return RM_OK;
}

/* The next token: the likeliest at temperature 0, else drawn from the
 * softmax of logits / temperature over the top_k likeliest (0: all). */
static int32_t pick(const float *logits, long vocab, double temperature, long top_k, float *probs, rm_rng *rng)
{
    long best = 0;
    for (long i = 1; i < vocab; i++)
        if (logits[i] > logits[best])
            best = i;
    if (temperature <= 0)
        return (int32_t)best;
    float cut = -INFINITY;
    if (top_k > 0 && top_k < vocab) {
        /* the k-th largest logit: copy, partial selection by repeated max */
        memcpy(probs, logits, (size_t)vocab * sizeof *probs);
        for (long k = 0; k < top_k; k++) {
            long arg = 0;
            for (long i = 1; i < vocab; i++)
                if (probs[i] > probs[arg])
                    arg = i;
            cut = probs[arg];
            probs[arg] = -INFINITY;
        }
    }
    double sum = 0;
    for (long i = 0; i < vocab; i++) {
        probs[i] = logits[i] >= cut ? (float)exp((double)(logits[i] - logits[best]) / temperature) : 0.0f;
        sum += probs[i];
    }
    double u = rm_rng_uniform(rng) * sum, acc = 0;
    for (long i = 0; i < vocab; i++) {
        acc += probs[i];
        if (u < acc)
            return (int32_t)i;
    }
    return (int32_t)best;
}

/* Writes a token's bytes (a GPT-2 token may be part of a UTF-8 sequence:
 * the bytes, written in order, make the text). */
static void emit(const rm_text_tokenizer *t, int32_t token)
{
    size_t len;
    const uint8_t *bytes = rm_tokenizer_token_bytes(t, (uint32_t)token, &len);
    if (bytes)
        fwrite(bytes, 1, len, stdout);
}

static int run(const sample_args *a, rm_error *err)
{
    char path[RM_PATH_CAP + 32], root[RM_PATH_CAP], dir[RM_PATH_CAP + 48];
    snprintf(path, sizeof path, "%s/config.yaml", a->run_dir);
    static rm_config cfg;
    rm_error why;
    if (rm_config_read(path, &cfg, &why) != RM_OK)
        return rm_fail(err, "%s is not a run directory: %s", a->run_dir, why.msg);
    rm_config_ckpt_root(&cfg, root, sizeof root);
    if (cfg.key_file[0]) {
        rm_security_no_core_dumps(1);
        if (rm_security_load(cfg.key_file, err) != RM_OK)
            return RM_ERR;
    }
    rm_ckpt_manifest m;
    if (rm_ckpt_find_latest(root, &m, dir, sizeof dir, NULL, NULL, &why) != RM_OK)
        return rm_fail(err, "%s: %s", a->run_dir, why.msg[0] ? why.msg : "no checkpoint that verifies");
    int rc = RM_ERR;
    float *state[3] = {NULL, NULL, NULL}, *probs = NULL;
    token_buf prompt = {0};
    rm_gpt_infer inf;
    memset(&inf, 0, sizeof inf);
    rm_gpt_layout g;
    rm_text_tokenizer tt = {0};
    const rm_tokenizer *tok = NULL;
    if (strcmp(m.model.type, "gpt") != 0) {
        rm_fail(err, "%s: a %s model; sampling needs a gpt run", dir, m.model.type[0] ? m.model.type : "mlp");
        goto out;
    }
    if (rm_tokenizer_open(m.model.tokenizer[0] ? m.model.tokenizer : "bytes", a->vocab_dir, &tt, err) != RM_OK)
        goto out;
    tok = tt.tok;
    if (tok->vocab != m.model.vocab) {
        rm_fail(err, "%s: a vocabulary of %ld, but tokenizer %s has %ld", dir, m.model.vocab, tok->name, tok->vocab);
        goto out;
    }
    if (rm_gpt_layout_init(&g, (int)m.model.layers, (int)m.model.heads, m.model.dim, m.model.context, m.model.vocab,
                           err) != RM_OK)
        goto out;
    if (g.n_params != m.n_params) {
        rm_fail(err, "%s: holds %ld parameters, its model section describes %ld", dir, m.n_params, g.n_params);
        goto out;
    }
    state[0] = malloc((size_t)m.n_params * sizeof(float));
    probs = malloc((size_t)g.vocab * sizeof *probs);
    prompt.cap = g.context;
    prompt.ids = malloc((size_t)prompt.cap * sizeof *prompt.ids);
    if (!state[0] || !probs || !prompt.ids) {
        rm_fail(err, "out of memory");
        goto out;
    }
    if (rm_ckpt_load(dir, &m, state, err) != RM_OK || rm_gpt_infer_init(&inf, &g, state[0], err) != RM_OK)
        goto out;
    /* a document starts after an end-of-text token, as in training */
    prompt.ids[prompt.n++] = (int32_t)tok->eot;
    if (rm_tokenizer_encode(&tt, (const uint8_t *)a->prompt, strlen(a->prompt), collect, &prompt, err) != RM_OK)
        goto out;
    double t0 = rm_now_s();
    const float *logits = NULL;
    for (long i = 0; i < prompt.n; i++)
        if (rm_gpt_infer_step(&inf, prompt.ids[i], &logits, err) != RM_OK)
            goto out;
    fputs(a->prompt, stdout);
    rm_rng rng = {rm_key(a->seed, 0x5a3b1eULL)};
    long made = 0, cached = prompt.n, slides = 0; /* prompt.ids[0, cached): the tokens in the cache */
    const char *stop = "";
    while (made < a->tokens) {
        int32_t next = pick(logits, g.vocab, a->temperature, a->top_k, probs, &rng);
        if (next == tok->eot) {
            stop = " (end of text)";
            break;
        }
        emit(&tt, next);
        if (++made == a->tokens)
            break; /* no logits needed after the last one */
        if (inf.pos >= g.context) {
            /* The context is full: go on from its last half, fed again
             * once per half a context of new tokens (still about one
             * position per token). */
            long keep = g.context / 2;
            memmove(prompt.ids, prompt.ids + cached - keep, (size_t)keep * sizeof *prompt.ids);
            rm_gpt_infer_reset(&inf);
            for (long i = 0; i < keep; i++)
                if (rm_gpt_infer_step(&inf, prompt.ids[i], &logits, err) != RM_OK)
                    goto out;
            cached = keep;
            slides++;
        }
        if (rm_gpt_infer_step(&inf, next, &logits, err) != RM_OK)
            goto out;
        prompt.ids[cached++] = next;
    }
    if (made == a->tokens && slides > 0)
        stop = " (the context slid along)";
    fputc('\n', stdout);
    fflush(stdout);
    double dt = rm_now_s() - t0;
    fprintf(stderr, "ringmaster sample: %ld tokens%s from %s (step %ld), %.0f tokens/s\n", made, stop, dir, m.step,
            dt > 0 ? (double)(prompt.n + made) / dt : 0);
    rc = RM_OK;
out:
    rm_tokenizer_close(&tt);
    rm_gpt_infer_free(&inf);
    free(state[0]);
    free(probs);
    free(prompt.ids);
    rm_ckpt_manifest_free(&m);
    return rc;
}

int main(int argc, char **argv)
{
    rm_log_set_identity("ringmaster");
    openblas_set_num_threads(1);
    sample_args a;
    if (parse_args(argc, argv, &a) != RM_OK) {
        usage(stderr);
        return RM_EXIT_USAGE;
    }
    rm_error err;
    if (run(&a, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
        return RM_EXIT_FATAL;
    }
    return RM_EXIT_OK;
}
