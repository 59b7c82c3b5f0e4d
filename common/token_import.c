#include "token_import.h"

#include "fsutil.h"
#include "le_bytes.h"
#include "shard.h"
#include "tokenizer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define OUT_DIR_MODE 0755 /* a dataset is meant to be shared */
#define LLMC_CHUNK 16384  /* tokens converted at a time */

/* ---- the output directory: staged in a temporary sibling, renamed into place ---- */

typedef struct staging {
    char final[4096];
    char tmp[4096 + 16];
    char created_top[4096]; /* the highest missing ancestor this import created ("": none) */
} staging;

/* Writes the directory holding path into out (dirname works in place). */
static void parent_of(const char *path, char *out, size_t cap)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    snprintf(out, cap, "%s", dirname(copy));
}

/* Checks that final may be written (absent, or an empty directory),
 * creates its missing parents and the temporary sibling. */
static int staging_begin(staging *o, const char *final, const char *flag, rm_error *err)
{
    memset(o, 0, sizeof *o);
    if (!final[0] || snprintf(o->final, sizeof o->final, "%s", final) >= (int)sizeof o->final)
        return rm_fail(err, "%s '%s': bad path", flag, final);
    for (size_t n = strlen(o->final); n > 1 && o->final[n - 1] == '/'; n--)
        o->final[n - 1] = '\0';
    struct stat st;
    if (stat(o->final, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return rm_fail(err, "%s %s: exists and is not a directory", flag, o->final);
        /* an empty directory is fine: the rename at the end replaces it */
        DIR *d = opendir(o->final);
        if (!d)
            return rm_fail_errno(err, errno, "%s %s: cannot read the directory", flag, o->final);
        struct dirent *e;
        int empty = 1;
        while (empty && (e = readdir(d)))
            empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
        closedir(d);
        if (!empty)
            return rm_fail(err, "%s %s: exists and is not empty: pick another directory or remove it", flag,
                           o->final);
    }
    char parent[4096];
    parent_of(o->final, parent, sizeof parent);
    /* remember the top of what mkdir -p will make, to remove it again on failure */
    char probe[4096];
    snprintf(probe, sizeof probe, "%s", parent);
    while (stat(probe, &st) != 0 && strcmp(probe, "/") != 0 && strcmp(probe, ".") != 0) {
        snprintf(o->created_top, sizeof o->created_top, "%s", probe);
        parent_of(o->created_top, probe, sizeof probe);
    }
    if (rm_mkdirs(parent, OUT_DIR_MODE, err) != RM_OK)
        return RM_ERR;
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp-XXXXXX", o->final);
    if (!mkdtemp(o->tmp)) {
        o->tmp[0] = '\0';
        return rm_fail_errno(err, errno, "%s: cannot create a temporary directory next to it", o->final);
    }
    if (chmod(o->tmp, OUT_DIR_MODE) != 0)
        return rm_fail_errno(err, errno, "%s: cannot set mode %04o", o->tmp, OUT_DIR_MODE);
    return RM_OK;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

/* Removes what a failed import made: the temporary tree and the parents it
 * created. */
static void staging_abandon(staging *o)
{
    if (o->tmp[0])
        nftw(o->tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (!o->created_top[0])
        return;
    char dir[4096], up[4096];
    snprintf(dir, sizeof dir, "%s", o->final);
    for (;;) {
        parent_of(dir, up, sizeof up);
        snprintf(dir, sizeof dir, "%s", up);
        if (rmdir(dir) != 0 || strcmp(dir, o->created_top) == 0)
            break;
    }
}

static int staging_commit(staging *o, rm_error *err)
{
    if (rename(o->tmp, o->final) != 0)
        return rm_fail_errno(err, errno, "%s: cannot rename %s into place", o->final, o->tmp);
    o->tmp[0] = '\0';
    o->created_top[0] = '\0';
    char parent[4096];
    parent_of(o->final, parent, sizeof parent);
    int dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* the rename is what makes the import visible: make it durable */
        close(dfd);
    }
    return RM_OK;
}

/* ---- one token split being written, a shard at a time ---- */

typedef struct split_writer {
    char dir[8192];
    rm_shard_index index; /* the shards written so far */
    int shards_cap;
    const rm_secret_key *key;
    long shard_tokens;
    uint8_t *buf; /* the shard being filled (plaintext of a sealed one: wiped when freed) */
    long buf_cap, fill; /* in tokens */
    long documents;
} split_writer;

static int writer_open(split_writer *w, const char *dir, const char *tokenizer, long vocab, long eot,
                       long shard_tokens, const rm_secret_key *key, rm_error *err)
{
    memset(w, 0, sizeof *w);
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    if ((mkdir(dir, OUT_DIR_MODE) != 0 && errno != EEXIST) || chmod(dir, OUT_DIR_MODE) != 0)
        return rm_fail_errno(err, errno, "%s: cannot create directory", dir);
    rm_shard_index *idx = &w->index;
    idx->format = RM_DATA_TOKENS;
    idx->vocab = vocab;
    idx->eot = eot;
    idx->token_bytes = vocab <= 65536 ? 2 : 4;
    snprintf(idx->tokenizer, sizeof idx->tokenizer, "%s", tokenizer);
    idx->encrypted = key != NULL;
    w->key = key;
    w->shard_tokens = shard_tokens;
    return RM_OK;
}

/* Writes the tokens gathered so far as the next shard (none: nothing). */
static int writer_flush(split_writer *w, rm_error *err)
{
    if (w->fill == 0)
        return RM_OK;
    rm_shard_index *idx = &w->index;
    if (idx->n_shards >= RM_SHARD_MAX_SHARDS)
        return rm_fail(err, "%s: more than %d shards: raise --shard-tokens", w->dir, RM_SHARD_MAX_SHARDS);
    if (idx->n_shards == w->shards_cap) {
        w->shards_cap = w->shards_cap ? 2 * w->shards_cap : 16;
        rm_shard_info *grown = realloc(idx->shards, (size_t)w->shards_cap * sizeof *grown);
        if (!grown)
            return rm_fail(err, "%s: out of memory", w->dir);
        idx->shards = grown;
    }
    rm_shard_info *info = &idx->shards[idx->n_shards];
    memset(info, 0, sizeof *info);
    snprintf(info->file, sizeof info->file, "shard-%05d.rms", idx->n_shards);
    info->tokens = w->fill;
    char path[8192 + RM_SHARD_NAME_CAP];
    snprintf(path, sizeof path, "%s/%s", w->dir, info->file);
    if (rm_shard_write_sealed(path, w->buf, w->fill, idx->token_bytes, w->key, &info->checksum, err) != RM_OK)
        return RM_ERR;
    idx->n_shards++;
    idx->tokens += w->fill;
    w->fill = 0;
    return RM_OK;
}

/* The token sink (tokenizer.h): appends tokens, writing each shard as it
 * fills. The buffer grows to shard_tokens as needed, so a small dataset
 * does not pay for a large shard size. */
static int writer_put(void *ctx, const uint32_t *tokens, size_t n, rm_error *err)
{
    split_writer *w = ctx;
    int wide = w->index.token_bytes == 4;
    for (size_t i = 0; i < n; i++) {
        if (w->fill == w->shard_tokens && writer_flush(w, err) != RM_OK)
            return RM_ERR;
        if (w->fill == w->buf_cap) {
            long cap = w->buf_cap ? 2 * w->buf_cap : 4096;
            cap = cap < w->shard_tokens ? cap : w->shard_tokens;
            uint8_t *grown = malloc((size_t)cap * (size_t)w->index.token_bytes);
            if (!grown)
                return rm_fail(err, "%s: out of memory for a shard of %ld tokens", w->dir, cap);
            if (w->buf) {
                memcpy(grown, w->buf, (size_t)w->fill * (size_t)w->index.token_bytes);
                sodium_memzero(w->buf, (size_t)w->buf_cap * (size_t)w->index.token_bytes);
                free(w->buf);
            }
            w->buf = grown;
            w->buf_cap = cap;
        }
        uint8_t *p = w->buf + (size_t)w->fill * (size_t)w->index.token_bytes;
        if (wide) {
            rm_put_u32(p, tokens[i]);
        } else {
            p[0] = (uint8_t)tokens[i];
            p[1] = (uint8_t)(tokens[i] >> 8);
        }
        w->fill++;
    }
    return RM_OK;
}

/* Writes the last shard and the index (last: a split with an index is
 * complete). */
static int writer_finish(split_writer *w, rm_error *err)
{
    if (writer_flush(w, err) != RM_OK)
        return RM_ERR;
    return rm_shard_index_write(w->dir, &w->index, err);
}

static void writer_summary(const split_writer *w, rm_token_split_summary *out)
{
    if (out)
        *out = (rm_token_split_summary){w->documents, w->index.tokens, w->index.n_shards};
}

static void writer_free(split_writer *w)
{
    if (w->buf)
        sodium_memzero(w->buf, (size_t)w->buf_cap * (size_t)w->index.token_bytes);
    free(w->buf);
    rm_shard_index_free(&w->index);
    memset(w, 0, sizeof *w);
}

/* ---- inputs ---- */

/* A whole input file mapped read-only; empty files are refused by name. */
typedef struct input_map {
    const uint8_t *data;
    size_t len;
} input_map;

static int input_open(input_map *m, const char *path, rm_error *err)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rm_fail_errno(err, errno, "%s: cannot open", path);
    struct stat st;
    int rc = RM_ERR;
    if (fstat(fd, &st) != 0) {
        rm_fail_errno(err, errno, "%s: cannot stat", path);
    } else if (!S_ISREG(st.st_mode)) {
        rm_fail(err, "%s: not a regular file", path);
    } else if (st.st_size == 0) {
        rm_fail(err, "%s: is empty: there is nothing in it to import", path);
    } else {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            rm_fail_errno(err, errno, "%s: cannot map", path);
        } else {
            madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL); /* read once, front to back */
            m->data = p;
            m->len = (size_t)st.st_size;
            rc = RM_OK;
        }
    }
    close(fd);
    return rc;
}

