#include "tokenizer.h"

#include <stdio.h>
#include <string.h>

#define ENCODE_CHUNK 4096 /* tokens handed to the sink at a time */

/* Every byte is its own token, so any file round-trips exactly. */
static int encode_bytes(const uint8_t *text, size_t len, rm_token_sink sink, void *ctx, rm_error *err)
{
    uint32_t tokens[ENCODE_CHUNK];
    for (size_t at = 0; at < len;) {
        size_t n = len - at < ENCODE_CHUNK ? len - at : ENCODE_CHUNK;
        for (size_t i = 0; i < n; i++)
            tokens[i] = text[at + i];
        if (sink(ctx, tokens, n, err) != RM_OK)
            return RM_ERR;
        at += n;
    }
    return RM_OK;
}

static const rm_tokenizer tokenizers[] = {
    {"bytes", 257, 256, encode_bytes, NULL},
    /* GPT-2's byte-level BPE: 50,000 merges over 256 bytes, then <|endoftext|>. Its
     * vocabulary and eot name llm.c's pre-tokenized shards already. */
    {"gpt2", 50257, 50256, NULL,
     "the GPT-2 BPE tokenizer is not available yet: tokenize with llm.c's scripts (dev/data/*.py) and import "
     "the .bin files with `ringmaster data import-tokens`, or use --tokenizer bytes"},
};

const rm_tokenizer *rm_tokenizer_find(const char *name, rm_error *err)
{
    char known[256] = "";
    for (size_t i = 0; i < sizeof tokenizers / sizeof tokenizers[0]; i++) {
        if (strcmp(name, tokenizers[i].name) == 0)
            return &tokenizers[i];
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", tokenizers[i].name);
    }
    rm_fail(err, "unknown tokenizer '%s' (known: %s)", name, known);
    return NULL;
}
