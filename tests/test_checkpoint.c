/* The checkpoint commit path: a worker's file as the writer puts it on disk
 * (bytes, size, checksum; a failing or full disk gives an error and no
 * file), the background writer thread, and the coordinator's commit
 * (every part checked before the rename, a step with a missing or damaged
 * part kept out, an unverified step directory moved aside, retention), and
 * the generation fence (a job of an older generation moves nothing). */
#include "checkpoint.h"
#include "ckpt_coord.h"
#include "ckpt_fence.h"
#include "ckpt_writer.h"
#include "crypto.h"
#include "le_bytes.h"
#include "test_util.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char scratch[RMT_PATH_CAP], root[RMT_PATH_CAP + 32];

static void setup(void)
{
    rmt_make_tempdir(scratch);
    snprintf(root, sizeof root, "%s/checkpoints", scratch);
}

static void teardown(void)
{
    rm_security_unload();
    rmt_remove_tree(scratch);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static long file_size(const char *path)
{
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0, "%s: missing", path);
    return (long)st.st_size;
}

/* Value of element i of state tensor k: distinct for every (k, i). */
static float value_at(int k, long i)
{
    return (float)k * 1000003.0f + (float)i * 0.5f + 0.25f;
}

static void fill(float *const *slices, int n_state, long begin, long end)
{
    for (int k = 0; k < n_state; k++)
        for (long i = begin; i < end; i++)
            slices[k][i - begin] = value_at(k, i);
}

/* A one-file manifest for the file of worker 0 holding [0, n). */
static rm_ckpt_manifest one_file_manifest(long step, long n, int n_state, rm_ckpt_file *f)
{
    rm_ckpt_manifest m = {.step = step, .n_state = n_state, .n_params = n, .world_size = 1, .n_files = 1, .files = f};
    return m;
}

/* The file's bytes are the header, then the slices in order; its size is
 * what the writer reported; the checksum is the payload's (rm_ckpt_load
 * recomputes it) and the data reads back. */
static void check_file(const char *dir, long step, long n, int n_state, rm_ckpt_file *f)
{
    char path[RMT_PATH_CAP + 64];
    snprintf(path, sizeof path, "%s/worker-00000.rmc", dir);
    ck_assert_int_eq(file_size(path), (long)f->bytes);
    rm_ckpt_manifest m = one_file_manifest(step, n, n_state, f);
    float *back[3] = {NULL, NULL, NULL};
    for (int k = 0; k < n_state; k++)
        back[k] = malloc(((size_t)n + 1) * sizeof(float));
    rm_error err;
    ck_assert_msg(rm_ckpt_load(dir, &m, back, &err) == RM_OK, "%s", err.msg);
    for (int k = 0; k < n_state; k++) {
        for (long i = 0; i < n; i++)
            if (back[k][i] != value_at(k, i))
                ck_abort_msg("tensor %d element %ld: %g, wrote %g", k, i, back[k][i], value_at(k, i));
        free(back[k]);
    }
    if (!rm_security_key()) {
        size_t len;
        uint8_t *bytes = rmt_read_bytes(path, &len);
        ck_assert_uint_eq(len, RM_CKPT_HEADER_BYTES + (size_t)n * sizeof(float) * (size_t)n_state);
        ck_assert_mem_eq(bytes, RM_CKPT_MAGIC, 8);
        ck_assert_uint_eq(rm_get_u64(bytes + 16), (uint64_t)step);
        ck_assert_uint_eq(rm_get_u64(bytes + 40), (uint64_t)n);
        free(bytes);
    }
}

/* Sizes around the alignment of direct I/O and past the 8 MiB request. */
static const long image_sizes[] = {0, 1, 1008, 1009, 1024, 262144 - 16, 3 * 1048576 + 5};