static void input_close(input_map *m)
{
    if (m->data)
        munmap((void *)m->data, m->len);
    m->data = NULL;
}

/* ---- text ---- */

typedef struct text_import {
    rm_text_tokenizer tok;
    double val_fraction;
    split_writer train, val;
    long documents; /* so far, over all files: the next document's ordinal */
} text_import;

/* Encodes one document into the split its ordinal selects, then its
 * end-of-text token. */
static int put_document(text_import *t, const uint8_t *text, size_t len, rm_error *err)
{
    double f = t->val_fraction, k = (double)t->documents;
    split_writer *w = f > 0 && floor((k + 1) * f) > floor(k * f) ? &t->val : &t->train;
    uint32_t eot = (uint32_t)t->tok.tok->eot;
    if (rm_tokenizer_encode(&t->tok, text, len, writer_put, w, err) != RM_OK || writer_put(w, &eot, 1, err) != RM_OK)
        return RM_ERR;
    w->documents++;
    t->documents++;
    return RM_OK;
}

static int is_blank_line(const uint8_t *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!strchr(" \t\r\f\v", line[i]) || line[i] == '\0')
            return 0;
    return 1;
}

/* One file: one document, or one per block of non-blank lines. */
static int import_text_file(text_import *t, const char *path, int split_on_blank_lines, rm_error *err)
{
    input_map in;
    if (input_open(&in, path, err) != RM_OK)
        return RM_ERR;
    int rc = RM_OK;
    if (!split_on_blank_lines) {
        rc = put_document(t, in.data, in.len, err);
    } else {
        long found = 0;
        size_t doc_start = 0, doc_end = 0; /* doc_end: end of its last non-blank line, newline excluded */
        int in_doc = 0;
        for (size_t at = 0; at < in.len && rc == RM_OK;) {
            const uint8_t *nl = memchr(in.data + at, '\n', in.len - at);
            size_t end = nl ? (size_t)(nl - in.data) : in.len;
            if (nl && end > at && in.data[end - 1] == '\r')
                end--; /* a CRLF line ends before its CR */
            if (is_blank_line(in.data + at, end - at)) {
                if (in_doc) {
                    rc = put_document(t, in.data + doc_start, doc_end - doc_start, err);
                    found++;
                }
                in_doc = 0;
            } else {
                if (!in_doc)
                    doc_start = at;
                in_doc = 1;
                doc_end = end;
            }
            at = nl ? (size_t)(nl - in.data) + 1 : in.len;
        }
        if (rc == RM_OK && in_doc) {
            rc = put_document(t, in.data + doc_start, doc_end - doc_start, err);
            found++;
        }
        if (rc == RM_OK && found == 0)
            rc = rm_fail(err, "%s: holds only blank lines: there is no document in it", path);
    }
    input_close(&in);
    return rc;
}

