#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer_gpt2.h"

#include "fsutil.h"
#include "hash.h"
#include "utf8_repair.h"

#include <ctype.h>
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_CHUNK 4096                /* tokens handed to the sink at a time */
#define VOCAB_SLOTS (1u << 17)        /* open addressing, load < 0.4 */
#define MERGE_SLOTS (1u << 17)
#define CACHE_SLOTS (1u << 17)
#define CACHE_MAX_WORDS (1u << 16)    /* the cache starts over past this ... */
#define CACHE_MAX_BYTES (16u << 20)   /* ... or this many bytes of words */
#define VOCAB_FILE_MAX (64u << 20)
#define NO_RANK UINT32_MAX

/* The reference's pattern, with JavaScript's \s spelled out: JS \s is the
 * Unicode Zs spaces, U+2028/9, U+FEFF and \t\n\v\f\r, while PCRE2's UCP
 * \s leaves out U+FEFF. \p{L} and \p{N} are Unicode's, from PCRE2's tables. */
#define WS "\\t\\n\\x{0B}\\f\\r\\p{Zs}\\x{2028}\\x{2029}\\x{FEFF}"
static const char gpt2_pattern[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS
                                   "]+(?![^" WS "])|[" WS "]+";

typedef struct merge_slot {
    uint64_t pair; /* left << 32 | right */
    uint32_t rank; /* NO_RANK: empty */
    uint32_t merged;
} merge_slot;

typedef struct cache_slot {
    uint64_t hash;
    uint32_t word_at, word_len; /* in cache_bytes; word_len 0: empty */
    uint32_t ids_at, ids_len;   /* in cache_ids */
} cache_slot;

/* One candidate merge of the symbol at pos with the one after it; stale
 * once either symbol has changed (ids only grow into new tokens). */
typedef struct heap_entry {
    uint32_t rank, pos, left, right;
} heap_entry;

struct rm_gpt2 {
    uint8_t *token_text; /* every token's bytes, back to back */
    uint32_t token_at[RM_GPT2_VOCAB + 1];
    uint32_t *vocab_slots; /* id + 1, 0: empty */
    merge_slot *merges;
    uint32_t byte_token[256];
    pcre2_code *re;
    pcre2_match_data *match;

    cache_slot *cache;
    uint8_t *cache_bytes;
    uint32_t *cache_ids;
    size_t cache_words, cache_bytes_used, cache_bytes_cap, cache_ids_used, cache_ids_cap;

    /* work space for one word, grown to the longest seen */
    size_t work_cap;
    uint32_t *sym_id;
    int32_t *sym_next, *sym_prev;
    heap_entry *heap;
    size_t heap_cap;
};

/* ---- the byte-to-unicode mapping ---- */

/* GPT-2 shows each byte as a printable code point: the printable Latin-1
 * bytes as themselves, the rest as 256, 257, ... in byte order. */
static void byte_to_unicode(uint32_t cp_of_byte[256])
{
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp_of_byte[b] = printable ? b : 256 + n++;
    }
}

/* ---- hash maps ---- */

static uint32_t *vocab_slot(const rm_gpt2 *g, const uint8_t *bytes, size_t len)
{
    uint32_t mask = VOCAB_SLOTS - 1, i = (uint32_t)rm_hash64(bytes, len) & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t id = g->vocab_slots[i];
        if (id == 0)
            return &g->vocab_slots[i];
        id--;
        size_t n = g->token_at[id + 1] - g->token_at[id];
        if (n == len && memcmp(g->token_text + g->token_at[id], bytes, len) == 0)
            return &g->vocab_slots[i];
    }
}

static uint32_t pair_index(uint64_t pair)
{
    return (uint32_t)((pair * 0x9E3779B97F4A7C15ull) >> 40) & (MERGE_SLOTS - 1);
}

static merge_slot *merge_find(const rm_gpt2 *g, uint32_t left, uint32_t right)
{
    uint64_t pair = (uint64_t)left << 32 | right;
    for (uint32_t i = pair_index(pair);; i = (i + 1) & (MERGE_SLOTS - 1)) {
        merge_slot *s = &g->merges[i];
        if (s->rank == NO_RANK || s->pair == pair)
            return s;
    }
}

