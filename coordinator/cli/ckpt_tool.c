/* ringmaster ckpt: look at, check and export a run's checkpoints. */
#include "ckpt_tool.h"

#include "checkpoint.h"
#include "config.h"
#include "crypto.h"
#include "exit_codes.h"
#include "fsutil.h"
#include "hash.h"
#include "log.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(void)
{
    fprintf(stderr, "usage:\n"
                    "  ringmaster ckpt list RUN_DIR\n"
                    "  ringmaster ckpt verify RUN_DIR [--step N]\n"
                    "  ringmaster ckpt export RUN_DIR [--step N] [--format safetensors|llmc] OUT\n"
                    "    (a GPT is written under Hugging Face GPT2LMHeadModel's names and layout, with config.json\n"
                    "     beside it; llmc: llm.c's model file, version 3, fp32)\n");
}

/* The checkpoint root of a run: checkpoint.dir of its config.yaml, or
 * RUN_DIR/checkpoints. */
static int ckpt_root(const char *run_dir, char *root, size_t cap)
{
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/config.yaml", run_dir);
    static rm_config cfg;
    rm_error err;
    if (rm_config_read(path, &cfg, &err) != RM_OK) {
        rm_error_log("%s is not a run directory: %s", run_dir, err.msg);
        return RM_ERR;
    }
    if (cfg.ckpt_dir[0])
        snprintf(root, cap, "%s", cfg.ckpt_dir);
    else
        snprintf(root, cap, "%s/checkpoints", run_dir);
    /* sealed checkpoints open with the run's key; the process stays out of
     * core dumps and ptrace while it holds it */
    if (cfg.key_file[0]) {
        rm_security_no_core_dumps(1);
        if (rm_security_load(cfg.key_file, &err) != RM_OK) {
            rm_error_log("%s", err.msg);
            return RM_ERR;
        }
    }
    if (rm_ckpt_check_latest(root, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
        return RM_ERR;
    }
    return RM_OK;
}

/* 1 if the checkpoint's first file is sealed. */
static int sealed(const char *dir)
{
    char path[RM_PATH_CAP + 80];
    snprintf(path, sizeof path, "%s/worker-00000.rmc", dir);
    FILE *f = fopen(path, "rb");
    unsigned char h[16];
    int yes = f && fread(h, 1, sizeof h, f) == sizeof h && h[12] == RM_PROTECTION_XCHACHA20 && !h[13] && !h[14] &&
              !h[15];
    if (f)
        fclose(f);
    return yes;
}

static int cmd_list(const char *root, int verify, long only_step)
{
    long *steps;
    int n, bad = 0, shown = 0;
    rm_error err;
    if (rm_ckpt_list(root, &steps, &n, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
        return RM_EXIT_FATAL;
    }
    char latest[64] = "";
    char path[RM_PATH_CAP + 16];
    snprintf(path, sizeof path, "%s/latest", root);
    FILE *lf = fopen(path, "r");
    if (lf) {
        if (fscanf(lf, "%63s", latest) != 1)
            latest[0] = '\0';
        fclose(lf);
    }
    if (!verify)
        printf("%-16s %8s %10s %8s %4s %12s  %s\n", "checkpoint", "step", "epoch", "workers", "gen", "bytes",
               "created (UTC)");
    for (int i = 0; i < n; i++) {
        if (only_step >= 0 && steps[i] != only_step)
            continue;
        shown++;
        char name[32], dir[RM_PATH_CAP + 48];
        rm_ckpt_dir_name(steps[i], name, sizeof name);
        snprintf(dir, sizeof dir, "%s/%s", root, name);
        rm_ckpt_manifest m;
        if (rm_ckpt_manifest_read(dir, &m, &err) != RM_OK) {
            printf("%-16s %8ld  UNUSABLE: %s\n", name, steps[i], err.msg);
            bad++;
            continue;
        }
        if (verify) {
            int ok = rm_ckpt_verify(dir, &m, &err) == RM_OK;
            bad += !ok;
            printf("%s: %s%s\n", name, ok ? "ok" : "FAILED: ", ok ? "" : err.msg);
            char cfg[17], data[17], digest[65] = "?";
            rm_hash_hex(m.config_hash, cfg);
            rm_hash_hex(m.dataset_hash, data);
            rm_error derr;
            rm_ckpt_manifest_digest(dir, digest, &derr);
            printf("  config_hash %s  dataset_index_hash %s  manifest_blake2b %s  generation %ld%s\n", cfg, data,
                   digest, m.generation, sealed(dir) ? "  (encrypted)" : "");
        } else {
            unsigned long long bytes = 0;
            for (int f = 0; f < m.n_files; f++)
                bytes += m.files[f].bytes;
            char when[32];
            time_t t = (time_t)m.created_unix;
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            printf("%-16s %8ld %10.3f %8d %4ld %12llu  %s%s\n", name, m.step, m.epoch, m.world_size, m.generation,
                   bytes, when, strcmp(latest, name) == 0 ? "  (latest)" : "");
        }
        rm_ckpt_manifest_free(&m);
    }
    free(steps);
    if (shown == 0) {
        if (only_step >= 0)
            rm_error_log("%s has no checkpoint step-%08ld", root, only_step);
        else
            printf("no committed checkpoints in %s\n", root);
        return only_step >= 0 || verify ? RM_EXIT_FATAL : RM_EXIT_OK;
    }
    return bad ? RM_EXIT_FATAL : RM_EXIT_OK;
}

/* The tensors as the ecosystem lays them out, from the manifest's hints:
 * padding rows dropped, Conv1D weights transposed to [in x out]. *out
 * (owned by the caller) holds them back to back; tensors[i].offset is
 * rewritten to point into it. */
static int export_layout(rm_ckpt_manifest *m, const float *params, float **out, rm_error *err)
{
    long total = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const rm_ckpt_tensor *t = &m->tensors[i];
        total += t->rows_used * (t->ndim == 2 ? t->shape[1] : 1);
    }
    float *buf = malloc((size_t)(total > 0 ? total : 1) * sizeof(float));
    if (!buf)
        return rm_fail(err, "out of memory");
    long at = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        rm_ckpt_tensor *t = &m->tensors[i];
        long rows = t->rows_used, cols = t->ndim == 2 ? t->shape[1] : 1;
        const float *src = params + t->offset;
        if (t->transposed) {
            for (long r = 0; r < rows; r++)
                for (long c = 0; c < cols; c++)
                    buf[at + c * rows + r] = src[r * cols + c];
            t->shape[0] = cols;
            t->shape[1] = rows;
        } else {
            memcpy(buf + at, src, (size_t)(rows * cols) * sizeof(float));
            t->shape[0] = rows;
        }
        t->offset = at;
        at += rows * cols;
    }
    *out = buf;
    return RM_OK;
}