static int check_shard_tokens(long shard_tokens, rm_error *err)
{
    if (shard_tokens < 2 || shard_tokens > RM_TOKEN_SHARD_MAX)
        return rm_fail(err, "--shard-tokens %ld: must be between 2 and %ld", shard_tokens, RM_TOKEN_SHARD_MAX);
    return RM_OK;
}

int rm_token_import_text(const char *const *files, int n_files, const char *out_dir, const rm_text_import_options *opt,
                         rm_token_split_summary *train, rm_token_split_summary *val, rm_error *err)
{
    if (n_files < 1)
        return rm_fail(err, "no input files");
    double f = opt->val_fraction;
    if (!(f >= 0 && f < 1))
        return rm_fail(err, "--val-fraction %g: must be at least 0 and below 1 (1 would leave the train split empty)",
                       f);
    if (check_shard_tokens(opt->shard_tokens, err) != RM_OK)
        return RM_ERR;

    text_import t;
    memset(&t, 0, sizeof t);
    if (rm_tokenizer_open(opt->tokenizer, opt->vocab_dir, &t.tok, err) != RM_OK)
        return RM_ERR;
    const rm_tokenizer *tok = t.tok.tok;
    t.val_fraction = f;
    staging o;
    memset(&o, 0, sizeof o);
    int rc = RM_ERR;
    char dir[8192];
    if (staging_begin(&o, out_dir, "--out", err) != RM_OK)
        goto out;
    snprintf(dir, sizeof dir, "%s/train", o.tmp);
    if (writer_open(&t.train, dir, tok->name, tok->vocab, tok->eot, opt->shard_tokens, opt->key, err) != RM_OK)
        goto out;
    snprintf(dir, sizeof dir, "%s/val", o.tmp);
    if (f > 0 && writer_open(&t.val, dir, tok->name, tok->vocab, tok->eot, opt->shard_tokens, opt->key, err) != RM_OK)
        goto out;
    for (int i = 0; i < n_files; i++)
        if (import_text_file(&t, files[i], opt->split_on_blank_lines, err) != RM_OK)
            goto out;
    if (t.train.documents == 0) {
        rm_fail(err, "--val-fraction %g leaves the train split empty (%ld documents)", f, t.documents);
        goto out;
    }
    if (f > 0 && t.val.documents == 0) {
        rm_fail(err,
                "--val-fraction %g selects none of the %ld documents for the val split (it takes floor(documents x "
                "%g)): give more documents (--split-on-blank-lines makes one of each paragraph), or pass "
                "--val-fraction 0 for no val split",
                f, t.documents, f);
        goto out;
    }
    if (writer_finish(&t.train, err) != RM_OK || (f > 0 && writer_finish(&t.val, err) != RM_OK))
        goto out;
    if (staging_commit(&o, err) != RM_OK)
        goto out;
    writer_summary(&t.train, train);
    writer_summary(&t.val, val);
    rc = RM_OK;
out:
    if (rc != RM_OK)
        staging_abandon(&o);
    writer_free(&t.train);
    writer_free(&t.val);
    rm_tokenizer_close(&t.tok);
    return rc;
}