/* ---- loading ---- */

static char *read_vocab_file(const char *dir, const char *name, size_t *len, rm_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        rm_fail(err, "%s: %s: fetch GPT-2's vocabulary with `%s %s` (or name its directory with --vocab-dir)", path,
                strerror(errno), RM_GPT2_FETCH_SCRIPT, dir);
        return NULL;
    }
    fclose(f);
    return rm_read_file(path, VOCAB_FILE_MAX, "too large for a GPT-2 vocabulary file", len, err);
}

/* Decodes one UTF-8 code point at s (of n bytes); 0 bytes on a bad one. */
static size_t utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t need = s[0] >= 0xF0 ? 3 : s[0] >= 0xE0 ? 2 : s[0] >= 0xC0 ? 1 : 0;
    if (need == 0 || need >= n)
        return 0;
    uint32_t c = s[0] & (0x3F >> need);
    for (size_t i = 1; i <= need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3F);
    }
    *cp = c;
    return need + 1;
}

/* Appends the byte a GPT-2 code point stands for; RM_ERR if it stands for none. */
static int put_cp_byte(const int16_t *byte_of_cp, uint32_t cp, uint8_t *out, size_t *n)
{
    if (cp >= 512 || byte_of_cp[cp] < 0)
        return RM_ERR;
    out[(*n)++] = (uint8_t)byte_of_cp[cp];
    return RM_OK;
}

/* Parses encoder.json: one object of "token": id, the tokens written in
 * GPT-2's byte-to-unicode code points (raw UTF-8 or \u escapes). */
