/* Tokenizers that turn text into the token ids of a token split: one small
 * table (name, vocabulary, end-of-text token, loader, encoder, decoder)
 * that the importer, `ringmaster data tokenize` and the index read. */
#ifndef RINGMASTER_TOKENIZER_H
#define RINGMASTER_TOKENIZER_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

/* Receives encoded tokens, in order; RM_ERR (with err set) stops the
 * encoder. */
typedef int (*rm_token_sink)(void *ctx, const uint32_t *tokens, size_t n, rm_error *err);

typedef struct rm_tokenizer {
    const char *name; /* as the index and --tokenizer spell it */
    long vocab;
    long eot; /* the end-of-text token, which follows every document */
    /* Loads what the tokenizer needs from vocab_dir (NULL: its default)
     * into *state, which unload frees. NULL: it needs nothing. */
    int (*load)(const char *vocab_dir, void **state, rm_error *err);
    void (*unload)(void *state);
    /* Encodes one document's text (without its end-of-text token) into
     * sink. NULL: this build cannot encode text with it (it still names
     * pre-tokenized data); `unavailable` says what to do instead. */
    int (*encode)(void *state, const uint8_t *text, size_t len, rm_token_sink sink, void *ctx, rm_error *err);
    /* The bytes token id stands for, owned by state (or static); NULL when
     * id is not a token. */
    const uint8_t *(*token_bytes)(const void *state, uint32_t id, size_t *len);
    const char *unavailable;
} rm_tokenizer;

/* The tokenizer called name, or NULL with err naming the known ones. */
const rm_tokenizer *rm_tokenizer_find(const char *name, rm_error *err);

/* A tokenizer ready to encode and decode: its table entry and what it
 * loaded. Not thread-safe (a tokenizer may cache); one per thread. */
typedef struct rm_text_tokenizer {
    const rm_tokenizer *tok;
    void *state;
} rm_text_tokenizer;

/* Finds the tokenizer called name and loads it (vocab_dir: where its
 * files are, NULL for its default). One that cannot encode in this build
 * is refused with its `unavailable`. Close with rm_tokenizer_close. */
int rm_tokenizer_open(const char *name, const char *vocab_dir, rm_text_tokenizer *out, rm_error *err);
void rm_tokenizer_close(rm_text_tokenizer *t);

/* Encodes text with t (tok->encode with its state). */
int rm_tokenizer_encode(rm_text_tokenizer *t, const uint8_t *text, size_t len, rm_token_sink sink, void *ctx,
                        rm_error *err);
/* The bytes token id stands for, owned by t; NULL when id is not a token. */
const uint8_t *rm_tokenizer_token_bytes(const rm_text_tokenizer *t, uint32_t id, size_t *len);

#endif
