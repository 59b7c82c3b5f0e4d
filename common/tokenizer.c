#include "tokenizer.h"

#include "tokenizer_gpt2.h"

#include <stdio.h>
#include <string.h>

#define ENCODE_CHUNK 4096 /* tokens handed to the sink at a time */

/* Every byte is its own token, so any file round-trips exactly. */
static int encode_bytes(void *state, const uint8_t *text, size_t len, rm_token_sink sink, void *ctx, rm_error *err)
{
    (void)state;
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

#define B4(n) (n), (n) + 1, (n) + 2, (n) + 3
#define B16(n) B4(n), B4((n) + 4), B4((n) + 8), B4((n) + 12)
#define B64(n) B16(n), B16((n) + 16), B16((n) + 32), B16((n) + 48)
static const uint8_t every_byte[256] = {B64(0), B64(64), B64(128), B64(192)};

/* Byte b for token b; the end-of-text token (256) decodes to nothing. */
static const uint8_t *bytes_token_bytes(const void *state, uint32_t id, size_t *len)
{
    (void)state;
    if (id > 256)
        return NULL;
    *len = id < 256;
    return id < 256 ? &every_byte[id] : every_byte;
}

static int gpt2_load(const char *vocab_dir, void **state, rm_error *err)
{
    rm_gpt2 *g;
    if (rm_gpt2_load(vocab_dir, &g, err) != RM_OK)
        return RM_ERR;
    *state = g;
    return RM_OK;
}

static void gpt2_unload(void *state)
{
    rm_gpt2_free(state);
}

static int gpt2_encode(void *state, const uint8_t *text, size_t len, rm_token_sink sink, void *ctx, rm_error *err)
{
    return rm_gpt2_encode(state, text, len, sink, ctx, err);
}

static const uint8_t *gpt2_token_bytes(const void *state, uint32_t id, size_t *len)
{
    return rm_gpt2_token_bytes(state, id, len);
}

static const rm_tokenizer tokenizers[] = {
    {"bytes", 257, 256, NULL, NULL, encode_bytes, bytes_token_bytes, NULL},
    /* GPT-2's byte-level BPE: 50,000 merges over 256 bytes, then <|endoftext|>. Its
     * vocabulary and eot name llm.c's pre-tokenized shards too. */
    {"gpt2", RM_GPT2_VOCAB, RM_GPT2_EOT, gpt2_load, gpt2_unload, gpt2_encode, gpt2_token_bytes, NULL},
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

int rm_tokenizer_open(const char *name, const char *vocab_dir, rm_text_tokenizer *out, rm_error *err)
{
    out->tok = rm_tokenizer_find(name, err);
    out->state = NULL;
    if (!out->tok)
        return RM_ERR;
    if (!out->tok->encode)
        return rm_fail(err, "--tokenizer %s: %s", name, out->tok->unavailable);
    if (out->tok->load && out->tok->load(vocab_dir, &out->state, err) != RM_OK) {
        out->tok = NULL;
        return RM_ERR;
    }
    return RM_OK;
}

void rm_tokenizer_close(rm_text_tokenizer *t)
{
    if (t->tok && t->tok->unload)
        t->tok->unload(t->state);
    t->tok = NULL;
    t->state = NULL;
}

int rm_tokenizer_encode(rm_text_tokenizer *t, const uint8_t *text, size_t len, rm_token_sink sink, void *ctx,
                        rm_error *err)
{
    return t->tok->encode(t->state, text, len, sink, ctx, err);
}

const uint8_t *rm_tokenizer_token_bytes(const rm_text_tokenizer *t, uint32_t id, size_t *len)
{
    return t->tok->token_bytes(t->state, id, len);
}
