/* The split index (index.rmi): reading it with every consistency check,
 * writing it, and cutting a token split into windows of a context. */
#include "shard.h"

#include "fsutil.h"
#include "hash.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_MAX_BYTES (64u << 20)
#define INDEX_FILE_MODE 0644 /* a dataset is meant to be shared */
#define INDEX_VERSION_RECORDS 1
#define INDEX_VERSION_TOKENS 2
#define MAX_VOCAB (1L << 31) /* token ids are u32 in the loader and must stay positive as int32 */

/* The lines of an index that name a field, in the order the table below
 * lists the numeric ones; lines[] records where each was read (0: not
 * given), so that a check can cite it. */
enum {
    F_SAMPLES,
    F_INPUT_DIM,
    F_CLASSES,
    F_RECORD_BYTES,
    F_VOCAB,
    F_EOT,
    F_TOKENS,
    N_NUMERIC,
    F_TOKEN_BYTES = N_NUMERIC,
    F_TOKENIZER,
    F_FORMAT,
    F_FIRST_SHARD,
    N_LINES
};

/* A numeric field: where it is kept and which kind of split it belongs to. */
typedef struct index_field {
    const char *name;
    int format;
    size_t offset; /* of the long in rm_shard_index */
} index_field;

static const index_field index_fields[N_NUMERIC] = {
    [F_SAMPLES] = {"samples", RM_DATA_RECORDS, offsetof(rm_shard_index, samples)},
    [F_INPUT_DIM] = {"input_dim", RM_DATA_RECORDS, offsetof(rm_shard_index, input_dim)},
    [F_CLASSES] = {"classes", RM_DATA_RECORDS, offsetof(rm_shard_index, classes)},
    [F_RECORD_BYTES] = {"record_bytes", RM_DATA_RECORDS, offsetof(rm_shard_index, record_bytes)},
    [F_VOCAB] = {"vocab", RM_DATA_TOKENS, offsetof(rm_shard_index, vocab)},
    [F_EOT] = {"eot", RM_DATA_TOKENS, offsetof(rm_shard_index, eot)},
    [F_TOKENS] = {"tokens", RM_DATA_TOKENS, offsetof(rm_shard_index, tokens)},
};

static const char *format_name(int format)
{
    return format == RM_DATA_TOKENS ? "tokens" : "records";
}

/* Adds one shard line's entry to idx (the table grows as lines come: the
 * index's own claims are not trusted with an allocation). */
static int add_shard(rm_shard_index *idx, int *cap, const char *path, int line_no, const char *name, long count,
                     const char *hex, rm_error *err)
{
    if (strchr(name, '/') || strcmp(name, "..") == 0 || strcmp(name, ".") == 0 || strlen(name) >= RM_SHARD_NAME_CAP)
        return rm_fail(err, "%s:%d: bad shard file name '%s'", path, line_no, name);
    if (count <= 0 || count > RM_SHARD_MAX_COUNT)
        return rm_fail(err, "%s:%d: shard %s has a bad %s count %ld", path, line_no, name,
                       idx->format == RM_DATA_TOKENS ? "token" : "sample", count);
    uint64_t sum_hash;
    if (rm_hash_parse(hex, &sum_hash) != RM_OK)
        return rm_fail(err, "%s:%d: shard %s: bad checksum '%s'", path, line_no, name, hex);
    if (idx->n_shards >= RM_SHARD_MAX_SHARDS)
        return rm_fail(err, "%s:%d: more than %d shards", path, line_no, RM_SHARD_MAX_SHARDS);
    if (idx->n_shards == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        rm_shard_info *grown = realloc(idx->shards, (size_t)*cap * sizeof *grown);
        if (!grown)
            return rm_fail(err, "%s: out of memory", path);
        idx->shards = grown;
    }
    rm_shard_info *s = &idx->shards[idx->n_shards++];
    memset(s, 0, sizeof *s);
    snprintf(s->file, sizeof s->file, "%s", name);
    if (idx->format == RM_DATA_TOKENS)
        s->tokens = count;
    else
        s->samples = count;
    s->checksum = sum_hash;
    return RM_OK;
}

/* The checks that need the whole index: every field its kind needs, and
 * fields that agree with each other and with the shard lines. */
