#include "checkpoint.h"

#include "crypto.h"
#include "fsutil.h"
#include "hash.h"
#include "le_bytes.h"
#include "json.h"
#include "log.h"
#include "yaml_tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include <xxhash.h>

#define MANIFEST_NAME "manifest.json"
#define MANIFEST_MAX_BYTES (64u << 20)
#define MANIFEST_MAX_NODES (16u * RM_CKPT_MAX_FILES + 4096u)
#define SEAL_CHUNK_BYTES (1u << 20)

void rm_ckpt_dir_name(long step, char *out, size_t cap)
{
    snprintf(out, cap, "step-%08ld", step);
}

void rm_ckpt_tmp_dir_name(long step, long generation, char *out, size_t cap)
{
    if (generation > 0)
        snprintf(out, cap, "step-%08ld.g%ld.tmp", step, generation);
    else
        snprintf(out, cap, "step-%08ld.tmp", step);
}

static void file_name(int worker, char *out, size_t cap)
{
    snprintf(out, cap, "worker-%05d.rmc", worker);
}

/* Big sequential writes: few system calls, and each one a large request
 * for the device. */
#define WRITE_CHUNK_BYTES ((size_t)8 << 20)
/* O_DIRECT needs the buffer, the offset and the length aligned to the
 * device's logical block; a page covers every common one. */
#define IMAGE_ALIGN_BYTES ((size_t)4096)
/* Images this large go on 2 MiB boundaries so the kernel can back them
 * with huge pages (fewer TLB misses in the snapshot copy). */
#define IMAGE_HUGE_BYTES ((size_t)2 << 20)

int rm_ckpt_image_init(rm_ckpt_image *im, long begin, long end, int n_state, rm_error *err)
{
    memset(im, 0, sizeof *im);
    if (begin < 0 || end < begin || n_state < 1 || n_state > 3)
        return rm_fail(err, "checkpoint image: bad slice [%ld, %ld) x %d", begin, end, n_state);
    size_t bytes = RM_CKPT_HEADER_BYTES + (size_t)(end - begin) * sizeof(float) * (size_t)n_state;
    size_t align = bytes >= IMAGE_HUGE_BYTES ? IMAGE_HUGE_BYTES : IMAGE_ALIGN_BYTES;
    size_t cap = (bytes + align - 1) / align * align;
    void *base = NULL;
    if (posix_memalign(&base, align, cap) != 0)
        return rm_fail(err, "out of memory for a %zu-byte checkpoint image", cap);
#ifdef MADV_HUGEPAGE
    if (align == IMAGE_HUGE_BYTES)
        madvise(base, cap, MADV_HUGEPAGE); /* a hint: without it, small pages */
#endif
    /* Touched now, not in the first checkpoint's step: the page faults of
     * the first snapshot would otherwise be a stall. The padding stays
     * zero; it is written with the last block and cut off. */
    memset(base, 0, cap);
    im->base = base;
    im->cap = cap;
    im->begin = begin;
    im->end = end;
    im->n_state = n_state;
    return RM_OK;
}

void rm_ckpt_image_free(rm_ckpt_image *im)
{
    free(im->base);
    memset(im, 0, sizeof *im);
}

