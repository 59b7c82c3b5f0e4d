/* GPT-2's tokenizer on a few texts whose ids come from the reference
 * encoders (gpt-3-encoder 1.1.4 and js-tiktoken 1.0.21, which agree on
 * all of them), not from this implementation; decoding back; the eot
 * token; invalid UTF-8 as the references read it; and a bad vocabulary
 * refused by name. tests/integration/gpt2_tokenizer.sh compares a whole
 * megabyte with the references themselves.
 *
 *   test_gpt2_tokenizer VOCAB_DIR   (the cases that need them skipped, with a
 *                                    message, when VOCAB_DIR lacks the files) */
#include "test_util.h"
#include "tokenizer.h"
#include "tokenizer_gpt2.h"
#include "utf8_repair.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *vocab_dir;

typedef struct id_list {
    uint32_t ids[256];
    size_t n;
} id_list;

static int collect(void *ctx, const uint32_t *tokens, size_t n, rm_error *err)
{
    id_list *l = ctx;
    if (l->n + n > sizeof l->ids / sizeof l->ids[0])
        return rm_fail(err, "too many tokens for the test");
    memcpy(l->ids + l->n, tokens, n * sizeof *tokens);
    l->n += n;
    return RM_OK;
}

static const struct known {
    const char *text;
    uint32_t ids[16];
    size_t n;
} known[] = {
    {"Hello world", {15496, 995}, 2},
    {" can't", {460, 470}, 2},
    {"I'm here, they've gone. It's 2024!", {40, 1101, 994, 11, 484, 1053, 3750, 13, 632, 338, 48609, 0}, 12},
    {"  \n\n  x\r\n\ty", {220, 220, 628, 220, 2124, 201, 198, 197, 88}, 9},
    {"1234567890", {10163, 2231, 30924, 3829}, 4},
    {" h\xc3\xa9llo w\xc3\xb6rld", {289, 2634, 18798, 266, 30570, 335}, 6},
    {"\xe4\xb8\x96\xe7\x95\x8c", {10310, 244, 45911, 234}, 4},     /* 世界 */
    {"\xf0\x9f\x98\x80", {47249, 222}, 2},                         /* 😀 */
    {"<|endoftext|>", {27, 91, 437, 1659, 5239, 91, 29}, 7},       /* text, not the eot token */
    {"\xff", {4210}, 1},                                           /* U+FFFD, as TextDecoder reads it */
};