static int check_records(const rm_shard_index *idx, const char *path, const int *lines, long sum, rm_error *err)
{
    if (idx->input_dim <= 0 || idx->input_dim > (1L << 24) || idx->classes < 2 || idx->classes > 256 ||
        idx->record_bytes != 1 + idx->input_dim)
        return rm_fail(err, "%s: inconsistent layout (input_dim %ld, classes %ld, record_bytes %ld)", path,
                       idx->input_dim, idx->classes, idx->record_bytes);
    if (idx->n_shards == 0 || sum != idx->samples)
        return rm_fail(err, "%s:%d: shards hold %ld samples but the index says %ld", path,
                       lines[F_SAMPLES] ? lines[F_SAMPLES] : lines[F_FIRST_SHARD], sum, idx->samples);
    return RM_OK;
}

static int check_tokens(const rm_shard_index *idx, const char *path, const int *lines, long sum, rm_error *err)
{
    for (int f = 0; f < N_NUMERIC; f++)
        if (index_fields[f].format == RM_DATA_TOKENS && !lines[f])
            return rm_fail(err, "%s: a token split needs a '%s' line", path, index_fields[f].name);
    if (!lines[F_TOKEN_BYTES])
        return rm_fail(err, "%s: a token split needs a 'token_bytes' line", path);
    if (!lines[F_TOKENIZER])
        return rm_fail(err, "%s: a token split needs a 'tokenizer' line", path);
    const int vocab_line = lines[F_VOCAB], eot_line = lines[F_EOT], tokens_line = lines[F_TOKENS];
    if (idx->vocab < 2 || idx->vocab > MAX_VOCAB)
        return rm_fail(err, "%s:%d: vocab %ld is out of range (2 to %ld)", path, vocab_line, idx->vocab, MAX_VOCAB);
    if (idx->eot < 0 || idx->eot >= idx->vocab)
        return rm_fail(err, "%s:%d: eot %ld is not a token of the vocabulary of %ld", path, eot_line, idx->eot,
                       idx->vocab);
    int want_bytes = idx->vocab <= 65536 ? 2 : 4;
    if (idx->token_bytes != want_bytes)
        return rm_fail(err, "%s:%d: token_bytes %d does not fit vocab %ld (tokens of a vocabulary %s 65536 take %d)",
                       path, lines[F_TOKEN_BYTES], idx->token_bytes, idx->vocab,
                       want_bytes == 2 ? "up to" : "over", want_bytes);
    if (idx->n_shards == 0)
        return rm_fail(err, "%s: no shard lines", path);
    if (sum != idx->tokens)
        return rm_fail(err, "%s:%d: shards hold %ld tokens but the index says %ld", path, tokens_line, sum,
                       idx->tokens);
    return RM_OK;
}

/* Reads one "name value" line into idx; RM_ERR with a message when it is
 * not a line of this kind of split. */
