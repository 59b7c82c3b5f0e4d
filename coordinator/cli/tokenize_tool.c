/* `ringmaster data tokenize`: a file's text as token ids, and ids back to
 * text, with the tokenizers import-text uses, for users to see what a
 * tokenizer does and for tests to compare it with reference encoders. */
#include "tokenize_tool.h"

#include "exit_codes.h"
#include "log.h"
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void tokenize_usage(void)
{
    fprintf(stderr, "usage: ringmaster data tokenize --tokenizer gpt2|bytes [--vocab-dir DIR] [--decode] [--stats] FILE\n"
                    "  prints FILE's token ids, space-separated (FILE '-': standard input); with --decode reads\n"
                    "  ids and writes their text; --stats: the encoding speed (one thread) on stderr\n");
}

/* Reads all of path ('-': stdin) into a buffer the caller frees. */
static uint8_t *read_all(const char *path, size_t *len, rm_error *err)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        rm_fail_errno(err, errno, "%s", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        uint8_t *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    int failed = !buf || ferror(f);
    if (f != stdin)
        fclose(f);
    if (failed) {
        free(buf);
        rm_fail(err, "%s: %s", path, buf ? "read error" : "out of memory reading it");
        return NULL;
    }
    *len = n;
    return buf;
}

static int count_ids(void *ctx, const uint32_t *tokens, size_t n, rm_error *err)
{
    (void)tokens, (void)err;
    *(long *)ctx += (long)n;
    return RM_OK;
}

/* Encodes text once into a counter, timed: the encoder alone, without
 * reading, loading or printing. */
static int print_stats(rm_text_tokenizer *t, const uint8_t *text, size_t len, rm_error *err)
{
    long tokens = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (rm_tokenizer_encode(t, text, len, count_ids, &tokens, err) != RM_OK)
        return RM_ERR;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "%s: %zu bytes, %ld tokens in %.3f s: %.2f MB/s\n", t->tok->name, len, tokens, s,
            s > 0 ? (double)len / 1e6 / s : 0.0);
    return RM_OK;
}

typedef struct id_printer {
    long printed;
} id_printer;

static int print_ids(void *ctx, const uint32_t *tokens, size_t n, rm_error *err)
{
    id_printer *p = ctx;
    for (size_t i = 0; i < n; i++)
        if (printf(p->printed++ ? " %u" : "%u", tokens[i]) < 0)
            return rm_fail_errno(err, errno, "writing token ids");
    return RM_OK;
}

/* Writes the text of the whitespace-separated ids in text[0..len). */
static int decode_ids(rm_text_tokenizer *t, const char *path, const uint8_t *text, size_t len, rm_error *err)
{
    long at = 0;
    for (size_t i = 0; i < len;) {
        if (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r') {
            i++;
            continue;
        }
        unsigned long id = 0;
        size_t start = i;
        while (i < len && text[i] >= '0' && text[i] <= '9' && id <= UINT32_MAX)
            id = id * 10 + (unsigned long)(text[i++] - '0');
        size_t n;
        const uint8_t *bytes = NULL;
        if (i > start && id <= UINT32_MAX && (i == len || text[i] <= ' '))
            bytes = rm_tokenizer_token_bytes(t, (uint32_t)id, &n);
        if (!bytes) {
            size_t word_end = start;
            while (word_end < len && word_end - start < 24 && text[word_end] > ' ')
                word_end++;
            return rm_fail(err, "%s: '%.*s' (id number %ld) is not a token of %s (vocabulary %ld)", path,
                           (int)(word_end - start), (const char *)text + start, at, t->tok->name, t->tok->vocab);
        }
        if (fwrite(bytes, 1, n, stdout) != n)
            return rm_fail_errno(err, errno, "writing text");
        at++;
    }
    return RM_OK;
}

int rm_tokenize_tool_main(int argc, char **argv)
{
    const char *name = NULL, *vocab_dir = NULL, *path = NULL;
    int decode = 0, stats = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--decode") == 0) {
            decode = 1;
        } else if (strcmp(argv[i], "--stats") == 0) {
            stats = 1;
        } else if ((strcmp(argv[i], "--tokenizer") == 0 || strcmp(argv[i], "--vocab-dir") == 0) && i + 1 < argc) {
            *(argv[i][2] == 't' ? &name : &vocab_dir) = argv[i + 1];
            i++;
        } else if ((argv[i][0] != '-' || strcmp(argv[i], "-") == 0) && !path) {
            path = argv[i];
        } else {
            rm_error_log("data tokenize: unexpected argument %s", argv[i]);
            tokenize_usage();
            return RM_EXIT_USAGE;
        }
    }
    if (!name || !path) {
        rm_error_log("data tokenize needs --tokenizer and a FILE");
        tokenize_usage();
        return RM_EXIT_USAGE;
    }
    rm_error err;
    rm_text_tokenizer t;
    if (rm_tokenizer_open(name, vocab_dir, &t, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
        return RM_EXIT_FAILED;
    }
    size_t len;
    uint8_t *text = read_all(path, &len, &err);
    int status = RM_ERR;
    if (text && decode) {
        status = decode_ids(&t, path, text, len, &err);
    } else if (text) {
        id_printer p = {0};
        status = stats ? print_stats(&t, text, len, &err) : RM_OK;
        if (status == RM_OK)
            status = rm_tokenizer_encode(&t, text, len, print_ids, &p, &err);
        if (status == RM_OK && p.printed)
            putchar('\n');
    }
    if (status == RM_OK && fflush(stdout) != 0)
        status = rm_fail_errno(&err, errno, "writing the output");
    free(text);
    rm_tokenizer_close(&t);
    if (status != RM_OK) {
        rm_error_log("%s", err.msg);
        return RM_EXIT_FAILED;
    }
    return RM_EXIT_OK;
}