START_TEST(image_writes_the_file_and_its_checksum)
{
    long n = image_sizes[_i];
    rm_error err;
    rm_ckpt_image im;
    ck_assert_msg(rm_ckpt_image_init(&im, 0, n, 3, &err) == RM_OK, "%s", err.msg);
    ck_assert_uint_eq((uintptr_t)im.base % 4096, 0);
    float *slices[3] = {rm_ckpt_image_slice(&im, 0), rm_ckpt_image_slice(&im, 1), rm_ckpt_image_slice(&im, 2)};
    fill(slices, 3, 0, n);
    char a[RMT_PATH_CAP + 8], b[RMT_PATH_CAP + 8];
    snprintf(a, sizeof a, "%s/a", scratch);
    snprintf(b, sizeof b, "%s/b", scratch);
    mkdir(a, 0700);
    mkdir(b, 0700);
    rm_ckpt_file fa, fb;
    ck_assert_msg(rm_ckpt_write_image(a, 0, 7, &im, &fa, &err) == RM_OK, "%s", err.msg);
    ck_assert_uint_eq(fa.bytes, RM_CKPT_HEADER_BYTES + (uint64_t)n * 12);
    check_file(a, 7, n, 3, &fa);
    /* the general path (slices anywhere) writes the same file */
    ck_assert_msg(rm_ckpt_write_file(b, 0, 7, 0, n, (const float *const *)slices, 3, &fb, &err) == RM_OK, "%s",
                  err.msg);
    ck_assert_uint_eq(fb.bytes, fa.bytes);
    ck_assert_uint_eq(fb.checksum, fa.checksum);
    size_t la, lb;
    char pa[RMT_PATH_CAP + 32], pb[RMT_PATH_CAP + 32];
    snprintf(pa, sizeof pa, "%s/worker-00000.rmc", a);
    snprintf(pb, sizeof pb, "%s/worker-00000.rmc", b);
    uint8_t *ba = rmt_read_bytes(pa, &la), *bb = rmt_read_bytes(pb, &lb);
    ck_assert_uint_eq(la, lb);
    ck_assert_int_eq(memcmp(ba, bb, la), 0);
    free(ba);
    free(bb);
    /* a changed value changes the checksum */
    slices[2][n > 0 ? n - 1 : 0] += 1.0f;
    rm_ckpt_file fc;
    ck_assert_msg(rm_ckpt_write_image(a, 0, 7, &im, &fc, &err) == RM_OK, "%s", err.msg);
    if (n > 0)
        ck_assert_uint_ne(fc.checksum, fa.checksum);
    rm_ckpt_image_free(&im);
}
END_TEST

