/* The job config: every class of mistake is refused with the right reason
 * at the right file:line:col, overrides and the canonical dump behave, and
 * the learning-rate schedule has the documented shape.
 *
 * Each test runs in its own forked process inside a fresh directory that
 * holds a small synthetic dataset (data/train: 60 samples, data/test: 20,
 * 4 inputs, 3 classes), so `dir: data` validates. */
#include "config.h"
#include "test_util.h"
#include "yaml_tree.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char scratch[RMT_PATH_CAP];

static void setup_scratch(void)
{
    rmt_make_tempdir(scratch);
    ck_assert_int_eq(chdir(scratch), 0);
    rmt_make_split(".", "data/train", 60, 4, 3, 25);
    rmt_make_split(".", "data/test", 20, 4, 3, 25);
}

static void teardown_scratch(void)
{
    ck_assert_int_eq(chdir("/"), 0);
    rmt_remove_tree(scratch);
}

/* A valid config; the line and column comments are what messages cite. */
static const char good_config[] = "model:\n"             /* 1 */
                                  "  hidden: [8]\n"      /* 2: value at col 11 */
                                  "data:\n"              /* 3 */
                                  "  dir: data\n"        /* 4: value at col 8 */
                                  "train:\n"             /* 5 */
                                  "  global_batch: 12\n" /* 6: value at col 17 */
                                  "  steps: 10\n"        /* 7: value at col 10 */
                                  "launch:\n"            /* 8 */
                                  "  workers: 2\n";      /* 9: value at col 12 */

/* Writes text to job.yaml and loads it with the given --set overrides. */
static int load_text(const char *text, char **sets, int n_sets, rm_config *cfg, rm_dataset_facts *facts,
                     rm_error *err)
{
    rmt_write_text("job.yaml", text);
    memset(err->msg, 0, sizeof err->msg);
    return rm_config_load("job.yaml", sets, n_sets, cfg, facts, err);
}

/* Loads text, expects a refusal whose message starts with `where` (the
 * "file:line:col: " part) and contains `what`. */
static void expect_refused(const char *text, char **sets, int n_sets, const char *where, const char *what)
{
    rm_config cfg;
    rm_error err;
    int rc = load_text(text, sets, n_sets, &cfg, NULL, &err);
    ck_assert_msg(rc == RM_ERR, "config was accepted but should fail with \"%s%s\"", where, what);
    rmt_assert_prefix(err.msg, where);
    rmt_assert_contains(err.msg, what);
}

static void cwd_path(char *out, size_t cap, const char *rel)
{
    char cwd[RMT_PATH_CAP];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    snprintf(out, cap, "%s/%s", cwd, rel);
}