static int read_field(rm_shard_index *idx, const char *path, int line_no, const char *line, int *lines,
                      rm_error *err)
{
    char word[32], value[64];
    if (sscanf(line, "%31s %63s", word, value) != 2)
        return rm_fail(err, "%s:%d: cannot read line '%.60s'", path, line_no, line);
    int which = -1;
    for (int f = 0; f < N_NUMERIC; f++)
        if (strcmp(word, index_fields[f].name) == 0)
            which = f;
    int field_format = which >= 0 ? index_fields[which].format : RM_DATA_TOKENS;
    if (which < 0 && strcmp(word, "token_bytes") == 0)
        which = F_TOKEN_BYTES;
    else if (which < 0 && strcmp(word, "tokenizer") == 0)
        which = F_TOKENIZER;
    if (which < 0)
        return rm_fail(err, "%s:%d: unknown field '%s'", path, line_no, word);
    if (field_format != idx->format)
        return rm_fail(err, "%s:%d: '%s' belongs in a %s split, and this index is a %s split", path, line_no, word,
                       format_name(field_format), format_name(idx->format));
    if (lines[which])
        return rm_fail(err, "%s:%d: '%s' given twice (first on line %d)", path, line_no, word, lines[which]);
    lines[which] = line_no;
    if (which == F_TOKENIZER) {
        if (strlen(value) >= sizeof idx->tokenizer || strspn(value, "abcdefghijklmnopqrstuvwxyz"
                                                                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
                                                           strlen(value))
            return rm_fail(err, "%s:%d: bad tokenizer name '%.40s'", path, line_no, value);
        snprintf(idx->tokenizer, sizeof idx->tokenizer, "%s", value);
        return RM_OK;
    }
    char *end;
    long v = strtol(value, &end, 10);
    if (*end)
        return rm_fail(err, "%s:%d: %s must be an integer, got '%s'", path, line_no, word, value);
    if (which != F_TOKEN_BYTES) {
        *(long *)((char *)idx + index_fields[which].offset) = v;
        return RM_OK;
    }
    if (v != 2 && v != 4)
        return rm_fail(err, "%s:%d: token_bytes must be 2 or 4, got %ld", path, line_no, v);
    idx->token_bytes = (int)v;
    return RM_OK;
}

int rm_shard_index_read(const char *dir, rm_shard_index *idx, rm_error *err)
{
    memset(idx, 0, sizeof *idx);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, RM_SHARD_INDEX_NAME);
    size_t len;
    char *text = rm_read_file(path, INDEX_MAX_BYTES, "index file is implausibly large", &len, err);
    if (!text)
        return RM_ERR;
    idx->index_hash = rm_hash64(text, len);
    if (memchr(text, '\0', len)) {
        free(text);
        return rm_fail(err, "%s: not a ringmaster shard index (binary data)", path);
    }

    int rc = RM_ERR, line_no = 0, shards_cap = 0, have_header = 0;
    int lines[N_LINES] = {0};
    long sum = 0;
    /* line by line, blank lines counted, so that messages cite the right line */
    for (char *line = text, *next; line < text + len; line = next) {
        char *nl = strchr(line, '\n');
        next = nl ? nl + 1 : text + len;
        if (nl)
            *nl = '\0';
        line_no++;
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char word[32], name[RM_SHARD_NAME_CAP + 1], hex[32];
        long a;
        if (!have_header) {
            int version;
            if (sscanf(line, "ringmaster-shard-index %d", &version) != 1 ||
                (version != INDEX_VERSION_RECORDS && version != INDEX_VERSION_TOKENS)) {
                rm_fail(err, "%s:%d: not a ringmaster shard index (expected 'ringmaster-shard-index 1', or 2 for "
                             "a token split)",
                        path, line_no);
                goto out;
            }
            /* the version says the kind: a build that knows only records refuses a token split at its first line */
            idx->format = version == INDEX_VERSION_TOKENS ? RM_DATA_TOKENS : RM_DATA_RECORDS;
            have_header = 1;
            continue;
        }
        if (sscanf(line, "shard %64s %ld %31s", name, &a, hex) == 3) {
            if (add_shard(idx, &shards_cap, path, line_no, name, a, hex, err) != RM_OK)
                goto out;
            sum += a;
            if (!lines[F_FIRST_SHARD])
                lines[F_FIRST_SHARD] = line_no;
        } else if (sscanf(line, "encryption %31s", word) == 1) {
            if (strcmp(word, "xchacha20poly1305") != 0) {
                rm_fail(err, "%s:%d: unknown encryption '%s'", path, line_no, word);
                goto out;
            }
            idx->encrypted = 1;
        } else if (sscanf(line, "format %31s", word) == 1) {
            int format = strcmp(word, "tokens") == 0    ? RM_DATA_TOKENS
                         : strcmp(word, "records") == 0 ? RM_DATA_RECORDS
                                                        : -1;
            if (format < 0) {
                rm_fail(err, "%s:%d: unknown format '%s' (records or tokens)", path, line_no, word);
                goto out;
            }
            if (lines[F_FORMAT]) {
                rm_fail(err, "%s:%d: 'format' given twice (first on line %d)", path, line_no, lines[F_FORMAT]);
                goto out;
            }
            if (format != idx->format) {
                rm_fail(err, "%s:%d: format %s needs the header 'ringmaster-shard-index %d'", path, line_no,
                        word, format == RM_DATA_TOKENS ? INDEX_VERSION_TOKENS : INDEX_VERSION_RECORDS);
                goto out;
            }
            lines[F_FORMAT] = line_no;
        } else if (read_field(idx, path, line_no, line, lines, err) != RM_OK) {
            goto out;
        }
    }
    if (!have_header) {
        rm_fail(err, "%s: empty index", path);
        goto out;
    }
    if (idx->format == RM_DATA_TOKENS && !lines[F_FORMAT]) {
        rm_fail(err, "%s: a version 2 index needs a 'format tokens' line", path);
        goto out;
    }
    if (!lines[F_FIRST_SHARD])
        lines[F_FIRST_SHARD] = line_no;
    if ((idx->format == RM_DATA_TOKENS ? check_tokens : check_records)(idx, path, lines, sum, err) != RM_OK)
        goto out;
    rc = RM_OK;
out:
    free(text);
    if (rc != RM_OK)
        rm_shard_index_free(idx);
    return rc;
}