static int load_encoder(rm_gpt2 *g, const char *path, const char *text, size_t len, const int16_t *byte_of_cp,
                        rm_error *err)
{
    const uint8_t *s = (const uint8_t *)text, *end = s + len;
    uint8_t word[256]; /* GPT-2's longest token has 128 bytes */
    long ids = 0, line = 1;
    uint32_t *len_of = calloc(RM_GPT2_VOCAB, sizeof *len_of);
    uint8_t *bytes_of = malloc((size_t)RM_GPT2_VOCAB * sizeof word);
    int ok = RM_ERR;
    if (!len_of || !bytes_of) {
        rm_fail(err, "out of memory loading %s", path);
        goto done;
    }
#define SKIP_WS()                                                                                                      \
    while (s < end && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t'))                                           \
    line += *s++ == '\n'
    SKIP_WS();
    if (s == end || *s++ != '{') {
        rm_fail(err, "%s:%ld: expected a JSON object of token: id", path, line);
        goto done;
    }
    for (;;) {
        SKIP_WS();
        if (s < end && *s == '}' && ids == 0)
            break;
        if (s == end || *s++ != '"') {
            rm_fail(err, "%s:%ld: expected a token in quotes", path, line);
            goto done;
        }
        size_t n = 0;
        while (s < end && *s != '"') {
            uint32_t cp;
            if (*s == '\\') {
                if (end - s < 2)
                    break;
                char e = (char)s[1];
                s += 2;
                if (e == 'u') {
                    /* by hand: sscanf would measure the whole rest of the file each time */
                    int digits = 0;
                    for (cp = 0; digits < 4 && s < end && isxdigit(*s); digits++, s++)
                        cp = cp << 4 | (uint32_t)(isdigit(*s) ? *s - '0' : (tolower(*s) - 'a' + 10));
                    if (digits < 4)
                        break;
                } else {
                    const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t", *at = strchr(from, e);
                    if (!at || !e)
                        break;
                    cp = (uint8_t)to[at - from];
                }
            } else {
                size_t k = utf8_next(s, (size_t)(end - s), &cp);
                if (!k)
                    break;
                s += k;
            }
            if (n == sizeof word || put_cp_byte(byte_of_cp, cp, word, &n) != RM_OK) {
                rm_fail(err, "%s:%ld: a token that is not GPT-2's byte-level text (code point U+%04X)", path, line,
                        cp);
                goto done;
            }
        }
        if (s == end || *s++ != '"') {
            rm_fail(err, "%s:%ld: a bad or unterminated token string", path, line);
            goto done;
        }
        SKIP_WS();
        if (s == end || *s++ != ':') {
            rm_fail(err, "%s:%ld: expected ':' after a token", path, line);
            goto done;
        }
        SKIP_WS();
        char *num_end;
        long id = strtol((const char *)s, &num_end, 10);
        if (num_end == (const char *)s || id < 0 || id >= RM_GPT2_VOCAB) {
            rm_fail(err, "%s:%ld: a token id must be a number below %d", path, line, RM_GPT2_VOCAB);
            goto done;
        }
        s = (const uint8_t *)num_end;
        if (len_of[id] || n == 0) {
            rm_fail(err, "%s:%ld: token id %ld %s", path, line, id, n ? "given twice" : "is an empty token");
            goto done;
        }
        len_of[id] = (uint32_t)n;
        memcpy(bytes_of + (size_t)id * sizeof word, word, n);
        ids++;
        SKIP_WS();
        if (s < end && *s == ',') {
            s++;
            continue;
        }
        if (s < end && *s == '}')
            break;
        rm_fail(err, "%s:%ld: expected ',' or '}' after a token id", path, line);
        goto done;
    }
#undef SKIP_WS
    if (ids != RM_GPT2_VOCAB) {
        rm_fail(err, "%s: %ld tokens, GPT-2 has %d", path, ids, RM_GPT2_VOCAB);
        goto done;
    }
    size_t total = 0;
    for (long id = 0; id < RM_GPT2_VOCAB; id++)
        total += len_of[id];
    g->token_text = malloc(total);
    if (!g->token_text) {
        rm_fail(err, "out of memory loading %s", path);
        goto done;
    }
    g->token_at[0] = 0;
    for (long id = 0; id < RM_GPT2_VOCAB; id++) {
        memcpy(g->token_text + g->token_at[id], bytes_of + (size_t)id * sizeof word, len_of[id]);
        g->token_at[id + 1] = g->token_at[id] + len_of[id];
    }
    for (uint32_t id = 0; id < RM_GPT2_VOCAB; id++) {
        size_t n;
        const uint8_t *b = rm_gpt2_token_bytes(g, id, &n);
        uint32_t *slot = vocab_slot(g, b, n);
        if (*slot) {
            rm_fail(err, "%s: tokens %u and %u are the same text", path, *slot - 1, id);
            goto done;
        }
        *slot = id + 1;
    }
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        uint32_t id = *vocab_slot(g, &byte, 1);
        if (!id) {
            rm_fail(err, "%s: no token for byte %d", path, b);
            goto done;
        }
        g->byte_token[b] = id - 1;
    }
    ok = RM_OK;
done:
    free(len_of);
    free(bytes_of);
    return ok;
}

/* Converts one space-free field of vocab.bpe to bytes; RM_ERR if it is not
 * GPT-2's byte-level text. */
static int field_bytes(const uint8_t *s, size_t n, const int16_t *byte_of_cp, uint8_t *out, size_t cap,
                       size_t *out_n)
{
    *out_n = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_next(s + i, n - i, &cp);
        if (!k || *out_n == cap || put_cp_byte(byte_of_cp, cp, out, out_n) != RM_OK)
            return RM_ERR;
        i += k;
    }
    return RM_OK;
}

/* Parses vocab.bpe: a version line, then one merge "left right" a line, in
 * rank order. As the reference ([1:-1] of the lines), a last line without
 * its newline is not a merge. Every merge's tokens and their concatenation
 * must be tokens of encoder.json, and a merge may only use tokens that
 * earlier merges made (true of any trained BPE): that is what lets
 * rm_gpt2_encode merge in rank order with a heap. */