/* ---- llm.c token files ---- */

/* Checks one llm.c file's header and size, then streams its tokens into w,
 * each checked against the vocabulary. */
static int import_llmc_file(split_writer *w, const char *path, rm_error *err)
{
    input_map in;
    if (input_open(&in, path, err) != RM_OK)
        return RM_ERR;
    int rc = RM_ERR;
    if (in.len < RM_LLMC_HEADER_BYTES) {
        rm_fail(err, "%s: %zu bytes: too short for an llm.c token file (its header alone is %d bytes)", path, in.len,
                RM_LLMC_HEADER_BYTES);
        goto out;
    }
    uint32_t magic = rm_get_u32(in.data), version = rm_get_u32(in.data + 4), count = rm_get_u32(in.data + 8);
    if (magic != RM_LLMC_MAGIC) {
        rm_fail(err, "%s: not an llm.c token file (magic %u, expected %u)", path, magic, RM_LLMC_MAGIC);
        goto out;
    }
    if (version != RM_LLMC_VERSION) {
        rm_fail(err, "%s: llm.c token file version %u is not supported (only version %u: uint16 tokens)", path,
                version, RM_LLMC_VERSION);
        goto out;
    }
    uint64_t want = RM_LLMC_HEADER_BYTES + 2 * (uint64_t)count;
    if (in.len != want) {
        rm_fail(err, "%s: %zu bytes, but its header says %u tokens, which make %llu bytes: truncated or damaged", path,
                in.len, count, (unsigned long long)want);
        goto out;
    }
    if (count == 0) {
        rm_fail(err, "%s: holds no tokens", path);
        goto out;
    }
    const uint8_t *p = in.data + RM_LLMC_HEADER_BYTES;
    uint32_t tokens[LLMC_CHUNK];
    for (uint64_t at = 0; at < count;) {
        size_t n = count - at < LLMC_CHUNK ? (size_t)(count - at) : LLMC_CHUNK;
        for (size_t i = 0; i < n; i++) {
            uint32_t t = (uint32_t)p[2 * (at + i)] | (uint32_t)p[2 * (at + i) + 1] << 8;
            if (t >= (uint64_t)w->index.vocab) {
                rm_fail(err, "%s: token %u at position %llu is not below the vocabulary of %ld", path, t,
                        (unsigned long long)(at + i), w->index.vocab);
                goto out;
            }
            w->documents += t == (uint32_t)w->index.eot;
            tokens[i] = t;
        }
        if (writer_put(w, tokens, n, err) != RM_OK)
            goto out;
        at += n;
    }
    rc = RM_OK;
out:
    input_close(&in);
    return rc;
}

