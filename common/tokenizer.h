/* Tokenizers that turn text into the token ids of a token split: one small
 * table (name, vocabulary, end-of-text token, encoder) that the importer
 * and the index read, so that another tokenizer (GPT-2's BPE) is one more
 * entry. */
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
    /* Encodes one document's text (without its end-of-text token) into
     * sink. NULL: this build cannot encode text with it (it still names
     * pre-tokenized data); `unavailable` says what to do instead. */
    int (*encode)(const uint8_t *text, size_t len, rm_token_sink sink, void *ctx, rm_error *err);
    const char *unavailable;
} rm_tokenizer;

/* The tokenizer called name, or NULL with err naming the known ones. */
const rm_tokenizer *rm_tokenizer_find(const char *name, rm_error *err);

#endif