static int load_merges(rm_gpt2 *g, const char *path, const char *text, size_t len, const int16_t *byte_of_cp,
                       rm_error *err)
{
    uint32_t *made_at = malloc(RM_GPT2_VOCAB * sizeof *made_at); /* the rank of the merge that made a token */
    if (!made_at)
        return rm_fail(err, "out of memory loading %s", path);
    for (long i = 0; i < RM_GPT2_VOCAB; i++)
        made_at[i] = 0;
    const char *s = text, *end = text + len, *nl = memchr(s, '\n', len);
    uint32_t rank = 0;
    long line = 1;
    int ok = RM_ERR;
    for (s = nl ? nl + 1 : end; s < end; s = nl + 1) {
        line++;
        nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl)
            break;
        const char *f[3];
        size_t fl[3];
        int fields = 0;
        for (const char *p = s; p < nl;) {
            while (p < nl && (*p == ' ' || *p == '\t' || *p == '\r'))
                p++;
            if (p == nl)
                break;
            const char *q = p;
            while (q < nl && !(*q == ' ' || *q == '\t' || *q == '\r'))
                q++;
            if (fields < 3) {
                f[fields] = p;
                fl[fields] = (size_t)(q - p);
            }
            fields++;
            p = q;
        }
        if (fields != 2) {
            rm_fail(err, "%s:%ld: a merge is two tokens separated by a space, got %d fields", path, line, fields);
            goto done;
        }
        uint8_t both[2048];
        size_t left_n, right_n;
        if (field_bytes((const uint8_t *)f[0], fl[0], byte_of_cp, both, 1024, &left_n) != RM_OK ||
            field_bytes((const uint8_t *)f[1], fl[1], byte_of_cp, both + left_n, 1024, &right_n) != RM_OK) {
            rm_fail(err, "%s:%ld: a merge of text that is not GPT-2's byte-level code points", path, line);
            goto done;
        }
        uint32_t left = *vocab_slot(g, both, left_n), right = *vocab_slot(g, both + left_n, right_n),
                 merged = *vocab_slot(g, both, left_n + right_n);
        if (!left || !right || !merged) {
            rm_fail(err, "%s:%ld: merge '%.*s %.*s' names a token encoder.json does not have", path, line,
                    (int)fl[0], f[0], (int)fl[1], f[1]);
            goto done;
        }
        left--, right--, merged--;
        made_at[merged] = rank + 1; /* ranks grow: the last merge to make a token */
        /* a pair given twice keeps its last rank, as in the reference's dict */
        merge_slot *slot = merge_find(g, left, right);
        *slot = (merge_slot){(uint64_t)left << 32 | right, rank, merged};
        rank++;
    }
    if (rank == 0) {
        rm_fail(err, "%s: no merges", path);
        goto done;
    }
    for (uint32_t i = 0; i < MERGE_SLOTS; i++) {
        const merge_slot *m = &g->merges[i];
        if (m->rank != NO_RANK && (made_at[m->pair >> 32] > m->rank || made_at[(uint32_t)m->pair] > m->rank)) {
            rm_fail(err, "%s: merge %u uses a token that only a later merge makes (unlike a trained BPE)", path,
                    m->rank + 1);
            goto done;
        }
    }
    ok = RM_OK;
done:
    free(made_at);
    return ok;
}