void rm_shard_index_free(rm_shard_index *idx)
{
    free(idx->shards);
    idx->shards = NULL;
    idx->n_shards = 0;
}

int rm_shard_index_write(const char *dir, const rm_shard_index *idx, rm_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem)
        return rm_fail(err, "out of memory");
    int tokens = idx->format == RM_DATA_TOKENS;
    if (tokens) {
        fprintf(mem, "ringmaster-shard-index %d\nformat tokens\n", INDEX_VERSION_TOKENS);
        fprintf(mem, "tokenizer %s\nvocab %ld\neot %ld\ntoken_bytes %d\ntokens %ld\n", idx->tokenizer, idx->vocab,
                idx->eot, idx->token_bytes, idx->tokens);
    } else {
        fprintf(mem, "ringmaster-shard-index %d\n", INDEX_VERSION_RECORDS);
        fprintf(mem, "samples %ld\ninput_dim %ld\nclasses %ld\nrecord_bytes %ld\n", idx->samples, idx->input_dim,
                idx->classes, idx->record_bytes);
    }
    if (idx->encrypted)
        fprintf(mem, "encryption xchacha20poly1305\n");
    for (int i = 0; i < idx->n_shards; i++) {
        char hex[17];
        rm_hash_hex(idx->shards[i].checksum, hex);
        fprintf(mem, "shard %s %ld %s\n", idx->shards[i].file, tokens ? idx->shards[i].tokens : idx->shards[i].samples,
                hex);
    }
    fclose(mem);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, RM_SHARD_INDEX_NAME);
    const void *parts[1] = {text};
    int rc = rm_write_parts_atomic_mode(path, parts, &len, 1, INDEX_FILE_MODE, err);
    free(text);
    return rc;
}

int rm_shard_index_set_context(rm_shard_index *idx, const char *dir, long context, rm_error *err)
{
    if (idx->format != RM_DATA_TOKENS)
        return RM_OK;
    if (context < 1)
        return rm_fail(err, "%s: context %ld: a token split is cut into windows of context + 1 tokens, so the "
                            "context must be at least 1",
                       dir, context);
    long total = 0;
    int longest = 0;
    for (int s = 0; s < idx->n_shards; s++) {
        long tokens = idx->shards[s].tokens;
        /* window j is tokens [j*context, j*context + context + 1): the last one must end inside the shard */
        idx->shards[s].samples = tokens - 1 >= context ? (tokens - 1) / context : 0;
        total += idx->shards[s].samples;
        if (tokens > idx->shards[longest].tokens)
            longest = s;
    }
    if (total == 0) {
        for (int s = 0; s < idx->n_shards; s++)
            idx->shards[s].samples = 0;
        return rm_fail(err, "%s: no shard holds a whole window of context %ld: the longest, %s, holds %ld tokens: "
                            "fewer than one window of context+1 = %lu",
                       dir, context, idx->shards[longest].file, idx->shards[longest].tokens,
                       (unsigned long)context + 1);
    }
    idx->context = context;
    idx->samples = total;
    return RM_OK;
}

uint64_t rm_shard_index_payload_bytes(const rm_shard_index *idx, int s)
{
    if (idx->format == RM_DATA_TOKENS)
        return (uint64_t)idx->shards[s].tokens * (uint64_t)idx->token_bytes;
    return (uint64_t)idx->shards[s].samples * (uint64_t)idx->record_bytes;
}
