/* Importers that write token splits (shard.h): text files through a
 * tokenizer (tokenizer.h), and the token shards llm.c's scripts write.
 *
 * Each builds its output in a temporary sibling directory (OUT.tmp-XXXXXX)
 * and renames it into place at the end, so a failed import leaves nothing
 * behind and an output directory that exists is whole. The output must not
 * exist yet, or be an empty directory. Memory stays at one shard per split
 * being written; inputs are mapped, never read whole. */
#ifndef RINGMASTER_TOKEN_IMPORT_H
#define RINGMASTER_TOKEN_IMPORT_H

#include "crypto.h"
#include "error.h"

#define RM_TOKEN_SHARD_DEFAULT (1L << 24) /* tokens per shard: 32 MiB of u16 */
#define RM_TOKEN_SHARD_MAX (1L << 30)

/* llm.c's token file (dev/data/data_common.py): 256 little-endian int32
 * (magic, version, token count, then zeros), then u16 tokens. */
#define RM_LLMC_MAGIC 20240520u
#define RM_LLMC_VERSION 1u
#define RM_LLMC_HEADER_BYTES (256 * 4)

/* What one split received. */
typedef struct rm_token_split_summary {
    long documents; /* end-of-text tokens written (one per document) */
    long tokens;    /* end-of-text tokens included */
    int shards;
} rm_token_split_summary;

typedef struct rm_text_import_options {
    const char *tokenizer;    /* a name rm_tokenizer_find knows and can encode with */
    const char *vocab_dir;    /* the tokenizer's files (gpt2: encoder.json, vocab.bpe); NULL: its default */
    double val_fraction;      /* 0 <= f < 1; 0: no val split */
    int split_on_blank_lines; /* a document per blank-line-separated block, not per file */
    long shard_tokens;        /* at most this many tokens per shard */
    const rm_secret_key *key; /* NULL: plain shards; else sealed, and the indexes say so */
} rm_text_import_options;

/* Tokenizes files into out_dir/train and out_dir/val (val only when
 * val_fraction > 0), each document's tokens followed by the end-of-text
 * token. Documents are counted over all files in order; document k goes to
 * val when floor((k + 1) * f) > floor(k * f), so val gets floor(n * f) of n
 * documents, whole and evenly spread, the same on every run. With
 * split_on_blank_lines a document is a block of lines between blank
 * (whitespace-only) lines, without the newline that ends its last line.
 * Fails naming the file or the option: an unreadable or empty file, a file
 * of blank lines only, a val fraction that selects no document. *train and
 * *val (either may be NULL) receive what each split got. */
int rm_token_import_text(const char *const *files, int n_files, const char *out_dir, const rm_text_import_options *opt,
                         rm_token_split_summary *train, rm_token_split_summary *val, rm_error *err);

typedef struct rm_llmc_import_options {
    const char *tokenizer;    /* named in the index; NULL: "gpt2" */
    long vocab;               /* 0: the tokenizer's (tokenizer.h) */
    long eot;                 /* -1: the tokenizer's */
    long shard_tokens;        /* at most this many tokens per shard; each file starts a new shard */
    const rm_secret_key *key; /* NULL: plain shards */
} rm_llmc_import_options;

/* Converts llm.c token files into the token split out_split. A bad magic
 * or version, a size that disagrees with the header's token count, and a
 * token not below the vocabulary (named with its position in the file) are
 * refused naming the file. An unknown tokenizer name needs vocab and eot. */
int rm_token_import_llmc(const char *const *files, int n_files, const char *out_split,
                         const rm_llmc_import_options *opt, rm_token_split_summary *summary, rm_error *err);

#endif