START_TEST(reference_encodings)
{
    rm_text_tokenizer t;
    rm_error err;
    ck_assert_msg(rm_tokenizer_open("gpt2", vocab_dir, &t, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(t.tok->vocab, 50257);
    ck_assert_int_eq(t.tok->eot, 50256);
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        id_list got = {.n = 0};
        const struct known *c = &known[k];
        ck_assert_msg(rm_tokenizer_encode(&t, (const uint8_t *)c->text, strlen(c->text), collect, &got, &err) == RM_OK,
                      "%s", err.msg);
        ck_assert_msg(got.n == c->n, "'%s': %zu ids, the reference gives %zu", c->text, got.n, c->n);
        for (size_t i = 0; i < c->n; i++)
            ck_assert_msg(got.ids[i] == c->ids[i], "'%s': id %zu is %u, the reference gives %u", c->text, i,
                          got.ids[i], c->ids[i]);
        /* decoding gives the text back (invalid UTF-8: its repair) */
        char back[256] = "";
        for (size_t i = 0; i < got.n; i++) {
            size_t n;
            const uint8_t *b = rm_tokenizer_token_bytes(&t, got.ids[i], &n);
            ck_assert_ptr_nonnull(b);
            strncat(back, (const char *)b, n);
        }
        ck_assert_str_eq(back, strcmp(c->text, "\xff") == 0 ? "\xef\xbf\xbd" : c->text);
    }
    /* the same text twice (the second from the word cache) */
    id_list twice = {.n = 0};
    ck_assert(rm_tokenizer_encode(&t, (const uint8_t *)" can't can't", 12, collect, &twice, &err) == RM_OK);
    ck_assert_uint_eq(twice.n, 4);
    ck_assert_uint_eq(twice.ids[2], 460);
    size_t n;
    const uint8_t *eot = rm_tokenizer_token_bytes(&t, 50256, &n);
    ck_assert(n == 13 && memcmp(eot, "<|endoftext|>", 13) == 0);
    ck_assert_ptr_null(rm_tokenizer_token_bytes(&t, 50257, &n));
    rm_tokenizer_close(&t);
}
END_TEST

/* Cases and answers from node's TextDecoder (the WHATWG decoder). */
START_TEST(invalid_utf8_is_repaired_as_textdecoder_does)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"\xf0\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xe2\x82", "\xef\xbf\xbd"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xe2\x82\x41", "\xef\xbf\xbd\x41"},
        {"a\xff" "b", "a\xef\xbf\xbd" "b"},
        {"\xf0\x9f\x98", "\xef\xbf\xbd"},
        {"ok \xf0\x9f\x98\x80", "ok \xf0\x9f\x98\x80"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const uint8_t *in = (const uint8_t *)cases[k].in;
        size_t len = strlen(cases[k].in), replacements;
        size_t n = rm_utf8_repaired_len(in, len, &replacements);
        ck_assert_uint_eq(n, strlen(cases[k].out));
        ck_assert_uint_eq(replacements != 0, strcmp(cases[k].in, cases[k].out) != 0);
        uint8_t out[64];
        rm_utf8_repair(in, len, out);
        ck_assert_msg(memcmp(out, cases[k].out, n) == 0, "case %zu repaired wrongly", k);
    }
}
END_TEST

START_TEST(bad_vocabularies_are_named)
{
    char dir[RMT_PATH_CAP], path[RMT_PATH_CAP + 32];
    rmt_make_tempdir(dir);
    rm_gpt2 *g;
    rm_error err;
    ck_assert(rm_gpt2_load(dir, &g, &err) == RM_ERR);
    rmt_assert_contains(err.msg, "encoder.json");
    rmt_assert_contains(err.msg, "scripts/fetch-gpt2-vocab.sh");
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    rmt_write_text(path, "{\"a\": 0, \"b\": 0}");
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    rmt_write_text(path, "#version: 0.2\na b\n");
    ck_assert(rm_gpt2_load(dir, &g, &err) == RM_ERR);
    rmt_assert_contains(err.msg, "token id 0 given twice");
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    rmt_write_text(path, "{\"a\": 0, ");
    ck_assert(rm_gpt2_load(dir, &g, &err) == RM_ERR);
    rmt_assert_contains(err.msg, "encoder.json:1");
    rmt_remove_tree(dir);
}
END_TEST

int main(int argc, char **argv)
{
    vocab_dir = argc > 1 ? argv[1] : RM_GPT2_VOCAB_DIR_DEFAULT;
    char path[RMT_PATH_CAP];
    snprintf(path, sizeof path, "%s/vocab.bpe", vocab_dir);
    FILE *f = fopen(path, "r");
    if (f)
        fclose(f);
    else
        printf("test_gpt2_tokenizer: the encoding cases skipped: no GPT-2 vocabulary in %s "
               "(scripts/fetch-gpt2-vocab.sh %s)\n",
               vocab_dir, vocab_dir);
    Suite *s = suite_create("gpt2_tokenizer");
    TCase *tc = tcase_create("gpt2");
    /* loading the 50k-entry vocabulary takes ~13 s under the sanitizer
     * leg's ASan + UBSan on a 2-core machine (0.04 s without): a bound for
     * a hang, not a speed check (CTest's TIMEOUT for the binary is 60) */
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, invalid_utf8_is_repaired_as_textdecoder_does);
    if (f) {
        tcase_add_test(tc, reference_encodings);
        tcase_add_test(tc, bad_vocabularies_are_named);
    }
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
