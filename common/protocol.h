/* The control protocol between the coordinator (MPI rank 0) and the
 * workers (ranks 1..N, worker index = rank - 1). Small tagged
 * point-to-point messages on MPI_COMM_WORLD; gradients never pass here.
 * All ranks run the same build, so structs travel as bytes.
 *
 *   worker -> coordinator  HELLO        once: identity, config hash, initial weights digest
 *   coordinator -> worker  START        go (or the reason not to)
 *   coordinator -> worker  ASSIGN       the worker's sample slice of one step, sent
 *                                       `assign_ahead` steps early, with flags saying what
 *                                       follows the step (evaluate, last step)
 *   worker -> coordinator  REPORT       after each step: loss, accuracy, phase times
 *   worker -> coordinator  EVAL_RESULT  after an evaluation flagged on a step
 *   coordinator -> worker  STOP         after the last step's reports and evaluation
 *   worker -> coordinator  DONE         final weights digest
 *   worker -> coordinator  FATAL        the reason this worker is about to end the job
 *   worker -> coordinator  PROGRESS     "backward of step s done, waiting for gradients":
 *                                       when a collective hangs, the ranks that never
 *                                       got there are the ones to name
 *   worker -> coordinator  CKPT_DONE    this worker's checkpoint file is written (or why not)
 *   worker -> coordinator  TRACE        once, after the last traced step: the worker's
 *                                       Chrome-trace events (JSON objects joined by commas) */
#ifndef RINGMASTER_PROTOCOL_H
#define RINGMASTER_PROTOCOL_H

#include "step_phase.h"

#include <stdint.h>

enum rm_tag {
    RM_TAG_HELLO = 101,
    RM_TAG_START,
    RM_TAG_ASSIGN,
    RM_TAG_REPORT,
    RM_TAG_EVAL_RESULT,
    RM_TAG_STOP,
    RM_TAG_DONE,
    RM_TAG_FATAL,
    RM_TAG_PROGRESS,
    RM_TAG_CKPT_DONE,
    RM_TAG_TRACE, /* worker -> coordinator: Chrome-trace events of observe.trace_steps */
};

#define RM_PROTOCOL_VERSION 9 /* 9: REPORT.checkpoint */
#define RM_DIR_CAP 1024
#define RM_HOST_CAP 64
#define RM_REASON_CAP 512

/* The words after "hang: host H" when rank 0 found host H cut off (its
 * workers silent, the host not answering): `ringmaster run` reads them in
 * the coordinator's log, ends the job (mpirun cannot reach the host to end
 * its ranks) and restarts without the host, as for one that died. */
#define RM_VERDICT_UNREACHABLE " is unreachable"

/* Rank 0 sleeps this long when no message waits: it shares cores with
 * the workers, and each wake-up preempts one. Assignments go out several
 * steps ahead, so a late wake-up never stalls a worker. */
#define RM_COORD_IDLE_SLEEP_NS 2000000L

typedef struct rm_msg_hello {
    int32_t protocol_version;
    int32_t worker;
    int32_t pid;
    int32_t backend;
    int32_t transport; /* enum rm_transport: how this worker sums gradients */
    int32_t reserved;
    uint64_t config_hash;
    uint64_t init_digest;
    int64_t param_count;
    double peak_flops; /* this worker's measured sgemm rate (FLOP/s), for MFU; 0: not measured */
    int64_t optimizer_state_bytes; /* the optimizer state this worker allocated (its slice under ZeRO-1) */
    int64_t memory_bytes; /* what building its backend took (device, or host heap), measured; 0: unknown */
    char host[RM_HOST_CAP];
} rm_msg_hello;

typedef struct rm_msg_start {
    int32_t ok;
    int32_t exit_code; /* when !ok: the status workers exit with */
    int32_t assign_ahead;
    int64_t total_steps;
    int64_t first_step;
    char resume_dir[RM_DIR_CAP]; /* checkpoint to load; "" = fresh start */
    char ckpt_root[RM_DIR_CAP];
    int64_t generation; /* the job's checkpoint generation: parts go to step-N.gG.tmp (ckpt_fence.h) */
    char reason[RM_REASON_CAP];
} rm_msg_start;

enum rm_assign_flags {
    RM_ASSIGN_EVAL_AFTER = 1 << 0, /* evaluate after this step */
    RM_ASSIGN_LAST = 1 << 1,       /* the job's last step */
    RM_ASSIGN_CHECKPOINT_AFTER = 1 << 2, /* snapshot the state after this step */
    RM_ASSIGN_SKIP_UPDATE = 1 << 3,      /* apply no update (rolled back over a non-finite step) */
};

/* Followed on the wire by `count` uint32 sample indices. */
typedef struct rm_msg_assign {
    int64_t step;
    int64_t epoch;
    int64_t position; /* stream position of the slice's first sample */
    int32_t count;
    int32_t flags;
} rm_msg_assign;

typedef struct rm_msg_report {
    int64_t step;
    double loss_sum; /* summed over the worker's samples */
    int64_t correct;
    int64_t count;
    double lr;
    double grad_norm;       /* of the averaged gradient: the same on every worker */
    int32_t nonfinite;      /* loss or gradient norm was NaN/Inf */
    int32_t update_skipped; /* no update was applied */
    /* The step's assignment asked for a checkpoint after it. Its stall is
     * this step's, plus the next step's where the copy went into the
     * waits after the update (that step carries the rest). */
    int32_t checkpoint;
    int32_t reserved;
    uint64_t batch_digest;  /* sum over the slice of mix(position, sample): adds up to an
                             * N-independent fingerprint of the global batch */
    double phase_s[RM_N_PHASES]; /* seconds, indexed by enum rm_phase (step_phase.h) */
    double run_delay_s; /* of the step, the worker's thread was runnable but not running (-1: unknown) */
} rm_msg_report;

typedef struct rm_msg_progress {
    int64_t step;
} rm_msg_progress;

typedef struct rm_msg_ckpt_done {
    int64_t step; /* steps completed at the snapshot */
    int32_t ok;
    int32_t worker;
    int64_t begin, end;
    int64_t opt_steps;
    uint64_t bytes, checksum;
    double write_s;
    char reason[RM_REASON_CAP];
} rm_msg_ckpt_done;

typedef struct rm_msg_eval_result {
    int64_t step;
    double loss_sum;
    int64_t correct;
    int64_t count;
    double eval_s;
} rm_msg_eval_result;

typedef struct rm_msg_done {
    uint64_t weights_digest;
    int64_t steps;
} rm_msg_done;

typedef struct rm_msg_fatal {
    int64_t step;
    int32_t pid;
    /* During setup: the worker whose failure this one stops for, or -1
     * when this worker failed on its own. */
    int32_t follows;
    char host[RM_HOST_CAP];
    char reason[RM_REASON_CAP];
} rm_msg_fatal;

#endif