/* config.json for Hugging Face's GPT2LMHeadModel, beside the weights. */
static int write_hf_config(const char *weights_path, const rm_ckpt_model *mm, rm_error *err)
{
    char path[RM_PATH_CAP + 16], dir[RM_PATH_CAP];
    snprintf(dir, sizeof dir, "%s", weights_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    snprintf(path, sizeof path, "%s/config.json", slash ? dir : ".");
    char text[1024];
    int len = snprintf(text, sizeof text,
                       "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
                       "  \"vocab_size\": %ld,\n  \"n_positions\": %ld,\n  \"n_ctx\": %ld,\n  \"n_embd\": %ld,\n"
                       "  \"n_layer\": %ld,\n  \"n_head\": %ld,\n  \"n_inner\": null,\n"
                       "  \"activation_function\": \"gelu_new\",\n  \"layer_norm_epsilon\": 1e-05,\n"
                       "  \"bos_token_id\": %ld,\n  \"eos_token_id\": %ld,\n  \"tie_word_embeddings\": true,\n"
                       "  \"torch_dtype\": \"float32\"\n}\n",
                       mm->vocab, mm->context, mm->context, mm->dim, mm->layers, mm->heads, mm->eot, mm->eot);
    if (rm_write_file_atomic(path, text, (size_t)len, err) != RM_OK)
        return RM_ERR;
    printf("%s: Hugging Face GPT2LMHeadModel config\n", path);
    return RM_OK;
}

/* llm.c's model file (train_gpt2.c's gpt2_build_from_checkpoint): a
 * header of 256 int32 (magic 20240326, version 3 = fp32, maxT, V, L, NH,
 * C, Vp), then the parameters tensor kind by tensor kind, every layer's
 * in turn, [out x in] as here, wte with its padding rows. */
static int write_llmc(const char *out, const rm_ckpt_manifest *m, const float *params, rm_error *err)
{
    static const char *const per_layer[] = {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                                            "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                                            "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};
    if (strcmp(m->model.type, "gpt") != 0)
        return rm_fail(err, "--format llmc writes GPT-2 models; this checkpoint holds a %s",
                       m->model.type[0] ? m->model.type : "mlp");
    const rm_ckpt_tensor *wte = NULL;
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, "transformer.wte.weight") == 0)
            wte = &m->tensors[i];
    if (!wte)
        return rm_fail(err, "the checkpoint has no transformer.wte.weight");
    int32_t header[256] = {20240326, 3, (int32_t)m->model.context, (int32_t)m->model.vocab,
                           (int32_t)m->model.layers, (int32_t)m->model.heads, (int32_t)m->model.dim,
                           (int32_t)wte->shape[0]};
    size_t n_parts = 4 + 12 * (size_t)m->model.layers + 1, k = 0;
    const void **parts = calloc(n_parts, sizeof *parts);
    size_t *lens = calloc(n_parts, sizeof *lens);
    if (!parts || !lens) {
        free(parts);
        free(lens);
        return rm_fail(err, "out of memory");
    }
    parts[k] = header;
    lens[k++] = sizeof header;
    char name[RM_PATH_CAP];
    int rc = RM_OK;
    for (int kind = -2; kind < 12 + 2 && rc == RM_OK; kind++) {
        for (long l = 0; l < (kind >= 0 && kind < 12 ? m->model.layers : 1) && rc == RM_OK; l++) {
            if (kind == -2)
                snprintf(name, sizeof name, "transformer.wte.weight");
            else if (kind == -1)
                snprintf(name, sizeof name, "transformer.wpe.weight");
            else if (kind < 12)
                snprintf(name, sizeof name, "transformer.h.%ld.%s", l, per_layer[kind]);
            else
                snprintf(name, sizeof name, "transformer.ln_f.%s", kind == 12 ? "weight" : "bias");
            const rm_ckpt_tensor *t = NULL;
            for (int i = 0; i < m->n_tensors && !t; i++)
                if (strcmp(m->tensors[i].name, name) == 0)
                    t = &m->tensors[i];
            if (!t) {
                rc = rm_fail(err, "the checkpoint has no tensor %s", name);
                break;
            }
            parts[k] = params + t->offset;
            lens[k++] = (size_t)(t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1)) * sizeof(float);
        }
    }
    if (rc == RM_OK)
        rc = rm_write_parts_atomic_mode(out, parts, lens, k, 0644, err);
    free(parts);
    free(lens);
    return rc;
}