int rm_token_import_llmc(const char *const *files, int n_files, const char *out_split,
                         const rm_llmc_import_options *opt, rm_token_split_summary *summary, rm_error *err)
{
    if (n_files < 1)
        return rm_fail(err, "no input files");
    const char *name = opt->tokenizer ? opt->tokenizer : "gpt2";
    if (!name[0] || strlen(name) >= RM_TOKENIZER_NAME_CAP ||
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(name))
        return rm_fail(err, "--tokenizer '%s': a name of letters, digits, '.', '_' and '-', under %d characters", name,
                       RM_TOKENIZER_NAME_CAP);
    rm_error why;
    const rm_tokenizer *tok = rm_tokenizer_find(name, &why);
    long vocab = opt->vocab > 0 ? opt->vocab : tok ? tok->vocab : 0;
    long eot = opt->eot >= 0 ? opt->eot : tok ? tok->eot : -1;
    if (!tok && (vocab <= 0 || eot < 0))
        return rm_fail(err, "--tokenizer %s: %s; for another tokenizer give its --vocab and --eot", name, why.msg);
    if (vocab < 2 || vocab > (1L << 31))
        return rm_fail(err, "--vocab %ld: must be between 2 and %ld", vocab, 1L << 31);
    if (eot >= vocab)
        return rm_fail(err, "--eot %ld: not a token of the vocabulary of %ld", eot, vocab);
    long shard_tokens = opt->shard_tokens > 0 ? opt->shard_tokens : RM_TOKEN_SHARD_DEFAULT;
    if (check_shard_tokens(shard_tokens, err) != RM_OK)
        return RM_ERR;

    split_writer w;
    memset(&w, 0, sizeof w);
    staging o;
    memset(&o, 0, sizeof o);
    int rc = RM_ERR;
    if (staging_begin(&o, out_split, "--out", err) != RM_OK)
        goto out;
    if (writer_open(&w, o.tmp, name, vocab, eot, shard_tokens, opt->key, err) != RM_OK)
        goto out;
    /* each file starts a shard: llm.c's own shards stay recognisable in the split */
    for (int i = 0; i < n_files; i++)
        if (import_llmc_file(&w, files[i], err) != RM_OK || writer_flush(&w, err) != RM_OK)
            goto out;
    if (writer_finish(&w, err) != RM_OK || staging_commit(&o, err) != RM_OK)
        goto out;
    writer_summary(&w, summary);
    rc = RM_OK;
out:
    if (rc != RM_OK)
        staging_abandon(&o);
    writer_free(&w);
    return rc;
}