float *rm_ckpt_image_slice(const rm_ckpt_image *im, int k)
{
    return (float *)(im->base + RM_CKPT_HEADER_BYTES + (size_t)k * (size_t)(im->end - im->begin) * sizeof(float));
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        size_t want = len < WRITE_CHUNK_BYTES ? len : WRITE_CHUNK_BYTES;
        ssize_t n = write(fd, p, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            errno = ENOSPC;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void fill_header(uint8_t header[RM_CKPT_HEADER_BYTES], int worker, long step, long begin, long end,
                        int n_state, uint32_t protection)
{
    memset(header, 0, RM_CKPT_HEADER_BYTES);
    memcpy(header, RM_CKPT_MAGIC, 8);
    rm_put_u32(header + 8, 1);
    rm_put_u32(header + 12, protection);
    rm_put_u64(header + 16, (uint64_t)step);
    rm_put_u32(header + 24, (uint32_t)worker);
    rm_put_u32(header + 28, (uint32_t)n_state);
    rm_put_u64(header + 32, (uint64_t)begin);
    rm_put_u64(header + 40, (uint64_t)end);
    rm_put_u64(header + 48, (uint64_t)(end - begin) * sizeof(float) * (uint64_t)n_state);
}

/* The payload's checksum, computed on a thread of its own while the file
 * is written: the data is final before the first byte goes out, so the
 * hash never holds the write up, and the write costs hash + I/O only when
 * no core is free. */
typedef struct hash_job {
    const float *const *slices;
    int n_state;
    size_t slice_bytes;
    uint64_t checksum;
    int failed;
    pthread_t thread;
    int started;
} hash_job;

static void *hash_main(void *arg)
{
    hash_job *j = arg;
    XXH3_state_t *hs = XXH3_createState();
    if (!hs) {
        j->failed = 1;
        return NULL;
    }
    XXH3_64bits_reset(hs);
    for (int k = 0; k < j->n_state; k++)
        XXH3_64bits_update(hs, j->slices[k], j->slice_bytes);
    j->checksum = XXH3_64bits_digest(hs);
    XXH3_freeState(hs);
    return NULL;
}

static void hash_start(hash_job *j, const float *const *slices, int n_state, size_t slice_bytes)
{
    memset(j, 0, sizeof *j);
    j->slices = slices;
    j->n_state = n_state;
    j->slice_bytes = slice_bytes;
    j->started = pthread_create(&j->thread, NULL, hash_main, j) == 0;
    if (!j->started) /* no thread to be had: hash here, before the write */
        hash_main(j);
}

static int hash_finish(hash_job *j, uint64_t *checksum, rm_error *err)
{
    if (j->started)
        pthread_join(j->thread, NULL);
    j->started = 0;
    if (j->failed)
        return rm_fail(err, "out of memory hashing a checkpoint file");
    *checksum = j->checksum;
    return RM_OK;
}

/* Writes len bytes of buf (page-aligned, readable up to len rounded up to
 * a page) from offset 0 of fd: O_DIRECT in WRITE_CHUNK_BYTES requests when
 * fd was opened so, the last block padded and the file cut back to len.
 * A file system that refuses direct I/O (tmpfs; some network ones) gets
 * the same requests through the page cache. */
static int write_image(int fd, int direct, const uint8_t *buf, size_t len, const char *path, rm_error *err)
{
    size_t padded = direct ? (len + IMAGE_ALIGN_BYTES - 1) / IMAGE_ALIGN_BYTES * IMAGE_ALIGN_BYTES : len;
    size_t at = 0;
    while (at < padded) {
        size_t want = padded - at < WRITE_CHUNK_BYTES ? padded - at : WRITE_CHUNK_BYTES;
        ssize_t n = pwrite(fd, buf + at, want, (off_t)at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EINVAL && direct) {
            /* direct I/O refused for this file or at this (unaligned, after
             * a short write) offset: go on through the page cache */
            int fl = fcntl(fd, F_GETFL);
            if (fl == -1 || fcntl(fd, F_SETFL, fl & ~O_DIRECT) != 0)
                return rm_fail_errno(err, errno, "%s: cannot turn direct I/O off", path);
            direct = 0;
            padded = len > at ? len : at;
            continue;
        }
        if (n <= 0)
            return rm_fail_errno(err, n < 0 ? errno : ENOSPC, "%s: write failed after %zu of %zu bytes", path, at,
                                 len);
        at += (size_t)n;
    }
    if (at != len && ftruncate(fd, (off_t)len) != 0)
        return rm_fail_errno(err, errno, "%s: cannot cut the padding off", path);
    return RM_OK;
}

/* The file of worker `worker` at step `step`, from slices that lie in an
 * image (im != NULL: written straight from it, header included) or
 * anywhere (written in large buffered requests); sealed when a key is set. */
static int write_file(const char *dir, int worker, long step, long begin, long end, const float *const *slices,
                      int n_state, rm_ckpt_image *im, rm_ckpt_file *out, rm_error *err)
{
    char name[64], path[4096];
    file_name(worker, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t slice_bytes = (size_t)(end - begin) * sizeof(float);
    uint64_t payload = (uint64_t)slice_bytes * (uint64_t)n_state;
    const rm_secret_key *key = rm_security_key();
    uint8_t header_buf[RM_CKPT_HEADER_BYTES];
    uint8_t *header = im && !key ? im->base : header_buf;
    fill_header(header, worker, step, begin, end, n_state, key ? RM_PROTECTION_XCHACHA20 : RM_CKPT_PROTECTION_PLAIN);
    memset(out, 0, sizeof *out);

    int direct = im && !key;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | (direct ? O_DIRECT : 0), 0600);
    if (fd < 0 && direct && errno == EINVAL) {
        direct = 0;
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    }
    if (fd < 0)
        return rm_fail_errno(err, errno, "%s: cannot create checkpoint file", path);
    hash_job hash;
    hash_start(&hash, slices, n_state, slice_bytes);
    int rc = RM_OK;
    if (fchmod(fd, 0600) != 0)
        rc = rm_fail_errno(err, errno, "%s: cannot set mode 0600", path);
    if (rc == RM_OK && key) {
        rm_seal_writer sw = {0};
        rc = rm_seal_writer_begin(&sw, key, fd, path, header, payload, SEAL_CHUNK_BYTES, err);
        for (int k = 0; rc == RM_OK && k < n_state; k++)
            rc = rm_seal_writer_put(&sw, slices[k], slice_bytes, err);
        if (rc == RM_OK)
            rc = rm_seal_writer_finish(&sw, err);
        rm_seal_writer_free(&sw);
    } else if (rc == RM_OK && im) {
        rc = write_image(fd, direct, im->base, RM_CKPT_HEADER_BYTES + (size_t)payload, path, err);
    } else if (rc == RM_OK) {
        if (write_all(fd, header, RM_CKPT_HEADER_BYTES) != 0)
            rc = rm_fail_errno(err, errno, "%s: write failed", path);
        for (int k = 0; rc == RM_OK && k < n_state; k++)
            if (write_all(fd, slices[k], slice_bytes) != 0)
                rc = rm_fail_errno(err, errno, "%s: write failed", path);
    }
    /* one fsync per file; the directory is fsynced once, at the commit */
    if (rc == RM_OK && fsync(fd) != 0)
        rc = rm_fail_errno(err, errno, "%s: fsync failed", path);
    if (close(fd) != 0 && rc == RM_OK)
        rc = rm_fail_errno(err, errno, "%s: close failed", path);
    uint64_t checksum = 0;
    if (hash_finish(&hash, &checksum, rc == RM_OK ? err : &(rm_error){0}) != RM_OK)
        rc = RM_ERR;
    if (rc != RM_OK) {
        unlink(path); /* never a half file that a listing could take for a part */
        return RM_ERR;
    }
    out->worker = worker;
    out->begin = begin;
    out->end = end;
    out->bytes = key ? rm_seal_file_bytes(payload, SEAL_CHUNK_BYTES) : RM_CKPT_HEADER_BYTES + payload;
    out->checksum = checksum;
    return RM_OK;
}

int rm_ckpt_write_file(const char *dir, int worker, long step, long begin, long end, const float *const *slices,
                       int n_state, rm_ckpt_file *out, rm_error *err)
{
    return write_file(dir, worker, step, begin, end, slices, n_state, NULL, out, err);
}

int rm_ckpt_write_image(const char *dir, int worker, long step, rm_ckpt_image *im, rm_ckpt_file *out, rm_error *err)
{
    const float *slices[3];
    for (int k = 0; k < im->n_state; k++)
        slices[k] = rm_ckpt_image_slice(im, k);
    return write_file(dir, worker, step, im->begin, im->end, slices, im->n_state, im, out, err);
}

int rm_ckpt_manifest_write(const char *dir, const rm_ckpt_manifest *m, const rm_model *model, rm_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return rm_fail(err, "out of memory");
    char cfg[17], train[17], data[17];
    rm_hash_hex(m->config_hash, cfg);
    rm_hash_hex(m->training_hash, train);
    rm_hash_hex(m->dataset_hash, data);
    fprintf(f, "{\n  \"format\": \"ringmaster-checkpoint\",\n  \"version\": 1,\n");
    fprintf(f, "  \"step\": %ld,\n  \"data_cursor\": %ld,\n  \"epoch\": ", m->step, m->data_cursor);
    rm_json_number(f, m->epoch);
    fprintf(f, ",\n  \"rng\": {\"seed\": %ld, \"generator\": \"counter-based splitmix64 keyed by seed, epoch, layer\"},\n",
            m->seed);
    fprintf(f, "  \"optimizer\": {\"kind\": %d, \"steps\": %ld, \"state\": [\"params\", \"m\"%s]},\n", m->optimizer,
            m->opt_steps, m->n_state == 3 ? ", \"v\"" : "");
    fprintf(f, "  \"n_params\": %ld,\n  \"world_size\": %d,\n  \"created_unix\": %ld,\n", m->n_params, m->world_size,
            m->created_unix);
    fprintf(f, "  \"config_hash\": \"%s\",\n  \"training_hash\": \"%s\",\n  \"dataset_index_hash\": \"%s\",\n", cfg,
            train, data);
    if (m->generation > 0)
        fprintf(f, "  \"generation\": %ld,\n", m->generation);
    if (m->audit_seq > 0)
        fprintf(f, "  \"audit\": {\"seq\": %ld, \"head\": \"%s\"},\n", m->audit_seq, m->audit_head);
    fprintf(f, "  \"files\": [\n");
    for (int i = 0; i < m->n_files; i++) {
        const rm_ckpt_file *cf = &m->files[i];
        char name[64], sum[17];
        file_name(cf->worker, name, sizeof name);
        rm_hash_hex(cf->checksum, sum);
        fprintf(f, "    {\"file\": \"%s\", \"worker\": %d, \"begin\": %ld, \"end\": %ld, \"bytes\": %llu, "
                   "\"checksum\": \"%s\"}%s\n",
                name, cf->worker, cf->begin, cf->end, (unsigned long long)cf->bytes, sum,
                i + 1 < m->n_files ? "," : "");
    }
    fprintf(f, "  ],\n");
    if (model && model->type == RM_MODEL_GPT)
        fprintf(f,
                "  \"model\": {\"type\": \"gpt\", \"layers\": %d, \"heads\": %d, \"dim\": %ld, \"context\": %ld, "
                "\"vocab\": %ld, \"eot\": %ld, \"tokenizer\": \"%s\"},\n",
                model->gpt.layers, model->gpt.heads, model->gpt.dim, model->gpt.context, model->gpt.vocab, model->eot,
                model->tokenizer);
    else if (model)
        fprintf(f, "  \"model\": {\"type\": \"%s\"},\n", model->name);
    fprintf(f, "  \"tensors\": [\n");
    for (int i = 0; model && i < model->n_tensors; i++) {
        const rm_param_tensor *t = &model->tensors[i];
        fprintf(f, "    {\"name\": \"%s\", \"offset\": %ld, \"shape\": [%ld", t->name, t->offset, t->shape[0]);
        if (t->ndim == 2)
            fprintf(f, ", %ld", t->shape[1]);
        fputs("]", f);
        if (t->transposed)
            fputs(", \"transposed\": true", f);
        if (t->rows_used != t->shape[0])
            fprintf(f, ", \"rows_used\": %ld", t->rows_used);
        fprintf(f, "}%s\n", i + 1 < model->n_tensors ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, MANIFEST_NAME);
    int rc = rm_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

static int get_long(const rm_yaml_node *map, const char *key, long *out, const char *path, rm_error *err)
{
    const rm_yaml_node *n = rm_yaml_get(map, key);
    char *end;
    if (!n || n->kind != RM_YAML_SCALAR)
        return rm_fail(err, "%s: missing '%s'", path, key);
    errno = 0;
    long long v = strtoll(n->value, &end, 10);
    if (errno || *end || !n->value[0])
        return rm_fail(err, "%s:%d:%d: '%s' is not an integer", path, n->line, n->col, key);
    *out = (long)v;
    return RM_OK;
}

static int get_hash(const rm_yaml_node *map, const char *key, uint64_t *out, const char *path, rm_error *err)
{
    const rm_yaml_node *n = rm_yaml_get(map, key);
    if (!n || n->kind != RM_YAML_SCALAR || rm_hash_parse(n->value, out) != RM_OK)
        return rm_fail(err, "%s: missing or bad '%s'", path, key);
    return RM_OK;
}

int rm_ckpt_manifest_read(const char *dir, rm_ckpt_manifest *m, rm_error *err)
{
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, MANIFEST_NAME);
    rm_yaml_doc doc;
    if (rm_yaml_parse_file_limits(path, MANIFEST_MAX_BYTES, MANIFEST_MAX_NODES, &doc, err) != RM_OK) {
        rm_yaml_free(&doc);
        return RM_ERR;
    }
    int rc = RM_ERR;
    const rm_yaml_node *root = doc.root, *n;
    long v;
    if (!root || root->kind != RM_YAML_MAPPING || !(n = rm_yaml_get(root, "format")) || n->kind != RM_YAML_SCALAR ||
        strcmp(n->value, "ringmaster-checkpoint") != 0) {
        rm_fail(err, "%s: not a ringmaster checkpoint manifest", path);
        goto out;
    }
    if (get_long(root, "version", &v, path, err) != RM_OK)
        goto out;
    if (v != 1) {
        rm_fail(err, "%s: manifest version %ld is not supported", path, v);
        goto out;
    }
    const rm_yaml_node *opt = rm_yaml_get(root, "optimizer"), *rng = rm_yaml_get(root, "rng");
    long world, kind, n_files;
    if (get_long(root, "step", &m->step, path, err) != RM_OK ||
        get_long(root, "data_cursor", &m->data_cursor, path, err) != RM_OK ||
        get_long(root, "n_params", &m->n_params, path, err) != RM_OK ||
        get_long(root, "world_size", &world, path, err) != RM_OK ||
        get_long(root, "created_unix", &m->created_unix, path, err) != RM_OK ||
        get_long(rng, "seed", &m->seed, path, err) != RM_OK || get_long(opt, "kind", &kind, path, err) != RM_OK ||
        get_long(opt, "steps", &m->opt_steps, path, err) != RM_OK ||
        get_hash(root, "config_hash", &m->config_hash, path, err) != RM_OK ||
        get_hash(root, "training_hash", &m->training_hash, path, err) != RM_OK ||
        get_hash(root, "dataset_index_hash", &m->dataset_hash, path, err) != RM_OK)
        goto out;
    const rm_yaml_node *state = rm_yaml_get(opt, "state"), *epoch = rm_yaml_get(root, "epoch");
    const rm_yaml_node *files = rm_yaml_get(root, "files");
    if (!state || state->kind != RM_YAML_SEQUENCE || state->count < 2 || state->count > 3 || !files ||
        files->kind != RM_YAML_SEQUENCE || files->count < 1 || files->count > RM_CKPT_MAX_FILES || !epoch ||
        epoch->kind != RM_YAML_SCALAR) {
        rm_fail(err, "%s: malformed optimizer state, epoch or file table", path);
        goto out;
    }
    m->epoch = strtod(epoch->value, NULL);
    m->n_state = (int)state->count;
    m->optimizer = (int)kind;
    m->world_size = (int)world;
    n_files = (long)files->count;
    if (m->step < 0 || m->n_params <= 0 || m->world_size <= 0 || m->data_cursor < 0) {
        rm_fail(err, "%s: out-of-range step, parameter count or world size", path);
        goto out;
    }
    m->files = calloc((size_t)n_files, sizeof *m->files);
    if (!m->files) {
        rm_fail(err, "out of memory");
        goto out;
    }
    long covered = 0;
    for (long i = 0; i < n_files; i++) {
        const rm_yaml_node *e = files->items[i];
        rm_ckpt_file *cf = &m->files[i];
        long worker, bytes;
        if (get_long(e, "worker", &worker, path, err) != RM_OK || get_long(e, "begin", &cf->begin, path, err) != RM_OK ||
            get_long(e, "end", &cf->end, path, err) != RM_OK || get_long(e, "bytes", &bytes, path, err) != RM_OK ||
            get_hash(e, "checksum", &cf->checksum, path, err) != RM_OK)
            goto out;
        cf->worker = (int)worker;
        cf->bytes = (uint64_t)bytes;
        /* Files must tile [0, n_params) in order: nothing missing, nothing twice. */
        if (cf->worker != i || cf->begin != covered || cf->end < cf->begin || cf->end > m->n_params) {
            rm_fail(err, "%s: file table entry %ld does not continue the parameter range", path, i);
            goto out;
        }
        covered = cf->end;
    }
    if (covered != m->n_params) {
        rm_fail(err, "%s: files cover %ld of %ld parameters", path, covered, m->n_params);
        goto out;
    }
    m->n_files = (int)n_files;
    const rm_yaml_node *tensors = rm_yaml_get(root, "tensors");
    if (!tensors || tensors->kind != RM_YAML_SEQUENCE || tensors->count > 2 * 1024) {
        rm_fail(err, "%s: missing or malformed tensor table", path);
        goto out;
    }
    m->tensors = calloc(tensors->count + 1, sizeof *m->tensors);
    if (!m->tensors) {
        rm_fail(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < tensors->count; i++) {
        const rm_yaml_node *e = tensors->items[i], *name = rm_yaml_get(e, "name"), *shape = rm_yaml_get(e, "shape");
        rm_ckpt_tensor *t = &m->tensors[i];
        long size = 1;
        if (!name || name->kind != RM_YAML_SCALAR || strlen(name->value) >= sizeof t->name || !shape ||
            shape->kind != RM_YAML_SEQUENCE || shape->count < 1 || shape->count > 2 ||
            get_long(e, "offset", &t->offset, path, err) != RM_OK) {
            rm_fail(err, "%s: malformed tensor entry %zu", path, i);
            goto out;
        }
        snprintf(t->name, sizeof t->name, "%s", name->value);
        t->ndim = (int)shape->count;
        for (int d = 0; d < t->ndim; d++) {
            const rm_yaml_node *dim = shape->items[d];
            char *end;
            t->shape[d] = dim->kind == RM_YAML_SCALAR ? strtol(dim->value, &end, 10) : -1;
            if (t->shape[d] <= 0 || t->shape[d] > m->n_params) {
                rm_fail(err, "%s: tensor %s has a bad shape", path, t->name);
                goto out;
            }
            size *= t->shape[d];
        }
        if (t->offset < 0 || size > m->n_params || t->offset > m->n_params - size) {
            rm_fail(err, "%s: tensor %s lies outside the parameters", path, t->name);
            goto out;
        }
        const rm_yaml_node *tr = rm_yaml_get(e, "transposed");
        t->transposed = tr && tr->kind == RM_YAML_SCALAR && strcmp(tr->value, "true") == 0;
        t->rows_used = t->shape[0];
        if (rm_yaml_get(e, "rows_used") && (get_long(e, "rows_used", &t->rows_used, path, err) != RM_OK ||
                                            t->rows_used < 1 || t->rows_used > t->shape[0])) {
            rm_fail(err, "%s: tensor %s has a bad rows_used", path, t->name);
            goto out;
        }
        if (t->transposed && t->ndim != 2) {
            rm_fail(err, "%s: tensor %s is marked transposed but is not a matrix", path, t->name);
            goto out;
        }
    }
    m->n_tensors = (int)tensors->count;
    if (rm_yaml_get(root, "generation") && /* absent from checkpoints before generations */
        (get_long(root, "generation", &m->generation, path, err) != RM_OK || m->generation < 1)) {
        rm_fail(err, "%s: malformed generation", path);
        goto out;
    }
    const rm_yaml_node *audit = rm_yaml_get(root, "audit");
    if (audit) { /* checkpoints from before the audit head was recorded have none */
        const rm_yaml_node *head = rm_yaml_get(audit, "head");
        if (audit->kind != RM_YAML_MAPPING || get_long(audit, "seq", &m->audit_seq, path, err) != RM_OK ||
            m->audit_seq < 1 || !head || head->kind != RM_YAML_SCALAR || strlen(head->value) != 64 ||
            head->value[strspn(head->value, "0123456789abcdef")] != '\0') {
            rm_fail(err, "%s: malformed audit head", path);
            goto out;
        }
        snprintf(m->audit_head, sizeof m->audit_head, "%s", head->value);
    }
    const rm_yaml_node *model = rm_yaml_get(root, "model");
    if (model && model->kind == RM_YAML_MAPPING) {
        const rm_yaml_node *type = rm_yaml_get(model, "type");
        if (type && type->kind == RM_YAML_SCALAR)
            snprintf(m->model.type, sizeof m->model.type, "%s", type->value);
        const rm_yaml_node *tok = rm_yaml_get(model, "tokenizer");
        if (tok && tok->kind == RM_YAML_SCALAR)
            snprintf(m->model.tokenizer, sizeof m->model.tokenizer, "%s", tok->value);
        if (strcmp(m->model.type, "gpt") == 0 &&
            (get_long(model, "layers", &m->model.layers, path, err) != RM_OK ||
             get_long(model, "heads", &m->model.heads, path, err) != RM_OK ||
             get_long(model, "dim", &m->model.dim, path, err) != RM_OK ||
             get_long(model, "context", &m->model.context, path, err) != RM_OK ||
             get_long(model, "vocab", &m->model.vocab, path, err) != RM_OK ||
             get_long(model, "eot", &m->model.eot, path, err) != RM_OK))
            goto out;
    }
    rc = RM_OK;
out:
    rm_yaml_free(&doc);
    if (rc != RM_OK)
        rm_ckpt_manifest_free(m);
    return rc;
}

void rm_ckpt_manifest_free(rm_ckpt_manifest *m)
{
    free(m->files);
    free(m->tensors);
    m->files = NULL;
    m->tensors = NULL;
    m->n_files = 0;
    m->n_tensors = 0;
}

/* Opens one file, checks size and header, and (payload) streams its
 * payload through the checksum; when dst is not NULL the slices land in
 * dst[k] + begin. */
static int read_file(const char *dir, const rm_ckpt_manifest *m, const rm_ckpt_file *cf, float *const *dst,
                     int payload_too, rm_error *err)
{
    char name[64], path[4096];
    file_name(cf->worker, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rm_fail_errno(err, errno, "%s: cannot open", path);
    struct stat st;
    uint8_t h[RM_CKPT_HEADER_BYTES];
    int rc = RM_ERR;
    rm_seal_reader sr = {0};
    XXH3_state_t *hs = XXH3_createState();
    size_t slice = (size_t)(cf->end - cf->begin) * sizeof(float);
    size_t buf_cap = 1u << 20;
    char *buf = malloc(buf_cap);
    if (!hs || !buf) {
        rm_fail(err, "out of memory");
        goto out;
    }
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != cf->bytes) {
        rm_fail(err, "%s: is %lld bytes, the manifest says %llu (truncated or replaced)", path, (long long)st.st_size,
                (unsigned long long)cf->bytes);
        goto out;
    }
    if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h, RM_CKPT_MAGIC, 8) != 0 || rm_get_u32(h + 8) != 1) {
        rm_fail(err, "%s: not a ringmaster checkpoint file (bad magic or version)", path);
        goto out;
    }
    uint32_t protection = rm_get_u32(h + 12);
    if (protection != RM_CKPT_PROTECTION_PLAIN && protection != RM_PROTECTION_XCHACHA20) {
        rm_fail(err, "%s: payload protection %u is not supported by this build", path, protection);
        goto out;
    }
    uint64_t payload = rm_get_u64(h + 48);
    if (rm_get_u64(h + 16) != (uint64_t)m->step || rm_get_u32(h + 28) != (uint32_t)m->n_state ||
        rm_get_u64(h + 32) != (uint64_t)cf->begin || rm_get_u64(h + 40) != (uint64_t)cf->end ||
        payload != (uint64_t)slice * (uint64_t)m->n_state ||
        (protection == RM_CKPT_PROTECTION_PLAIN && RM_CKPT_HEADER_BYTES + payload != cf->bytes)) {
        rm_fail(err, "%s: header disagrees with the manifest", path);
        goto out;
    }
    if (!payload_too) {
        rc = RM_OK;
        goto out;
    }
    XXH3_64bits_reset(hs);
    if (protection == RM_PROTECTION_XCHACHA20) {
        if (rm_seal_reader_open(&sr, rm_security_key(), fd, path, h, payload, (uint64_t)st.st_size, err) != RM_OK)
            goto out;
        if (sr.chunk_bytes > (1u << 20)) {
            free(buf);
            buf_cap = sr.chunk_bytes;
            if (!(buf = malloc(buf_cap))) {
                rm_fail(err, "out of memory");
                goto out;
            }
        }
        /* chunks cut across the state tensors: copy each piece where it goes */
        uint64_t at_payload = 0;
        for (uint64_t c = 0; c < sr.n_chunks; c++) {
            size_t len;
            if (rm_seal_reader_chunk(&sr, c, (uint8_t *)buf, &len, err) != RM_OK)
                goto out;
            XXH3_64bits_update(hs, buf, len);
            size_t used = 0;
            while (used < len && slice > 0) {
                int k = (int)(at_payload / slice);
                size_t in_slice = (size_t)(at_payload % slice);
                size_t take = slice - in_slice < len - used ? slice - in_slice : len - used;
                if (dst && dst[k])
                    memcpy((char *)(dst[k] + cf->begin) + in_slice, buf + used, take);
                used += take;
                at_payload += take;
            }
        }
    } else {
        off_t at = RM_CKPT_HEADER_BYTES;
        for (int k = 0; k < m->n_state; k++) {
            size_t done = 0;
            while (done < slice) {
                size_t want = slice - done < (1u << 20) ? slice - done : (1u << 20);
                char *into = dst && dst[k] ? (char *)(dst[k] + cf->begin) + done : buf;
                ssize_t n = pread(fd, into, want, at);
                if (n <= 0) {
                    rm_fail_errno(err, n < 0 ? errno : EIO, "%s: read failed", path);
                    goto out;
                }
                XXH3_64bits_update(hs, into, (size_t)n);
                done += (size_t)n;
                at += n;
            }
        }
    }
    if (XXH3_64bits_digest(hs) != cf->checksum) {
        rm_fail(err, "%s: checksum mismatch: the file is damaged", path);
        goto out;
    }
    rc = RM_OK;
out:
    if (hs)
        XXH3_freeState(hs);
    rm_seal_reader_free(&sr);
    if (buf)
        sodium_memzero(buf, buf_cap);
    free(buf);
    close(fd);
    return rc;
}

int rm_ckpt_verify(const char *dir, const rm_ckpt_manifest *m, rm_error *err)
{
    for (int i = 0; i < m->n_files; i++)
        if (read_file(dir, m, &m->files[i], NULL, 1, err) != RM_OK)
            return RM_ERR;
    return RM_OK;
}

int rm_ckpt_verify_parts(const char *dir, const rm_ckpt_manifest *m, rm_error *err)
{
    for (int i = 0; i < m->n_files; i++) {
        const rm_ckpt_file *cf = &m->files[i];
        if (cf->worker != i)
            return rm_fail(err, "%s: no part from worker %d", dir, i);
        if (i > 0 && cf->begin != m->files[i - 1].end)
            return rm_fail(err, "%s: worker %d's slice [%ld, %ld) does not follow worker %d's (ends at %ld)", dir, i,
                           cf->begin, cf->end, i - 1, m->files[i - 1].end);
        if (read_file(dir, m, cf, NULL, 0, err) != RM_OK)
            return RM_ERR;
    }
    if (m->n_files > 0 && (m->files[0].begin != 0 || m->files[m->n_files - 1].end != m->n_params))
        return rm_fail(err, "%s: the parts cover [%ld, %ld), not the %ld parameters", dir, m->files[0].begin,
                       m->files[m->n_files - 1].end, m->n_params);
    return RM_OK;
}

int rm_ckpt_load(const char *dir, const rm_ckpt_manifest *m, float *const *out, rm_error *err)
{
    for (int i = 0; i < m->n_files; i++)
        if (read_file(dir, m, &m->files[i], out, 1, err) != RM_OK)
            return RM_ERR;
    return RM_OK;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int rm_ckpt_commit(const char *root, const char *tmp_dir, long step, rm_error *err)
{
    char name[32], final_dir[4096], latest[4096];
    rm_ckpt_dir_name(step, name, sizeof name);
    snprintf(final_dir, sizeof final_dir, "%s/%s", root, name);
    fsync_dir(tmp_dir);
    int rc = rename(tmp_dir, final_dir);
    if (rc != 0 && (errno == ENOTEMPTY || errno == EEXIST)) {
        /* A checkpoint of this step is already there: one that failed to
         * verify, which the resume skipped, so training came back through
         * this step. It is moved aside, not deleted (nothing saved is
         * destroyed), under a name that listing and pruning ignore. */
        char aside[4096 + 64];
        snprintf(aside, sizeof aside, "%s.unverified-%ld-%d", final_dir, (long)time(NULL), (int)getpid());
        if (rename(final_dir, aside) != 0)
            return rm_fail_errno(err, errno, "%s: cannot move the unverified %s aside", tmp_dir, final_dir);
        rm_warn("%s was there and did not verify: moved to %s, replaced by the new checkpoint", final_dir, aside);
        rc = rename(tmp_dir, final_dir);
    }
    if (rc != 0)
        return rm_fail_errno(err, errno, "%s: cannot rename to %s", tmp_dir, final_dir);
    fsync_dir(root);
    char text[48];
    int len = snprintf(text, sizeof text, "%s\n", name);
    snprintf(latest, sizeof latest, "%s/latest", root);
    return rm_write_file_atomic(latest, text, (size_t)len, err);
}

/* "step-N" (committed), "step-N.tmp" (generation 0) or "step-N.gG.tmp". */
static int parse_step_dir(const char *name, long *step, int *tmp, long *generation)
{
    char *end;
    if (strncmp(name, "step-", 5) != 0)
        return 0;
    long v = strtol(name + 5, &end, 10);
    if (end == name + 5 || v < 0)
        return 0;
    *generation = 0;
    if (*end == '\0') {
        *tmp = 0;
    } else if (strcmp(end, ".tmp") == 0) {
        *tmp = 1;
    } else if (strncmp(end, ".g", 2) == 0) {
        char *gend;
        long g = strtol(end + 2, &gend, 10);
        if (gend == end + 2 || g < 1 || strcmp(gend, ".tmp") != 0)
            return 0;
        *tmp = 1;
        *generation = g;
    } else {
        return 0;
    }
    *step = v;
    return 1;
}

static int cmp_desc(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The committed (want_tmp 0) or temporary directories' steps, newest
 * first; with gens, each one's generation too (not sorted along: for
 * temporary directories, which are not sorted). */
static int scan(const char *root, int want_tmp, long **steps, long **gens, int *n, rm_error *err)
{
    *steps = NULL;
    if (gens)
        *gens = NULL;
    *n = 0;
    DIR *d = opendir(root);
    if (!d) {
        if (errno == ENOENT)
            return RM_OK;
        return rm_fail_errno(err, errno, "%s: cannot list checkpoints", root);
    }
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long step, gen;
        int tmp;
        if (!parse_step_dir(e->d_name, &step, &tmp, &gen) || tmp != want_tmp)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            long *grown = realloc(*steps, (size_t)cap * sizeof *grown);
            long *grown_gens = grown && gens ? realloc(*gens, (size_t)cap * sizeof *grown_gens) : NULL;
            if (grown)
                *steps = grown;
            if (grown_gens)
                *gens = grown_gens;
            if (!grown || (gens && !grown_gens)) {
                closedir(d);
                free(*steps);
                *steps = NULL;
                if (gens) {
                    free(*gens);
                    *gens = NULL;
                }
                *n = 0;
                return rm_fail(err, "out of memory");
            }
        }
        if (gens)
            (*gens)[*n] = gen;
        (*steps)[(*n)++] = step;
    }
    closedir(d);
    if (*n > 1 && !gens)
        qsort(*steps, (size_t)*n, sizeof **steps, cmp_desc);
    return RM_OK;
}

int rm_ckpt_list(const char *root, long **steps, int *n, rm_error *err)
{
    return scan(root, 0, steps, NULL, n, err);
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

void rm_ckpt_discard_tmp(const char *root, long step, long generation)
{
    char name[48], path[4096];
    rm_ckpt_tmp_dir_name(step, generation, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", root, name);
    remove_tree(path);
}

void rm_ckpt_prune(const char *root, int keep, long keep_tmp_before_step, long generation)
{
    long *steps, *gens;
    int n;
    char name[48], path[4096];
    if (scan(root, 0, &steps, NULL, &n, NULL) == RM_OK) {
        for (int i = keep; i < n; i++) {
            rm_ckpt_dir_name(steps[i], name, sizeof name);
            snprintf(path, sizeof path, "%s/%s", root, name);
            remove_tree(path);
        }
        free(steps);
    }
    if (scan(root, 1, &steps, &gens, &n, NULL) == RM_OK) {
        for (int i = 0; i < n; i++)
            if (gens[i] < generation || (gens[i] == generation && steps[i] < keep_tmp_before_step)) {
                rm_ckpt_tmp_dir_name(steps[i], gens[i], name, sizeof name);
                snprintf(path, sizeof path, "%s/%s", root, name);
                remove_tree(path);
            }
        free(steps);
        free(gens);
    }
}

int rm_ckpt_manifest_digest(const char *dir, char out[65], rm_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, MANIFEST_NAME);
    size_t len;
    char *text = rm_read_file(path, MANIFEST_MAX_BYTES, "manifest is implausibly large", &len, err);
    if (!text)
        return RM_ERR;
    uint8_t d[32];
    crypto_generichash(d, sizeof d, (const unsigned char *)text, len, NULL, 0);
    sodium_bin2hex(out, 65, d, sizeof d);
    free(text);
    return RM_OK;
}

int rm_ckpt_check_latest(const char *root, rm_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/latest", root);
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISLNK(st.st_mode))
        return RM_OK;
    char *real_root = realpath(root, NULL), *target = realpath(path, NULL);
    int inside = 0;
    if (real_root && target) {
        size_t n = strlen(real_root);
        inside = strncmp(target, real_root, n) == 0 && target[n] == '/';
    }
    int rc = inside ? RM_OK
                    : rm_fail(err, "%s is a symbolic link to %s, outside %s: refusing it (remove it; ringmaster "
                                   "rewrites latest at the next checkpoint)",
                              path, target ? target : "a missing file", root);
    free(real_root);
    free(target);
    return rc;
}

/* A checkpoint sealed with another key (or read without one) is not
 * damaged: falling back to an older one, or to step 0, would silently throw
 * training away, so the search stops there. */
static int sealed_for_another_key(const char *dir, rm_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/worker-00000.rmc", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    uint8_t h[RM_CKPT_HEADER_BYTES + RM_SEAL_HEADER_BYTES];
    int other = pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h && memcmp(h, RM_CKPT_MAGIC, 8) == 0 &&
                rm_get_u32(h + 12) == RM_PROTECTION_XCHACHA20 &&
                !rm_key_matches_seal(rm_security_key(), h + RM_CKPT_HEADER_BYTES);
    close(fd);
    if (other)
        rm_fail(err, "%s: is encrypted with %s (set security.key_file to the key it was written with; if that is "
                     "the key, worker-00000.rmc's seal header is damaged: remove this checkpoint to fall back to "
                     "an older one)",
                dir, rm_security_key() ? "another key than security.key_file" : "a key, and no key was given");
    return other;
}

static int find_newest(const char *root, rm_ckpt_manifest *m, char *dir, size_t dir_cap, rm_ckpt_skip_fn skipped,
                       void *ctx, int verify, rm_error *err)
{
    long *steps;
    int n;
    dir[0] = '\0';
    if (rm_ckpt_check_latest(root, err) != RM_OK)
        return RM_ERR;
    if (scan(root, 0, &steps, NULL, &n, err) != RM_OK)
        return RM_ERR;
    for (int i = 0; i < n; i++) {
        char name[32];
        rm_ckpt_dir_name(steps[i], name, sizeof name);
        snprintf(dir, dir_cap, "%s/%s", root, name);
        rm_error why;
        struct stat st;
        if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode)) {
            snprintf(why.msg, sizeof why.msg, "%s: is a symbolic link; checkpoints are real directories", dir);
            if (skipped)
                skipped(ctx, dir, why.msg);
            continue;
        }
        if (sealed_for_another_key(dir, err)) {
            free(steps);
            return RM_ERR;
        }
        if (rm_ckpt_manifest_read(dir, m, &why) == RM_OK) {
            if (m->step == steps[i] && (!verify || rm_ckpt_verify(dir, m, &why) == RM_OK)) {
                free(steps);
                return RM_OK;
            }
            if (m->step != steps[i])
                snprintf(why.msg, sizeof why.msg, "%s: manifest says step %ld", dir, m->step);
            rm_ckpt_manifest_free(m);
        }
        if (skipped)
            skipped(ctx, dir, why.msg);
    }
    free(steps);
    dir[0] = '\0';
    err->msg[0] = '\0';
    return RM_ERR;
}

int rm_ckpt_find_latest(const char *root, rm_ckpt_manifest *m, char *dir, size_t dir_cap, rm_ckpt_skip_fn skipped,
                        void *ctx, rm_error *err)
{
    return find_newest(root, m, dir, dir_cap, skipped, ctx, 1, err);
}

int rm_ckpt_find_newest_manifest(const char *root, rm_ckpt_manifest *m, char *dir, size_t dir_cap, rm_error *err)
{
    return find_newest(root, m, dir, dir_cap, NULL, NULL, 0, err);
}

int rm_ckpt_check_job(const rm_ckpt_manifest *m, const char *dir, uint64_t training_hash, uint64_t dataset_hash,
                      long n_params, rm_error *err)
{
    if (m->training_hash != training_hash)
        return rm_fail(err,
                       "checkpoint %s was made by a different model, data or train config; resume it with the config "
                       "in its run directory, or start in a new --run-dir",
                       dir);
    if (m->dataset_hash != dataset_hash || (n_params >= 0 && m->n_params != n_params))
        return rm_fail(err, "checkpoint %s was made on another dataset index or model size", dir);
    return RM_OK;
}