static int cmd_export(const char *root, long step, const char *out, int llmc)
{
    rm_ckpt_manifest m;
    char dir[RM_PATH_CAP + 48];
    rm_error err;
    if (step < 0) {
        if (rm_ckpt_find_latest(root, &m, dir, sizeof dir, NULL, NULL, &err) != RM_OK) {
            rm_error_log("%s", err.msg[0] ? err.msg : "no checkpoint that verifies");
            return RM_EXIT_FATAL;
        }
    } else {
        char name[32];
        rm_ckpt_dir_name(step, name, sizeof name);
        snprintf(dir, sizeof dir, "%s/%s", root, name);
        if (rm_ckpt_manifest_read(dir, &m, &err) != RM_OK) {
            rm_error_log("%s", err.msg);
            return RM_EXIT_FATAL;
        }
    }
    float *state[3] = {malloc((size_t)m.n_params * sizeof(float)), NULL, NULL}, *laid = NULL;
    int rc = RM_EXIT_FATAL;
    if (!state[0]) {
        rm_error_log("out of memory");
    } else if (rm_ckpt_load(dir, &m, state, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
    } else if (llmc) {
        if (write_llmc(out, &m, state[0], &err) != RM_OK) {
            rm_error_log("%s", err.msg);
        } else {
            printf("%s: llm.c model file (version 3, fp32), %ld parameters from step %ld\n", out, m.n_params, m.step);
            rc = RM_EXIT_OK;
        }
    } else if (export_layout(&m, state[0], &laid, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
    } else {
        char step_text[32], digest[17];
        snprintf(step_text, sizeof step_text, "%ld", m.step);
        rm_hash_hex(rm_hash64(state[0], (size_t)m.n_params * sizeof(float)), digest);
        const char *meta[] = {"format", "pt", "producer", "ringmaster", "step", step_text, "weights_digest", digest};
        if (rm_safetensors_write(out, m.tensors, m.n_tensors, laid, meta, 4, &err) != RM_OK ||
            (strcmp(m.model.type, "gpt") == 0 && write_hf_config(out, &m.model, &err) != RM_OK)) {
            rm_error_log("%s", err.msg);
        } else {
            printf("%s: %d tensors, %ld parameters from step %ld (weights %s)\n", out, m.n_tensors, m.n_params, m.step,
                   digest);
            rc = RM_EXIT_OK;
        }
    }
    free(laid);
    free(state[0]);
    rm_ckpt_manifest_free(&m);
    return rc;
}

int rm_ckpt_tool_main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return RM_EXIT_USAGE;
    }
    const char *cmd = argv[0], *run_dir = argv[1], *out = NULL;
    long step = -1;
    int llmc = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
            i++;
            if (strcmp(argv[i], "llmc") == 0) {
                llmc = 1;
            } else if (strcmp(argv[i], "safetensors") != 0) {
                rm_error_log("--format %s: the export formats are: safetensors, llmc", argv[i]);
                return RM_EXIT_USAGE;
            }
        } else if (strcmp(argv[i], "--step") == 0 && i + 1 < argc) {
            char *end;
            step = strtol(argv[++i], &end, 10);
            if (*end || step < 0) {
                rm_error_log("--step needs a step number, got '%s'", argv[i]);
                return RM_EXIT_USAGE;
            }
        } else if (!out && argv[i][0] != '-') {
            out = argv[i];
        } else {
            usage();
            return RM_EXIT_USAGE;
        }
    }
    char root[RM_PATH_CAP];
    if (ckpt_root(run_dir, root, sizeof root) != RM_OK)
        return RM_EXIT_FATAL;
    if (strcmp(cmd, "list") == 0 && !out)
        return cmd_list(root, 0, step);
    if (strcmp(cmd, "verify") == 0 && !out)
        return cmd_list(root, 1, step);
    if (strcmp(cmd, "export") == 0 && out)
        return cmd_export(root, step, out, llmc);
    usage();
    return RM_EXIT_USAGE;
}