START_TEST(good_config_loads)
{
    rm_config cfg;
    rm_dataset_facts facts;
    rm_error err;
    ck_assert_msg(load_text(good_config, NULL, 0, &cfg, &facts, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(cfg.n_hidden, 1);
    ck_assert_int_eq(cfg.hidden[0], 8);
    ck_assert_int_eq(cfg.global_batch, 12);
    ck_assert_int_eq(cfg.steps, 10);
    /* steps in the file wins over the default epochs */
    ck_assert(cfg.epochs == 0);
    ck_assert_int_eq(rm_config_total_steps(&cfg, facts.train_samples), 10);
    ck_assert_int_eq(facts.train_samples, 60);
    ck_assert_int_eq(facts.eval_samples, 20);
    ck_assert_int_eq(facts.input_dim, 4);
    ck_assert_int_eq(facts.classes, 3);
    /* relative data.dir is stored absolute, so every rank reads the same files */
    char want[RMT_PATH_CAP + 8];
    cwd_path(want, sizeof want, "data");
    ck_assert_str_eq(cfg.data_dir, want);
    /* defaults fill what the file leaves out */
    ck_assert_int_eq(cfg.optimizer, RM_OPT_ADAMW);
    ck_assert_str_eq(cfg.eval_split, "test");
}
END_TEST

static const struct {
    const char *text, *where, *what;
} unknown_keys[] = {
    {"train:\n  lr_rate: 0.1\n", "job.yaml:2:3: ", "unknown key 'lr_rate' in section 'train' (did you mean 'lr'?)"},
    {"train:\n  lr: 0.1\n  global_bach: 64\n", "job.yaml:3:3: ",
     "unknown key 'global_bach' in section 'train' (did you mean 'global_batch'?)"},
    {"train:\n  epoch: 2\n", "job.yaml:2:3: ", "unknown key 'epoch' in section 'train' (did you mean 'epochs'?)"},
    {"model:\n  hiden: [8]\n", "job.yaml:2:3: ", "unknown key 'hiden' in section 'model' (did you mean 'hidden'?)"},
    {"launch:\n  worker: 2\n", "job.yaml:2:3: ", "unknown key 'worker' in section 'launch' (did you mean 'workers'?)"},
    /* a key known in another section is still unknown here */
    {"model:\n  lr: 0.1\n", "job.yaml:2:3: ", "unknown key 'lr' in section 'model'"},
};

START_TEST(unknown_key_is_refused_with_a_hint)
{
    expect_refused(unknown_keys[_i].text, NULL, 0, unknown_keys[_i].where, unknown_keys[_i].what);
}
END_TEST

START_TEST(unknown_key_far_from_any_gets_no_hint)
{
    rm_config cfg;
    rm_error err;
    ck_assert_int_eq(load_text("train:\n  flux_capacitor: 88\n", NULL, 0, &cfg, NULL, &err), RM_ERR);
    rmt_assert_prefix(err.msg, "job.yaml:2:3: unknown key 'flux_capacitor' in section 'train'");
    ck_assert_msg(strstr(err.msg, "did you mean") == NULL, "no hint expected: %s", err.msg);
}
END_TEST

START_TEST(unknown_section_is_refused)
{
    expect_refused("model:\n  hidden: [8]\ntrian:\n  lr: 0.1\n", NULL, 0, "job.yaml:3:1: ",
                   "unknown section 'trian' (did you mean 'train'?)");
    expect_refused("lunch:\n  workers: 2\n", NULL, 0, "job.yaml:1:1: ",
                   "unknown section 'lunch' (did you mean 'launch'?)");
    expect_refused("model:\n  hidden: [8]\nhyperparameters:\n  lr: 0.1\n", NULL, 0, "job.yaml:3:1: ",
                   "unknown section 'hyperparameters'");
}
END_TEST

static const struct {
    const char *text, *where, *what;
} wrong_types[] = {
    /* a string where an integer goes */
    {"train:\n  global_batch: big\n", "job.yaml:2:17: ", "train.global_batch must be an integer, got 'big'"},
    /* a quoted number is a string */
    {"train:\n  global_batch: \"128\"\n", "job.yaml:2:17: ", "train.global_batch must be an integer, got '128'"},
    {"train:\n  global_batch: 12.5\n", "job.yaml:2:17: ", "train.global_batch must be an integer, got '12.5'"},
    {"train:\n  lr: fast\n", "job.yaml:2:7: ", "train.lr must be a number, got 'fast'"},
    /* a list where a scalar goes */
    {"train:\n  lr: [0.1, 0.2]\n", "job.yaml:2:7: ", "train.lr expects a single value, got a list"},
    {"data:\n  dir: [a, b]\n", "job.yaml:2:8: ", "data.dir expects a single value, got a list"},
    {"launch:\n  workers:\n    count: 2\n", "job.yaml:3:5: ", "launch.workers expects a single value, got a mapping"},
    /* a mapping or a scalar where a list goes */
    {"model:\n  hidden: {width: 64}\n", "job.yaml:2:11: ",
     "model.hidden expects a list of integers like [512, 256], got a mapping"},
    {"model:\n  hidden:\n    first: 64\n", "job.yaml:3:5: ", "model.hidden expects a list of integers"},
    {"model:\n  hidden: 64\n", "job.yaml:2:11: ", "model.hidden expects a list of integers like [512, 256], got a scalar"},
    /* a bad item inside the list points at the item */
    {"model:\n  hidden: [64, wide]\n", "job.yaml:2:16: ", "model.hidden[1] must be an integer, got 'wide'"},
    {"model:\n  hidden:\n    - 64\n    - [1, 2]\n", "job.yaml:4:7: ", "model.hidden[1] must be an integer, got a list"},
    /* enums name the choices */
    {"model:\n  activation: sigmoid\n", "job.yaml:2:15: ", "model.activation must be one of relu, tanh, got 'sigmoid'"},
    {"train:\n  optimizer: adam\n", "job.yaml:2:14: ", "train.optimizer must be one of sgd, adamw, got 'adam'"},
    /* structure */
    {"train: fast\n", "job.yaml:1:8: ", "section 'train' must be a mapping of keys, got a scalar"},
    {"- model\n- train\n", "job.yaml:1:1: ", "a job config is a mapping of sections"},
};

START_TEST(wrong_type_is_refused)
{
    expect_refused(wrong_types[_i].text, NULL, 0, wrong_types[_i].where, wrong_types[_i].what);
}
END_TEST

static const struct {
    const char *text, *where, *what;
} out_of_range[] = {
    {"train:\n  lr: -1\n", "job.yaml:2:7: ", "train.lr = -1 is out of range: must be > 0 and <= 100"},
    {"train:\n  lr: 0\n", "job.yaml:2:7: ", "train.lr = 0 is out of range: must be > 0"},
    {"launch:\n  workers: 0\n", "job.yaml:2:12: ", "launch.workers = 0 is out of range: must be >= 1 and <= 65536"},
    {"train:\n  global_batch: -4\n", "job.yaml:2:17: ", "train.global_batch = -4 is out of range: must be >= 1"},
    {"train:\n  momentum: 1.5\n", "job.yaml:2:13: ", "train.momentum = 1.5 is out of range"},
    {"model:\n  hidden: [64, 0]\n", "job.yaml:2:16: ", "model.hidden = 0 is out of range: must be >= 1"},
    {"data:\n  prefetch_batches: 0\n", "job.yaml:2:21: ", "data.prefetch_batches = 0 is out of range"},
};

START_TEST(out_of_range_is_refused)
{
    expect_refused(out_of_range[_i].text, NULL, 0, out_of_range[_i].where, out_of_range[_i].what);
}
END_TEST

START_TEST(global_batch_must_divide_over_workers)
{
    /* the message names both numbers and points at global_batch */
    expect_refused("data:\n  dir: data\ntrain:\n  global_batch: 10\n  steps: 5\nlaunch:\n  workers: 3\n", NULL, 0,
                   "job.yaml:4:17: ", "global batch 10 does not divide evenly over 3 workers (launch.workers)");
    /* when the worker count comes from --set (--workers), the flag is
     * named: the file's global batch was fine before it */
    char *sets[] = {"launch.workers=5"};
    expect_refused(good_config, sets, 1, "--set launch.workers: ",
                   "global batch 12 (job.yaml:6:17) does not divide evenly over 5 workers");
}
END_TEST

START_TEST(global_batch_larger_than_dataset)
{
    expect_refused("data:\n  dir: data\ntrain:\n  global_batch: 120\n  steps: 5\n", NULL, 0, "job.yaml:4:17: ",
                   "global batch 120 is larger than the 60 training samples");
}
END_TEST

START_TEST(warmup_must_fit_in_the_run)
{
    expect_refused("data:\n  dir: data\ntrain:\n  global_batch: 12\n  steps: 10\n  warmup_steps: 10\n", NULL, 0,
                   "job.yaml:6:17: ",
                   "warmup of 10 steps does not fit in a run of 10 steps");
}
END_TEST

START_TEST(epochs_and_steps_together_are_refused)
{
    expect_refused("data:\n  dir: data\ntrain:\n  epochs: 2\n  steps: 10\n", NULL, 0, "job.yaml:5:10: ",
                   "set either train.epochs or train.steps, not both (epochs=2, steps=10)");
    /* both from --set is the same mistake */
    char *sets[] = {"train.epochs=3", "train.steps=7"};
    expect_refused("data:\n  dir: data\n", sets, 2, "--set train.steps: ", "set either train.epochs or train.steps");
}
END_TEST

START_TEST(later_length_wins)
{
    rm_config cfg;
    rm_error err;
    /* --set steps over epochs in the file */
    char *steps[] = {"train.steps=5"};
    ck_assert_msg(load_text("data:\n  dir: data\ntrain:\n  global_batch: 12\n  epochs: 2\n", steps, 1, &cfg, NULL, &err) == RM_OK, "%s",
                  err.msg);
    ck_assert_int_eq(cfg.steps, 5);
    ck_assert(cfg.epochs == 0);
    /* --set epochs over steps in the file */
    char *epochs[] = {"train.epochs=1.5"};
    ck_assert_msg(load_text(good_config, epochs, 1, &cfg, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(cfg.steps, 0);
    ck_assert(cfg.epochs == 1.5);
    ck_assert_int_eq(rm_config_total_steps(&cfg, 60), 8); /* ceil(1.5 * 60 / 12) */
}
END_TEST

START_TEST(a_job_needs_a_length)
{
    expect_refused("data:\n  dir: data\ntrain:\n  epochs: 0\n", NULL, 0, "job.yaml:4:11: ",
                   "the job has no length: set train.epochs or train.steps > 0");
}
END_TEST

START_TEST(missing_dataset_dir_is_named)
{
    char missing[RMT_PATH_CAP + 16];
    cwd_path(missing, sizeof missing, "nowhere");
    char what[RMT_PATH_CAP + 64];
    snprintf(what, sizeof what, "dataset directory %s does not exist", missing);
    expect_refused("train:\n  steps: 3\ndata:\n  dir: nowhere\n", NULL, 0, "job.yaml:4:8: ", what);
    /* absolute paths are named as given */
    expect_refused("data:\n  dir: /nonexistent/ringmaster-data\n", NULL, 0, "job.yaml:2:8: ",
                   "dataset directory /nonexistent/ringmaster-data does not exist");
}
END_TEST

START_TEST(missing_split_is_named)
{
    char dataset[RMT_PATH_CAP + 16];
    cwd_path(dataset, sizeof dataset, "data");
    char what[2 * RMT_PATH_CAP];
    snprintf(what, sizeof what, "split 'validation' of dataset %s is not usable: %s/validation/index.rmi", dataset,
             dataset);
    expect_refused("data:\n  dir: data\n  eval_split: validation\ntrain:\n  steps: 3\n", NULL, 0, "job.yaml:3:15: ",
                   what);
    expect_refused("data:\n  dir: data\n  train_split: training\ntrain:\n  steps: 3\n", NULL, 0, "job.yaml:3:16: ",
                   "split 'training' of dataset");
}
END_TEST

/* An empty file (or one of comments only, or {}) is not a job of defaults. */
START_TEST(empty_config_is_refused)
{
    expect_refused("", NULL, 0, "job.yaml: ", "is empty: a job config says at least where its data is");
    expect_refused("# nothing yet\n", NULL, 0, "job.yaml: ", "is empty");
    expect_refused("{}\n", NULL, 0, "job.yaml: ", "is empty");
}
END_TEST

/* Bounds read as numbers: 16777216, not 1.67772e+07. */
START_TEST(bounds_are_printed_as_numbers)
{
    char *sets[] = {"train.global_batch=100000000"};
    expect_refused(good_config, sets, 1, "--set train.global_batch: ",
                   "train.global_batch = 100000000 is out of range: must be >= 1 and <= 16777216");
    char *lr[] = {"train.lr=0"};
    expect_refused(good_config, lr, 1, "--set train.lr: ", "train.lr = 0 is out of range: must be > 0 and <= 100");
}
END_TEST

START_TEST(empty_eval_split_means_no_evaluation)
{
    rm_config cfg;
    rm_dataset_facts facts;
    rm_error err;
    char *sets[] = {"data.eval_split=\"\""};
    ck_assert_msg(load_text(good_config, sets, 1, &cfg, &facts, &err) == RM_OK, "%s", err.msg);
    ck_assert_str_eq(cfg.eval_split, "");
    ck_assert_int_eq(facts.eval_samples, 0);
}
END_TEST

/* A billion-laughs document: fully expanded it would hold 9^9 strings. */
START_TEST(yaml_aliases_are_refused_quickly)
{
    char text[4096] = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
    for (char c = 'b'; c <= 'i'; c++) {
        char line[128];
        snprintf(line, sizeof line, "%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n", c, c, c - 1, c - 1, c - 1,
                 c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
        strcat(text, line);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_refused(text, NULL, 0, "job.yaml:2:8: ", "YAML aliases (*name) are not accepted");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    ck_assert_msg(seconds < 1.0, "refusing the alias took %.3f s", seconds);

    /* a merge key is an alias too */
    expect_refused("base: &b {lr: 0.1}\ntrain:\n  <<: *b\n", NULL, 0, "job.yaml:3:7: ", "YAML aliases");
}
END_TEST

START_TEST(file_over_one_mib_is_refused)
{
    size_t len = RM_YAML_MAX_BYTES + 1;
    char *text = malloc(len + 1);
    ck_assert_ptr_nonnull(text);
    memset(text, '#', len);
    for (size_t i = 79; i < len; i += 80)
        text[i] = '\n';
    text[len] = '\0';
    expect_refused(text, NULL, 0, "job.yaml: ", "larger than 1048576 bytes");
    free(text);
}
END_TEST

START_TEST(file_of_exactly_one_mib_is_read)
{
    /* the limit itself is allowed: a valid config padded with comments */
    size_t len = RM_YAML_MAX_BYTES, head = strlen(good_config);
    char *text = malloc(len + 1);
    ck_assert_ptr_nonnull(text);
    memcpy(text, good_config, head);
    memset(text + head, '#', len - head);
    for (size_t i = head + 79; i < len; i += 80)
        text[i] = '\n';
    text[len - 1] = '\n';
    text[len] = '\0';
    rm_config cfg;
    rm_error err;
    ck_assert_msg(load_text(text, NULL, 0, &cfg, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(cfg.global_batch, 12);
    free(text);
}
END_TEST

START_TEST(binary_file_is_refused)
{
    static const unsigned char bytes[] = {'t', 'r', 'a', 'i', 'n', ':', '\n', ' ', ' ', 'l', 'r', ':', ' ', 0, 1, 2, '\n'};
    rmt_write_bytes("job.yaml", bytes, sizeof bytes);
    rm_config cfg;
    rm_error err;
    ck_assert_int_eq(rm_config_load("job.yaml", NULL, 0, &cfg, NULL, &err), RM_ERR);
    ck_assert_str_eq(err.msg, "job.yaml: not a text file (contains NUL bytes)");
}
END_TEST

START_TEST(missing_config_file_is_named)
{
    rm_config cfg;
    rm_error err;
    ck_assert_int_eq(rm_config_load("no-such-job.yaml", NULL, 0, &cfg, NULL, &err), RM_ERR);
    rmt_assert_prefix(err.msg, "no-such-job.yaml: cannot open");
    rmt_assert_contains(err.msg, "No such file or directory");
}
END_TEST

static const struct {
    const char *text, *where, *what;
} bad_syntax[] = {
    /* a key indented less than its siblings */
    {"train:\n  lr: 0.1\n steps: 5\n", "job.yaml:3:2: ", "invalid YAML: did not find expected key"},
    /* an unclosed flow list runs into the next key */
    {"model:\n  hidden: [64, 32\ntrain:\n  lr: 0.1\n", "job.yaml:3:6: ", "invalid YAML: did not find expected ',' or ']'"},
    /* a tab used for indentation */
    {"train:\n\tlr: 0.1\n", "job.yaml:2:1: ",
     "invalid YAML: a tab character: YAML indents with spaces, never tabs (found character that cannot start any token"},
    /* an unterminated quoted string */
    {"data:\n  dir: \"data\n", "job.yaml:3:1: ", "invalid YAML: found unexpected end of stream"},
};

START_TEST(invalid_yaml_names_the_line)
{
    expect_refused(bad_syntax[_i].text, NULL, 0, bad_syntax[_i].where, bad_syntax[_i].what);
}
END_TEST

START_TEST(duplicate_key_is_refused)
{
    expect_refused("train:\n  lr: 0.1\n  steps: 4\n  lr: 0.2\n", NULL, 0, "job.yaml:4:3: ",
                   "key 'lr' appears twice (first at line 2)");
    expect_refused("train:\n  lr: 0.1\nmodel:\n  hidden: [8]\ntrain:\n  steps: 4\n", NULL, 0, "job.yaml:5:1: ",
                   "key 'train' appears twice (first at line 1)");
}
END_TEST

START_TEST(more_than_one_document_is_refused)
{
    expect_refused("train:\n  lr: 0.1\n---\ntrain:\n  lr: 0.2\n", NULL, 0, "job.yaml:3:1: ",
                   "more than one YAML document");
}
END_TEST

START_TEST(parser_limits_hold)
{
    /* nesting deeper than RM_YAML_MAX_DEPTH */
    char deep[256] = "x: ";
    for (int i = 0; i < RM_YAML_MAX_DEPTH + 4; i++)
        strcat(deep, "[");
    for (int i = 0; i < RM_YAML_MAX_DEPTH + 4; i++)
        strcat(deep, "]");
    strcat(deep, "\n");
    expect_refused(deep, NULL, 0, "job.yaml:1:", "nesting deeper than 16 levels");

    /* more nodes than RM_YAML_MAX_NODES, in a file well under 1 MiB */
    size_t cap = 3 * RM_YAML_MAX_NODES + 64;
    char *wide = malloc(cap);
    ck_assert_ptr_nonnull(wide);
    strcpy(wide, "x: [");
    for (int i = 0; i < RM_YAML_MAX_NODES + 10; i++)
        strcat(wide, "1,");
    strcat(wide, "1]\n");
    expect_refused(wide, NULL, 0, "job.yaml:1:", "more than 4096 nodes");
    free(wide);
}
END_TEST

START_TEST(set_overrides_a_key)
{
    rm_config cfg;
    rm_error err;
    char *sets[] = {"train.lr=0.01", "model.hidden=[64,32]", "model.activation=tanh"};
    ck_assert_msg(load_text(good_config, sets, 3, &cfg, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert(cfg.lr == 0.01);
    ck_assert_int_eq(cfg.n_hidden, 2);
    ck_assert_int_eq(cfg.hidden[0], 64);
    ck_assert_int_eq(cfg.hidden[1], 32);
    ck_assert_int_eq(cfg.activation, RM_ACT_TANH);
    /* the later of two --set of one key wins */
    char *twice[] = {"train.lr=0.01", "train.lr=0.25"};
    ck_assert_msg(load_text(good_config, twice, 2, &cfg, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert(cfg.lr == 0.25);
    /* top-level keys too */
    char *run_dir[] = {"run_dir=/tmp/somewhere"};
    ck_assert_msg(load_text(good_config, run_dir, 1, &cfg, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert_str_eq(cfg.run_dir, "/tmp/somewhere");
}
END_TEST

START_TEST(set_refuses_unknown_and_bad_values)
{
    char *nope[] = {"train.nope=1"};
    expect_refused(good_config, nope, 1, "--set train.nope=1: ", "unknown key 'train.nope'");
    char *typo[] = {"train.lrr=0.1"};
    expect_refused(good_config, typo, 1, "--set train.lrr=0.1: ", "unknown key 'train.lrr' (did you mean 'train.lr'?)");
    char *bad_value[] = {"train.lr=fast"};
    expect_refused(good_config, bad_value, 1, "--set train.lr: ", "train.lr must be a number, got 'fast'");
    char *bad_list[] = {"model.hidden=[64,x]"};
    expect_refused(good_config, bad_list, 1, "--set model.hidden: ", "model.hidden[1] must be an integer, got 'x'");
    char *no_equals[] = {"train.lr"};
    expect_refused(good_config, no_equals, 1, "--set train.lr: ", "expected section.key=value");
    char *out_of_range_value[] = {"launch.workers=0"};
    expect_refused(good_config, out_of_range_value, 1, "--set launch.workers: ", "launch.workers = 0 is out of range");
    char *alias[] = {"train.lr=*x"};
    expect_refused(good_config, alias, 1, "--set train.lr:", "YAML aliases");
}
END_TEST

/* Writes cfg with rm_config_write to path. */
static void write_config(const rm_config *cfg, const char *path)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    rm_config_write(cfg, f);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(write_then_load_round_trips)
{
    /* non-default values in every type of key, including doubles without an
     * exact short decimal form and strings that need quoting */
    static const char text[] = "model:\n  hidden: [64, 32, 16]\n  activation: tanh\n"
                               "data:\n  dir: data\n  eval_split: \"\"\n  shuffle_window_shards: 2\n"
                               "train:\n  global_batch: 12\n  steps: 40\n  optimizer: sgd\n  lr: 0.1\n"
                               "  momentum: 0.95\n  beta2: 0.98765\n  eps: 3e-7\n  weight_decay: 0.0001\n"
                               "  warmup_steps: 3\n  schedule: constant\n  min_lr_ratio: 0.3333333333333333\n"
                               "  seed: 12345678901\n  bucket_mb: 0.25\n"
                               "launch:\n  workers: 3\n  mpirun: \"mpirun --mca btl self,vader\"\n"
                               "observe:\n  verbosity: quiet\n"
                               "run_dir: \"runs/it's \\\"quoted\\\"\"\n";
    rm_config first, second;
    rm_error err;
    ck_assert_msg(load_text(text, NULL, 0, &first, NULL, &err) == RM_OK, "%s", err.msg);
    write_config(&first, "resolved.yaml");
    ck_assert_msg(rm_config_load("resolved.yaml", NULL, 0, &second, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert_uint_eq(rm_config_hash(&first), rm_config_hash(&second));
    /* the hash is of the values, so compare the values that matter too */
    ck_assert(second.lr == 0.1 && second.momentum == 0.95 && second.beta2 == 0.98765 && second.eps == 3e-7);
    ck_assert(second.min_lr_ratio == first.min_lr_ratio);
    ck_assert_int_eq(second.seed, 12345678901L);
    ck_assert_int_eq(second.n_hidden, 3);
    ck_assert_int_eq(second.hidden[2], 16);
    ck_assert_str_eq(second.eval_split, "");
    ck_assert_str_eq(second.mpirun, "mpirun --mca btl self,vader");
    ck_assert_str_eq(second.run_dir, first.run_dir);
    rmt_assert_contains(second.run_dir, "runs/it's \"quoted\"");
    ck_assert_str_eq(second.data_dir, first.data_dir);

    /* and the hash does see a change */
    char *sets[] = {"train.lr=0.1000001"};
    ck_assert_msg(rm_config_load("resolved.yaml", sets, 1, &second, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert_uint_ne(rm_config_hash(&first), rm_config_hash(&second));
}
END_TEST

START_TEST(lr_warms_up_linearly)
{
    rm_config cfg;
    rm_config_defaults(&cfg);
    cfg.lr = 0.1;
    cfg.warmup_steps = 10;
    cfg.schedule = RM_SCHED_CONSTANT;
    for (long step = 0; step < 10; step++)
        ck_assert_double_eq_tol(rm_config_lr_at(&cfg, step, 100), 0.1 * (double)(step + 1) / 10.0, 1e-15);
    ck_assert_double_eq_tol(rm_config_lr_at(&cfg, 10, 100), 0.1, 1e-15);
    ck_assert_double_eq_tol(rm_config_lr_at(&cfg, 99, 100), 0.1, 1e-15);
}
END_TEST

START_TEST(lr_cosine_ends_at_min_lr)
{
    rm_config cfg;
    rm_config_defaults(&cfg);
    cfg.lr = 0.1;
    cfg.warmup_steps = 10;
    cfg.min_lr_ratio = 0.1;
    cfg.schedule = RM_SCHED_COSINE;
    long total = 111;
    /* peak right after warmup, min_lr at the last step, halfway in the middle */
    ck_assert_double_eq_tol(rm_config_lr_at(&cfg, 9, total), 0.1, 1e-15);
    ck_assert_double_eq_tol(rm_config_lr_at(&cfg, 10, total), 0.1, 1e-15);
    ck_assert_double_eq_tol(rm_config_lr_at(&cfg, 60, total), 0.055, 1e-12);
    ck_assert_double_eq_tol(rm_config_lr_at(&cfg, total - 1, total), 0.01, 1e-15);
    /* never below min_lr, even past the end */
    ck_assert_double_eq_tol(rm_config_lr_at(&cfg, total + 50, total), 0.01, 1e-15);
    /* strictly decreasing after warmup */
    for (long step = 11; step < total; step++)
        ck_assert_msg(rm_config_lr_at(&cfg, step, total) < rm_config_lr_at(&cfg, step - 1, total),
                      "lr does not fall at step %ld", step);
    /* without warmup, the first step runs at the peak */
    cfg.warmup_steps = 0;
    ck_assert_double_eq_tol(rm_config_lr_at(&cfg, 0, 50), 0.1, 1e-15);
    ck_assert_double_eq_tol(rm_config_lr_at(&cfg, 49, 50), 0.01, 1e-15);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, setup_scratch, teardown_scratch);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, good_config_loads);
    tcase_add_loop_test(tc, unknown_key_is_refused_with_a_hint, 0, sizeof unknown_keys / sizeof unknown_keys[0]);
    tcase_add_test(tc, unknown_key_far_from_any_gets_no_hint);
    tcase_add_test(tc, unknown_section_is_refused);
    tcase_add_loop_test(tc, wrong_type_is_refused, 0, sizeof wrong_types / sizeof wrong_types[0]);
    tcase_add_loop_test(tc, out_of_range_is_refused, 0, sizeof out_of_range / sizeof out_of_range[0]);
    tcase_add_test(tc, global_batch_must_divide_over_workers);
    tcase_add_test(tc, global_batch_larger_than_dataset);
    tcase_add_test(tc, warmup_must_fit_in_the_run);
    tcase_add_test(tc, epochs_and_steps_together_are_refused);
    tcase_add_test(tc, later_length_wins);
    tcase_add_test(tc, a_job_needs_a_length);
    tcase_add_test(tc, missing_dataset_dir_is_named);
    tcase_add_test(tc, missing_split_is_named);
    tcase_add_test(tc, empty_eval_split_means_no_evaluation);
    tcase_add_test(tc, empty_config_is_refused);
    tcase_add_test(tc, bounds_are_printed_as_numbers);
    tcase_add_test(tc, yaml_aliases_are_refused_quickly);
    tcase_add_test(tc, file_over_one_mib_is_refused);
    tcase_add_test(tc, file_of_exactly_one_mib_is_read);
    tcase_add_test(tc, binary_file_is_refused);
    tcase_add_test(tc, missing_config_file_is_named);
    tcase_add_loop_test(tc, invalid_yaml_names_the_line, 0, sizeof bad_syntax / sizeof bad_syntax[0]);
    tcase_add_test(tc, duplicate_key_is_refused);
    tcase_add_test(tc, more_than_one_document_is_refused);
    tcase_add_test(tc, parser_limits_hold);
    suite_add_tcase(s, tc);

    TCase *tc_set = tcase_create("overrides");
    tcase_add_checked_fixture(tc_set, setup_scratch, teardown_scratch);
    tcase_set_timeout(tc_set, 20);
    tcase_add_test(tc_set, set_overrides_a_key);
    tcase_add_test(tc_set, set_refuses_unknown_and_bad_values);
    tcase_add_test(tc_set, write_then_load_round_trips);
    suite_add_tcase(s, tc_set);

    TCase *tc_lr = tcase_create("lr_schedule");
    tcase_set_timeout(tc_lr, 10);
    tcase_add_test(tc_lr, lr_warms_up_linearly);
    tcase_add_test(tc_lr, lr_cosine_ends_at_min_lr);
    suite_add_tcase(s, tc_lr);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