int rm_gpt2_load(const char *vocab_dir, rm_gpt2 **out, rm_error *err)
{
    const char *dir = vocab_dir ? vocab_dir : RM_GPT2_VOCAB_DIR_DEFAULT;
    rm_gpt2 *g = calloc(1, sizeof *g);
    char *encoder = NULL, *merges = NULL;
    if (!g)
        return rm_fail(err, "out of memory loading GPT-2's vocabulary");
    size_t encoder_len, merges_len;
    encoder = read_vocab_file(dir, "encoder.json", &encoder_len, err);
    if (!encoder)
        goto err;
    merges = read_vocab_file(dir, "vocab.bpe", &merges_len, err);
    if (!merges)
        goto err;

    uint32_t cp_of_byte[256];
    int16_t byte_of_cp[512];
    byte_to_unicode(cp_of_byte);
    for (int i = 0; i < 512; i++)
        byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++)
        byte_of_cp[cp_of_byte[b]] = (int16_t)b;

    g->vocab_slots = calloc(VOCAB_SLOTS, sizeof *g->vocab_slots);
    g->merges = malloc(MERGE_SLOTS * sizeof *g->merges);
    g->cache = calloc(CACHE_SLOTS, sizeof *g->cache);
    if (!g->vocab_slots || !g->merges || !g->cache) {
        rm_fail(err, "out of memory loading GPT-2's vocabulary");
        goto err;
    }
    for (uint32_t i = 0; i < MERGE_SLOTS; i++)
        g->merges[i].rank = NO_RANK;
    char path[4096];
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    if (load_encoder(g, path, encoder, encoder_len, byte_of_cp, err) != RM_OK)
        goto err;
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    if (load_merges(g, path, merges, merges_len, byte_of_cp, err) != RM_OK)
        goto err;

    int code;
    PCRE2_SIZE at;
    g->re = pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    if (!g->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        rm_fail(err, "pcre2_compile of GPT-2's pattern at %zu: %s", (size_t)at, (const char *)msg);
        goto err;
    }
    /* without a JIT (some platforms) PCRE2 interprets the pattern: slower, same tokens */
    (void)pcre2_jit_compile(g->re, PCRE2_JIT_COMPLETE);
    g->match = pcre2_match_data_create_from_pattern(g->re, NULL);
    if (!g->match) {
        rm_fail(err, "out of memory loading GPT-2's vocabulary");
        goto err;
    }
    free(encoder);
    free(merges);
    *out = g;
    return RM_OK;
err:
    free(encoder);
    free(merges);
    rm_gpt2_free(g);
    return RM_ERR;
}

void rm_gpt2_free(rm_gpt2 *g)
{
    if (!g)
        return;
    pcre2_match_data_free(g->match);
    pcre2_code_free(g->re);
    free(g->token_text);
    free(g->vocab_slots);
    free(g->merges);
    free(g->cache);
    free(g->cache_bytes);
    free(g->cache_ids);
    free(g->sym_id);
    free(g->sym_next);
    free(g->sym_prev);
    free(g->heap);
    free(g);
}

const uint8_t *rm_gpt2_token_bytes(const rm_gpt2 *g, uint32_t id, size_t *len)
{
    if (id >= RM_GPT2_VOCAB)
        return NULL;
    *len = g->token_at[id + 1] - g->token_at[id];
    return g->token_text + g->token_at[id];
}

/* ---- BPE ---- */

static int heap_less(const heap_entry *a, const heap_entry *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(rm_gpt2 *g, size_t *n, heap_entry e)
{
    /* n - 1 pairs at first, then at most 2 a merge, and fewer than n merges: 3n in all */
    size_t i = (*n)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_less(&e, &g->heap[up]))
            break;
        g->heap[i] = g->heap[up];
        i = up;
    }
    g->heap[i] = e;
}

static heap_entry heap_pop(rm_gpt2 *g, size_t *n)
{
    heap_entry top = g->heap[0], last = g->heap[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&g->heap[c + 1], &g->heap[c]))
            c++;
        if (!heap_less(&g->heap[c], &last))
            break;
        g->heap[i] = g->heap[c];
        i = c;
    }
    if (*n)
        g->heap[i] = last;
    return top;
}

static void push_pair(rm_gpt2 *g, size_t *heap_n, int32_t pos)
{
    if (pos < 0)
        return;
    int32_t next = g->sym_next[pos];
    if (next < 0)
        return;
    const merge_slot *m = merge_find(g, g->sym_id[pos], g->sym_id[next]);
    if (m->rank != NO_RANK)
        heap_push(g, heap_n, (heap_entry){m->rank, (uint32_t)pos, g->sym_id[pos], g->sym_id[next]});
}