START_TEST(sealed_image_round_trips)
{
    char key[RMT_PATH_CAP + 8];
    snprintf(key, sizeof key, "%s/key", scratch);
    rm_error err;
    ck_assert_msg(rm_key_generate(key, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_security_load(key, &err) == RM_OK, "%s", err.msg);
    long n = 700001; /* the sealed chunks (1 MiB) cut across the tensors */
    rm_ckpt_image im;
    ck_assert_msg(rm_ckpt_image_init(&im, 0, n, 2, &err) == RM_OK, "%s", err.msg);
    float *slices[2] = {rm_ckpt_image_slice(&im, 0), rm_ckpt_image_slice(&im, 1)};
    fill(slices, 2, 0, n);
    rm_ckpt_file f;
    ck_assert_msg(rm_ckpt_write_image(scratch, 0, 3, &im, &f, &err) == RM_OK, "%s", err.msg);
    ck_assert_uint_eq(f.bytes, rm_seal_file_bytes((uint64_t)n * 8, 1u << 20));
    check_file(scratch, 3, n, 2, &f);
    char path[RMT_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/worker-00000.rmc", scratch);
    size_t len;
    uint8_t *bytes = rmt_read_bytes(path, &len);
    ck_assert_ptr_null(memmem(bytes, len, slices[1], 4096)); /* no plaintext on disk */
    free(bytes);
    rm_ckpt_image_free(&im);
}
END_TEST

/* A disk that fills up (here: the file size limit) mid-file fails the
 * write with the file's name, and leaves no partial file behind. */
START_TEST(full_disk_gives_an_error_and_no_file)
{
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {.rlim_cur = 1u << 20, .rlim_max = RLIM_INFINITY};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    long n = 1u << 20; /* 12 MiB of payload */
    rm_error err;
    rm_ckpt_image im;
    ck_assert_msg(rm_ckpt_image_init(&im, 0, n, 3, &err) == RM_OK, "%s", err.msg);
    float *slices[3] = {rm_ckpt_image_slice(&im, 0), rm_ckpt_image_slice(&im, 1), rm_ckpt_image_slice(&im, 2)};
    fill(slices, 3, 0, n);
    char path[RMT_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/worker-00000.rmc", scratch);
    rm_ckpt_file f = {.bytes = 99};
    ck_assert_int_eq(rm_ckpt_write_image(scratch, 0, 1, &im, &f, &err), RM_ERR);
    rmt_assert_contains(err.msg, path);
    rmt_assert_contains(err.msg, "write failed");
    ck_assert_msg(!exists(path), "a partial %s was left", path);
    ck_assert_uint_eq(f.bytes, 0);
    ck_assert_int_eq(rm_ckpt_write_file(scratch, 0, 1, 0, n, (const float *const *)slices, 3, &f, &err), RM_ERR);
    rmt_assert_contains(err.msg, "write failed");
    ck_assert_msg(!exists(path), "a partial %s was left", path);
    rm_ckpt_image_free(&im);
}
END_TEST

START_TEST(missing_directory_is_named)
{
    char dir[RMT_PATH_CAP + 32];
    snprintf(dir, sizeof dir, "%s/not-there", scratch);
    rm_error err;
    rm_ckpt_image im;
    ck_assert_msg(rm_ckpt_image_init(&im, 0, 10, 2, &err) == RM_OK, "%s", err.msg);
    rm_ckpt_file f;
    ck_assert_int_eq(rm_ckpt_write_image(dir, 0, 1, &im, &f, &err), RM_ERR);
    rmt_assert_contains(err.msg, "not-there/worker-00000.rmc: cannot create checkpoint file");
    rm_ckpt_image_free(&im);
}
END_TEST

/* The writer thread: a submitted snapshot becomes the file, reported once
 * through poll; a step whose directory cannot be made reports failure. */
START_TEST(writer_thread_writes_and_reports)
{
    long n = 50000, begin = 20000, end = 70000;
    rm_ckpt_writer w;
    rm_error err;
    ck_assert_msg(rm_ckpt_writer_start(&w, 0, begin, end, 3, &err) == RM_OK, "%s", err.msg);
    (void)n;
    fill(w.snap, 3, begin, end);
    char dir[RMT_PATH_CAP + 32];
    snprintf(dir, sizeof dir, "%s/step-00000005.tmp", scratch);
    rm_ckpt_writer_submit(&w, 5, dir);
    rm_ckpt_writer_wait_idle(&w);
    long step = -1;
    rm_ckpt_file f;
    int failed = -1;
    double write_s = -1;
    ck_assert_int_eq(rm_ckpt_writer_poll(&w, &step, &f, &failed, &err, &write_s), 1);
    ck_assert_msg(!failed, "%s", err.msg);
    ck_assert_int_eq(step, 5);
    ck_assert_int_eq(f.begin, begin);
    ck_assert_int_eq(f.end, end);
    ck_assert_uint_eq(f.bytes, RM_CKPT_HEADER_BYTES + (uint64_t)(end - begin) * 12);
    ck_assert(write_s >= 0);
    ck_assert_int_eq(rm_ckpt_writer_poll(&w, &step, &f, &failed, &err, &write_s), 0); /* reported once */
    /* the file verifies against what was reported */
    f.worker = 0;
    rm_ckpt_manifest m = {.step = 5, .n_state = 3, .n_params = end, .n_files = 1, .files = &f};
    ck_assert_msg(rm_ckpt_verify(dir, &m, &err) == RM_OK, "%s", err.msg);

    snprintf(dir, sizeof dir, "%s/no/such/step-00000006.tmp", scratch);
    rm_ckpt_writer_submit(&w, 6, dir);
    rm_ckpt_writer_wait_idle(&w);
    ck_assert_int_eq(rm_ckpt_writer_poll(&w, &step, &f, &failed, &err, &write_s), 1);
    ck_assert_int_eq(step, 6);
    ck_assert_int_eq(failed, 1);
    rmt_assert_contains(err.msg, "step-00000006.tmp: cannot create checkpoint directory");
    rm_ckpt_writer_stop(&w);
}
END_TEST

/* ---- the coordinator's commit ---- */

#define WORKERS 2
#define PARAMS 3001L

/* A coordinator of `generation` (0: a directory that never had one). */
static rm_ckpt_coord coord_setup_gen(long keep, long generation, long last_committed)
{
    rm_ckpt_coord cc;
    rm_ckpt_manifest base = {.seed = 1, .optimizer = 1, .n_state = 3, .n_params = PARAMS, .world_size = WORKERS,
                             .config_hash = 11, .training_hash = 22, .dataset_hash = 33, .generation = generation};
    rm_error err;
    ck_assert_msg(rm_ckpt_coord_init_with(&cc, root, WORKERS, keep, &base, NULL, 10, 1000, last_committed, &err) ==
                      RM_OK,
                  "%s", err.msg);
    return cc;
}

static rm_ckpt_coord coord_setup(long keep)
{
    return coord_setup_gen(keep, 0, -1);
}

static long slice_begin(int w)
{
    return PARAMS * w / WORKERS;
}

/* Worker w of `generation` writes its part of checkpoint `step` (values
 * shifted by step + shift) into its generation's temporary directory of
 * the step, as the worker does; returns its report. */
static rm_msg_ckpt_done worker_writes_gen(long step, int w, long generation, float shift)
{
    char name[48], dir[RMT_PATH_CAP + 64];
    rm_ckpt_tmp_dir_name(step, generation, name, sizeof name);
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    mkdir(dir, 0700);
    long begin = slice_begin(w), end = slice_begin(w + 1);
    rm_ckpt_image im;
    rm_error err;
    ck_assert_msg(rm_ckpt_image_init(&im, begin, end, 3, &err) == RM_OK, "%s", err.msg);
    for (int k = 0; k < 3; k++)
        for (long i = begin; i < end; i++)
            rm_ckpt_image_slice(&im, k)[i - begin] = value_at(k, i) + (float)step + shift;
    rm_ckpt_file f;
    ck_assert_msg(rm_ckpt_write_image(dir, w, step, &im, &f, &err) == RM_OK, "%s", err.msg);
    rm_ckpt_image_free(&im);
    rm_msg_ckpt_done d = {.step = step, .ok = 1, .worker = w, .begin = f.begin, .end = f.end, .opt_steps = step,
                          .bytes = f.bytes, .checksum = f.checksum, .write_s = 0.01 * (w + 1)};
    return d;
}

static rm_msg_ckpt_done worker_writes(long step, int w)
{
    return worker_writes_gen(step, w, 0, 0.0f);
}

static void part_path(long step, int w, int tmp, char *out, size_t cap)
{
    char name[32];
    rm_ckpt_dir_name(step, name, sizeof name);
    snprintf(out, cap, "%s/%s%s/worker-%05d.rmc", root, name, tmp ? ".tmp" : "", w);
}

/* Sends both reports; returns the outcome of the last one. */
static int deliver(rm_ckpt_coord *cc, rm_msg_ckpt_done *d, rm_error *why)
{
    int outcome = 9;
    long step = -1;
    double write_s = 0;
    rm_error err;
    ck_assert_msg(rm_ckpt_coord_receive(cc, &d[0], scratch, &outcome, &step, &write_s, why, &err) == RM_OK, "%s",
                  err.msg);
    ck_assert_int_eq(outcome, 0); /* nothing happens before every part is in */
    ck_assert_msg(rm_ckpt_coord_receive(cc, &d[1], scratch, &outcome, &step, &write_s, why, &err) == RM_OK, "%s",
                  err.msg);
    ck_assert_int_eq(step, d[0].step);
    ck_assert_double_eq_tol(write_s, 0.02, 1e-12); /* the slowest worker's */
    return outcome;
}

static int commit_step(rm_ckpt_coord *cc, long step, rm_error *why)
{
    rm_error err;
    ck_assert_msg(rm_ckpt_coord_expect(cc, step, &err) == RM_OK, "%s", err.msg);
    rm_msg_ckpt_done d[WORKERS] = {worker_writes(step, 0), worker_writes(step, 1)};
    return deliver(cc, d, why);
}

static void assert_latest(const char *want)
{
    char path[RMT_PATH_CAP + 64];
    snprintf(path, sizeof path, "%s/latest", root);
    uint8_t *text = rmt_read_bytes(path, NULL);
    ck_assert_str_eq((char *)text, want);
    free(text);
}

static void assert_not_committed(long step)
{
    char name[32], dir[RMT_PATH_CAP + 64];
    rm_ckpt_dir_name(step, name, sizeof name);
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    ck_assert_msg(!exists(dir), "%s was committed", dir);
    snprintf(dir, sizeof dir, "%s/%s.tmp", root, name);
    ck_assert_msg(!exists(dir), "%s was left behind", dir);
}

START_TEST(commit_after_every_part)
{
    rm_ckpt_coord cc = coord_setup(3);
    rm_error why;
    ck_assert_int_eq(commit_step(&cc, 10, &why), 1);
    ck_assert_int_eq(cc.last_committed, 10);
    ck_assert_int_eq(rm_ckpt_coord_in_flight(&cc), 0);
    assert_latest("step-00000010\n");
    char tmp[RMT_PATH_CAP + 64];
    snprintf(tmp, sizeof tmp, "%s/step-00000010.tmp", root);
    ck_assert(!exists(tmp));
    rm_ckpt_manifest m;
    char dir[RMT_PATH_CAP + 64];
    rm_error err;
    ck_assert_msg(rm_ckpt_find_latest(root, &m, dir, sizeof dir, NULL, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(m.step, 10);
    ck_assert_int_eq(m.data_cursor, 100);
    ck_assert_int_eq(m.opt_steps, 10);
    ck_assert_int_eq(m.n_files, WORKERS);
    ck_assert_uint_eq(m.training_hash, 22);
    float *state[3];
    for (int k = 0; k < 3; k++)
        state[k] = malloc(PARAMS * sizeof(float));
    ck_assert_msg(rm_ckpt_load(dir, &m, state, &err) == RM_OK, "%s", err.msg);
    for (int k = 0; k < 3; k++) {
        for (long i = 0; i < PARAMS; i++)
            ck_assert_float_eq(state[k][i], value_at(k, i) + 10.0f);
        free(state[k]);
    }
    rm_ckpt_manifest_free(&m);
    rm_ckpt_coord_free(&cc);
}
END_TEST

/* Each damage a part can have keeps its checkpoint out: no step
 * directory, no .tmp left, `latest` still the previous one, the reason
 * naming the file. */
enum damage { MISSING, TRUNCATED, FOREIGN_HEADER, WRONG_SIZE_REPORTED, WORKER_FAILED, DAMAGE_KINDS };

START_TEST(damaged_part_keeps_the_checkpoint_out)
{
    rm_ckpt_coord cc = coord_setup(3);
    rm_error why, err;
    ck_assert_int_eq(commit_step(&cc, 10, &why), 1);
    ck_assert_msg(rm_ckpt_coord_expect(&cc, 20, &err) == RM_OK, "%s", err.msg);
    rm_msg_ckpt_done d[WORKERS] = {worker_writes(20, 0), worker_writes(20, 1)};
    char part[RMT_PATH_CAP + 64];
    part_path(20, 1, 1, part, sizeof part);
    const char *expect = "";
    switch (_i) {
    case MISSING:
        unlink(part);
        expect = "worker-00001.rmc: cannot open";
        break;
    case TRUNCATED:
        ck_assert_int_eq(truncate(part, 1000), 0);
        expect = "worker-00001.rmc: is 1000 bytes";
        break;
    case FOREIGN_HEADER: { /* another step's file under this name */
        size_t len;
        uint8_t *bytes = rmt_read_bytes(part, &len);
        rm_put_u64(bytes + 16, 19);
        rmt_write_bytes(part, bytes, len);
        free(bytes);
        expect = "worker-00001.rmc: header disagrees";
        break;
    }
    case WRONG_SIZE_REPORTED:
        d[1].bytes += 4;
        expect = "the manifest says";
        break;
    case WORKER_FAILED:
        d[1].ok = 0;
        snprintf(d[1].reason, sizeof d[1].reason, "disk full");
        expect = "worker 1: disk full";
        break;
    }
    ck_assert_int_eq(deliver(&cc, d, &why), -1);
    rmt_assert_contains(why.msg, expect);
    assert_not_committed(20);
    assert_latest("step-00000010\n");
    ck_assert_int_eq(cc.last_committed, 10);
    ck_assert_int_eq(cc.failed, 1);
    ck_assert_int_eq(rm_ckpt_coord_in_flight(&cc), 0);
    /* the next checkpoint commits as usual */
    ck_assert_int_eq(commit_step(&cc, 30, &why), 1);
    assert_latest("step-00000030\n");
    rm_ckpt_coord_free(&cc);
}
END_TEST

START_TEST(report_of_a_step_not_requested_is_an_error)
{
    rm_ckpt_coord cc = coord_setup(3);
    rm_msg_ckpt_done d = {.step = 40, .ok = 1, .worker = 0};
    int outcome;
    long step;
    double write_s;
    rm_error why, err;
    ck_assert_int_eq(rm_ckpt_coord_receive(&cc, &d, scratch, &outcome, &step, &write_s, &why, &err), RM_ERR);
    rmt_assert_contains(err.msg, "worker 0 reported checkpoint step 40, which was not requested");
    ck_assert_msg(rm_ckpt_coord_expect(&cc, 40, &err) == RM_OK, "%s", err.msg);
    d.worker = WORKERS;
    ck_assert_int_eq(rm_ckpt_coord_receive(&cc, &d, scratch, &outcome, &step, &write_s, &why, &err), RM_ERR);
    rm_ckpt_coord_free(&cc);
}
END_TEST

/* A step directory already there (one the resume skipped as unverified)
 * is moved aside, not deleted, and the new checkpoint takes its name. */
START_TEST(existing_step_directory_is_moved_aside)
{
    rm_ckpt_coord cc = coord_setup(3);
    char old[RMT_PATH_CAP + 64], junk[RMT_PATH_CAP + 96];
    snprintf(old, sizeof old, "%s/step-00000010", root);
    ck_assert_int_eq(mkdir(old, 0700), 0);
    snprintf(junk, sizeof junk, "%s/worker-00000.rmc", old);
    rmt_write_text(junk, "damaged");
    rm_error why, err;
    ck_assert_int_eq(commit_step(&cc, 10, &why), 1);
    rm_ckpt_manifest m;
    char dir[RMT_PATH_CAP + 64];
    ck_assert_msg(rm_ckpt_find_latest(root, &m, dir, sizeof dir, NULL, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(m.step, 10);
    rm_ckpt_manifest_free(&m);
    int aside = 0;
    DIR *dp = opendir(root);
    struct dirent *e;
    while ((e = readdir(dp)))
        if (strncmp(e->d_name, "step-00000010.unverified-", 25) == 0) {
            char kept[RMT_PATH_CAP + 600];
            snprintf(kept, sizeof kept, "%s/%s/worker-00000.rmc", root, e->d_name);
            uint8_t *text = rmt_read_bytes(kept, NULL);
            ck_assert_str_eq((char *)text, "damaged");
            free(text);
            aside++;
        }
    closedir(dp);
    ck_assert_int_eq(aside, 1);
    long *steps;
    int n;
    ck_assert_msg(rm_ckpt_list(root, &steps, &n, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(n, 1); /* the moved-aside directory is not a checkpoint */
    free(steps);
    rm_ckpt_coord_free(&cc);
}
END_TEST

/* keep = 2: the two newest stay; a stale .tmp of an older step goes, the
 * .tmp of a newer step (being written) stays. */
START_TEST(retention_keeps_the_newest)
{
    rm_ckpt_coord cc = coord_setup(2);
    char stale[RMT_PATH_CAP + 64], newer[RMT_PATH_CAP + 64];
    snprintf(stale, sizeof stale, "%s/step-00000005.tmp", root);
    snprintf(newer, sizeof newer, "%s/step-00000040.tmp", root);
    ck_assert_int_eq(mkdir(stale, 0700), 0);
    ck_assert_int_eq(mkdir(newer, 0700), 0);
    rm_error why, err;
    for (long s = 10; s <= 30; s += 10)
        ck_assert_int_eq(commit_step(&cc, s, &why), 1);
    long *steps;
    int n;
    ck_assert_msg(rm_ckpt_list(root, &steps, &n, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(steps[0], 30);
    ck_assert_int_eq(steps[1], 20);
    free(steps);
    ck_assert(!exists(stale));
    ck_assert(exists(newer));
    ck_assert_int_eq(cc.committed, 3);
    rm_ckpt_coord_free(&cc);
}
END_TEST

static void count_skip(void *ctx, const char *dir, const char *reason)
{
    (void)dir;
    rmt_assert_contains(reason, "checksum mismatch");
    (*(int *)ctx)++;
}

/* Damage inside a committed payload is what the commit does not read: the
 * resume's search verifies the checksums, skips it and takes the one
 * before. */
START_TEST(damaged_payload_is_skipped_at_resume)
{
    rm_ckpt_coord cc = coord_setup(3);
    rm_error why, err;
    ck_assert_int_eq(commit_step(&cc, 10, &why), 1);
    ck_assert_int_eq(commit_step(&cc, 20, &why), 1);
    char part[RMT_PATH_CAP + 64];
    part_path(20, 0, 0, part, sizeof part);
    size_t len;
    uint8_t *bytes = rmt_read_bytes(part, &len);
    bytes[len - 3] ^= 0x10;
    rmt_write_bytes(part, bytes, len);
    free(bytes);
    rm_ckpt_manifest m;
    char dir[RMT_PATH_CAP + 64];
    int skipped = 0;
    ck_assert_msg(rm_ckpt_find_latest(root, &m, dir, sizeof dir, count_skip, &skipped, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(m.step, 10);
    ck_assert_int_eq(skipped, 1);
    rm_ckpt_manifest_free(&m);
    rm_ckpt_coord_free(&cc);
}
END_TEST

/* ---- the generation fence ---- */

START_TEST(generation_advances_and_is_checked)
{
    rm_error err;
    long g = -1;
    ck_assert_int_eq(mkdir(root, 0700), 0);
    ck_assert_msg(rm_ckpt_generation_read(root, &g, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(g, 0); /* none taken yet */
    ck_assert_msg(rm_ckpt_generation_advance(root, &g, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(g, 1);
    ck_assert_msg(rm_ckpt_generation_advance(root, &g, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(g, 2);
    char path[RMT_PATH_CAP + 64];
    snprintf(path, sizeof path, "%s/generation", root);
    uint8_t *text = rmt_read_bytes(path, NULL);
    ck_assert_str_eq((char *)text, "2\n");
    free(text);
    rmt_write_bytes(path, (const uint8_t *)"two\n", 4);
    ck_assert_int_eq(rm_ckpt_generation_advance(root, &g, &err), RM_ERR);
    rmt_assert_contains(err.msg, "generation: not a generation number");
}
END_TEST

/* Loads the committed checkpoint of step and checks that it holds the
 * values of the writers that shifted them by `shift`, and its generation. */
static void assert_committed_state(long step, float shift, long generation)
{
    char name[32], dir[RMT_PATH_CAP + 64];
    rm_ckpt_dir_name(step, name, sizeof name);
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    rm_ckpt_manifest m;
    rm_error err;
    ck_assert_msg(rm_ckpt_manifest_read(dir, &m, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(m.generation, generation);
    ck_assert_msg(rm_ckpt_verify(dir, &m, &err) == RM_OK, "%s", err.msg);
    float *params = malloc(PARAMS * sizeof(float));
    float *const out[3] = {params, NULL, NULL};
    ck_assert_msg(rm_ckpt_load(dir, &m, out, &err) == RM_OK, "%s", err.msg);
    for (long i = 0; i < PARAMS; i++)
        ck_assert_float_eq(params[i], value_at(0, i) + (float)step + shift);
    free(params);
    rm_ckpt_manifest_free(&m);
}

/* Generation 1 is cut off with step 20's parts written; generation 2
 * takes the directory, resumes from 10 and commits 20 and starts 30. When
 * generation 1 comes back its reports complete step 20 (and then 40): both
 * commits are refused naming the generations and the step, and nothing
 * moves: `latest`, generation 2's step 20 and its step 30 being written. */
START_TEST(older_generation_commit_is_refused)
{
    rm_error err, why;
    long gen_old, gen_new;
    ck_assert_int_eq(mkdir(root, 0700), 0);
    ck_assert_msg(rm_ckpt_generation_advance(root, &gen_old, &err) == RM_OK, "%s", err.msg);
    rm_ckpt_coord old = coord_setup_gen(3, gen_old, -1);
    ck_assert_msg(rm_ckpt_coord_expect(&old, 10, &err) == RM_OK, "%s", err.msg);
    rm_msg_ckpt_done first[WORKERS] = {worker_writes_gen(10, 0, gen_old, 0.0f), worker_writes_gen(10, 1, gen_old, 0.0f)};
    ck_assert_int_eq(deliver(&old, first, &why), 1);
    ck_assert_msg(rm_ckpt_coord_expect(&old, 20, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_ckpt_coord_expect(&old, 40, &err) == RM_OK, "%s", err.msg);
    rm_msg_ckpt_done stale20[WORKERS] = {worker_writes_gen(20, 0, gen_old, 0.5f), worker_writes_gen(20, 1, gen_old, 0.5f)};
    rm_msg_ckpt_done stale40[WORKERS] = {worker_writes_gen(40, 0, gen_old, 0.5f), worker_writes_gen(40, 1, gen_old, 0.5f)};

    ck_assert_msg(rm_ckpt_generation_advance(root, &gen_new, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(gen_new, gen_old + 1);
    rm_ckpt_coord cur = coord_setup_gen(3, gen_new, 10);
    ck_assert_msg(rm_ckpt_coord_expect(&cur, 20, &err) == RM_OK, "%s", err.msg);
    rm_msg_ckpt_done fresh20[WORKERS] = {worker_writes_gen(20, 0, gen_new, 0.0f), worker_writes_gen(20, 1, gen_new, 0.0f)};
    ck_assert_int_eq(deliver(&cur, fresh20, &why), 1);
    ck_assert_msg(rm_ckpt_coord_expect(&cur, 30, &err) == RM_OK, "%s", err.msg);
    (void)worker_writes_gen(30, 0, gen_new, 0.0f); /* worker 1 is still writing */
    assert_latest("step-00000020\n");

    ck_assert_int_eq(deliver(&old, stale20, &why), RM_CKPT_COORD_FENCED);
    rmt_assert_contains(why.msg, "step-00000020 refused: this job is generation 1");
    rmt_assert_contains(why.msg, "generation 2 has started there since");
    rmt_assert_contains(why.msg, "nothing was changed");
    ck_assert_int_eq(old.fenced_by, gen_new);
    ck_assert_int_eq(old.last_committed, 10);
    memset(&why, 0, sizeof why);
    ck_assert_int_eq(deliver(&old, stale40, &why), RM_CKPT_COORD_FENCED);
    rmt_assert_contains(why.msg, "step-00000040 refused");

    assert_latest("step-00000020\n");
    assert_committed_state(20, 0.0f, gen_new);
    char path[RMT_PATH_CAP + 64];
    snprintf(path, sizeof path, "%s/step-00000040", root);
    ck_assert_msg(!exists(path), "the stale generation committed %s", path);
    snprintf(path, sizeof path, "%s/step-00000030.g2.tmp/worker-00000.rmc", root);
    ck_assert_msg(exists(path), "the newer generation's step 30 was touched");
    long *steps;
    int n;
    ck_assert_msg(rm_ckpt_list(root, &steps, &n, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(n, 2); /* 20 (generation 2) and 10 (generation 1, resumed from) */
    free(steps);
    rm_ckpt_coord_free(&old);
    rm_ckpt_coord_free(&cur);
}
END_TEST

/* Parts of an older generation (a worker cut off mid-write that comes
 * back) lie in their own directory: the newer generation's checkpoint of
 * the same step holds only its own workers' parts, whatever the stale
 * worker writes before or after, and its pruning clears the stale
 * directory. */
START_TEST(older_generation_parts_never_land_in_newer)
{
    rm_error err, why;
    long gen_old, gen_new;
    ck_assert_int_eq(mkdir(root, 0700), 0);
    ck_assert_msg(rm_ckpt_generation_advance(root, &gen_old, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_ckpt_generation_advance(root, &gen_new, &err) == RM_OK, "%s", err.msg);
    rm_ckpt_coord cur = coord_setup_gen(3, gen_new, -1);
    ck_assert_msg(rm_ckpt_coord_expect(&cur, 20, &err) == RM_OK, "%s", err.msg);
    (void)worker_writes_gen(20, 1, gen_old, 0.5f); /* before the newer worker writes */
    rm_msg_ckpt_done d[WORKERS] = {worker_writes_gen(20, 0, gen_new, 0.0f), worker_writes_gen(20, 1, gen_new, 0.0f)};
    (void)worker_writes_gen(20, 0, gen_old, 0.5f); /* and after */
    ck_assert_int_eq(deliver(&cur, d, &why), 1);
    assert_committed_state(20, 0.0f, gen_new);
    char path[RMT_PATH_CAP + 64];
    snprintf(path, sizeof path, "%s/step-00000020.g1.tmp", root);
    ck_assert_msg(!exists(path), "the older generation's %s was not cleared", path);
    rm_ckpt_coord_free(&cur);
}
END_TEST

/* The generation is checked under the lock the rename is done under: a
 * newer generation that takes the lock first (and advances while holding
 * it) makes the commit wait and then refuse it; it is never checked
 * before and renamed after. */
START_TEST(fence_check_and_rename_do_not_interleave)
{
    rm_error err;
    long gen;
    ck_assert_int_eq(mkdir(root, 0700), 0);
    ck_assert_msg(rm_ckpt_generation_advance(root, &gen, &err) == RM_OK, "%s", err.msg);
    char tmp[RMT_PATH_CAP + 64], lock[RMT_PATH_CAP + 64], gen_path[RMT_PATH_CAP + 64];
    snprintf(tmp, sizeof tmp, "%s/step-00000010.g1.tmp", root);
    snprintf(lock, sizeof lock, "%s/generation.lock", root);
    snprintf(gen_path, sizeof gen_path, "%s/generation", root);
    ck_assert_int_eq(mkdir(tmp, 0700), 0);
    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) { /* the newer generation's coordinator, slow inside its advance */
        int fd = open(lock, O_RDWR);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fd < 0 || fcntl(fd, F_SETLKW, &fl) != 0)
            _exit(1);
        (void)!write(ready[1], "x", 1);
        usleep(300000);
        rmt_write_bytes(gen_path, (const uint8_t *)"2\n", 2);
        _exit(0);
    }
    char c;
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    long current = -1;
    ck_assert_int_eq(rm_ckpt_commit_fenced(root, tmp, 10, gen, &current, &err), RM_CKPT_FENCED);
    ck_assert_int_eq(current, 2);
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert(exists(tmp));
    snprintf(tmp, sizeof tmp, "%s/step-00000010", root);
    ck_assert(!exists(tmp));
    snprintf(tmp, sizeof tmp, "%s/latest", root);
    ck_assert(!exists(tmp));
    close(ready[0]);
    close(ready[1]);
}
END_TEST

static Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("writer");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, image_writes_the_file_and_its_checksum, 0,
                        (int)(sizeof image_sizes / sizeof image_sizes[0]));
    tcase_add_test(tc, sealed_image_round_trips);
    tcase_add_test(tc, full_disk_gives_an_error_and_no_file);
    tcase_add_test(tc, missing_directory_is_named);
    tcase_add_test(tc, writer_thread_writes_and_reports);
    suite_add_tcase(s, tc);
    tc = tcase_create("commit");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, commit_after_every_part);
    tcase_add_loop_test(tc, damaged_part_keeps_the_checkpoint_out, 0, DAMAGE_KINDS);
    tcase_add_test(tc, report_of_a_step_not_requested_is_an_error);
    tcase_add_test(tc, existing_step_directory_is_moved_aside);
    tcase_add_test(tc, retention_keeps_the_newest);
    tcase_add_test(tc, damaged_payload_is_skipped_at_resume);
    suite_add_tcase(s, tc);
    tc = tcase_create("fence");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, generation_advances_and_is_checked);
    tcase_add_test(tc, older_generation_commit_is_refused);
    tcase_add_test(tc, older_generation_parts_never_land_in_newer);
    tcase_add_test(tc, fence_check_and_rename_do_not_interleave);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(checkpoint_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