static int grow_work(rm_gpt2 *g, size_t n)
{
    if (n <= g->work_cap)
        return RM_OK;
    size_t cap = n < 256 ? 256 : n * 2, heap_cap = cap * 3;
    uint32_t *id = realloc(g->sym_id, cap * sizeof *id);
    if (id)
        g->sym_id = id;
    int32_t *next = realloc(g->sym_next, cap * sizeof *next);
    if (next)
        g->sym_next = next;
    int32_t *prev = realloc(g->sym_prev, cap * sizeof *prev);
    if (prev)
        g->sym_prev = prev;
    heap_entry *heap = realloc(g->heap, heap_cap * sizeof *heap);
    if (heap)
        g->heap = heap;
    if (!id || !next || !prev || !heap)
        return RM_ERR;
    g->work_cap = cap;
    g->heap_cap = heap_cap;
    return RM_OK;
}

/* BPE of one pre-token: the reference merges, over and over, every
 * occurrence (left to right) of the adjacent pair of lowest rank. A heap of
 * (rank, position) does the same in O(n log n): a merge only makes pairs
 * of higher rank (load_merges checks it), so the pairs of one rank are
 * taken left to right before any other. Writes the ids into g->sym_id
 * (compacted) and returns how many. */
static long bpe_word(rm_gpt2 *g, const uint8_t *word, size_t n)
{
    if (n >= INT32_MAX / 2 || grow_work(g, n) != RM_OK)
        return -1;
    for (size_t i = 0; i < n; i++) {
        g->sym_id[i] = g->byte_token[word[i]];
        g->sym_prev[i] = (int32_t)i - 1;
        g->sym_next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    size_t heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(g, &heap_n, (int32_t)i);
    while (heap_n) {
        heap_entry e = heap_pop(g, &heap_n);
        int32_t pos = (int32_t)e.pos, next = g->sym_next[pos];
        if (g->sym_id[pos] != e.left || next < 0 || g->sym_id[next] != e.right || g->sym_prev[pos] == -2)
            continue;
        g->sym_id[pos] = merge_find(g, e.left, e.right)->merged;
        g->sym_next[pos] = g->sym_next[next];
        if (g->sym_next[next] >= 0)
            g->sym_prev[g->sym_next[next]] = pos;
        g->sym_prev[next] = -2; /* gone */
        push_pair(g, &heap_n, g->sym_prev[pos]);
        push_pair(g, &heap_n, pos);
    }
    long out = 0;
    for (int32_t i = 0; i >= 0; i = g->sym_next[i])
        g->sym_id[out++] = g->sym_id[i];
    return out;
}

static void cache_clear(rm_gpt2 *g)
{
    memset(g->cache, 0, CACHE_SLOTS * sizeof *g->cache);
    g->cache_words = g->cache_bytes_used = g->cache_ids_used = 0;
}

static cache_slot *cache_slot_for(rm_gpt2 *g, const uint8_t *word, size_t n, uint64_t h)
{
    for (uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1)) {
        cache_slot *s = &g->cache[i];
        if (s->word_len == 0 ||
            (s->hash == h && s->word_len == n && memcmp(g->cache_bytes + s->word_at, word, n) == 0))
            return s;
    }
}

/* Remembers word's ids; a word the cache has no room for is just not kept. */
static void cache_put(rm_gpt2 *g, cache_slot *s, const uint8_t *word, size_t n, uint64_t h, const uint32_t *ids,
                      size_t n_ids)
{
    if (n > CACHE_MAX_BYTES / 16)
        return;
    if (g->cache_words >= CACHE_MAX_WORDS || g->cache_bytes_used + n > CACHE_MAX_BYTES ||
        g->cache_ids_used + n_ids > CACHE_MAX_BYTES / 4) {
        cache_clear(g);
        s = cache_slot_for(g, word, n, h);
    }
    if (g->cache_bytes_used + n > g->cache_bytes_cap) {
        size_t cap = g->cache_bytes_cap ? g->cache_bytes_cap : 1 << 16;
        while (cap < g->cache_bytes_used + n)
            cap *= 2;
        uint8_t *b = realloc(g->cache_bytes, cap);
        if (!b)
            return;
        g->cache_bytes = b;
        g->cache_bytes_cap = cap;
    }
    if (g->cache_ids_used + n_ids > g->cache_ids_cap) {
        size_t cap = g->cache_ids_cap ? g->cache_ids_cap : 1 << 14;
        while (cap < g->cache_ids_used + n_ids)
            cap *= 2;
        uint32_t *b = realloc(g->cache_ids, cap * sizeof *b);
        if (!b)
            return;
        g->cache_ids = b;
        g->cache_ids_cap = cap;
    }
    memcpy(g->cache_bytes + g->cache_bytes_used, word, n);
    memcpy(g->cache_ids + g->cache_ids_used, ids, n_ids * sizeof *ids);
    *s = (cache_slot){h, (uint32_t)g->cache_bytes_used, (uint32_t)n, (uint32_t)g->cache_ids_used, (uint32_t)n_ids};
    g->cache_bytes_used += n;
    g->cache_ids_used += n_ids;
    g->cache_words++;
}

/* ---- text ---- */

typedef struct token_out {
    uint32_t buf[OUT_CHUNK];
    size_t n;
    rm_token_sink sink;
    void *ctx;
} token_out;

static int emit(token_out *o, const uint32_t *ids, size_t n, rm_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (o->n == OUT_CHUNK) {
            if (o->sink(o->ctx, o->buf, o->n, err) != RM_OK)
                return RM_ERR;
            o->n = 0;
        }
        o->buf[o->n++] = ids[i];
    }
    return RM_OK;
}

int rm_gpt2_encode(rm_gpt2 *g, const uint8_t *text, size_t len, rm_token_sink sink, void *ctx, rm_error *err)
{
    /* the text as the reference's JavaScript reads it (tokenizer_gpt2.h) */
    size_t replacements, repaired_len = rm_utf8_repaired_len(text, len, &replacements);
    uint8_t *repaired = NULL;
    if (replacements) {
        repaired = malloc(repaired_len);
        if (!repaired)
            return rm_fail(err, "out of memory repairing invalid UTF-8 in %zu bytes of text", len);
        rm_utf8_repair(text, len, repaired);
        text = repaired;
        len = repaired_len;
    }
    token_out *o = malloc(sizeof *o);
    int status = RM_ERR;
    if (!o) {
        rm_fail(err, "out of memory encoding text");
        goto done;
    }
    o->n = 0;
    o->sink = sink;
    o->ctx = ctx;
    for (size_t at = 0; at < len;) {
        /* the text is valid UTF-8 by now: no check, which would rescan the rest on every call */
        int rc = pcre2_match(g->re, text, len, at, PCRE2_NO_UTF_CHECK, g->match, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            rm_fail(err, "pre-tokenising at byte %zu: %s", at, (const char *)msg);
            goto done;
        }
        PCRE2_SIZE *span = pcre2_get_ovector_pointer(g->match);
        const uint8_t *word = text + span[0];
        size_t n = span[1] - span[0];
        at = span[1];
        if (n == 1) {
            if (emit(o, &g->byte_token[word[0]], 1, err) != RM_OK)
                goto done;
            continue;
        }
        uint64_t h = rm_hash64(word, n);
        cache_slot *s = cache_slot_for(g, word, n, h);
        if (s->word_len) {
            if (emit(o, g->cache_ids + s->ids_at, s->ids_len, err) != RM_OK)
                goto done;
            continue;
        }
        long n_ids = bpe_word(g, word, n);
        if (n_ids < 0) {
            rm_fail(err, "out of memory encoding a word of %zu bytes", n);
            goto done;
        }
        cache_put(g, s, word, n, h, g->sym_id, (size_t)n_ids);
        if (emit(o, g->sym_id, (size_t)n_ids, err) != RM_OK)
            goto done;
    }
    if (o->n && sink(ctx, o->buf, o->n, err) != RM_OK)
        goto done;
    status = RM_OK;
done:
    free(o);
    free(repaired);
    return status;
}
