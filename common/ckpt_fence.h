/* Fencing checkpoint commits by generation.
 *
 *   CKPT_ROOT/generation         "3\n": the generation that may commit here
 *   CKPT_ROOT/generation.lock    an empty file, never replaced: its fcntl
 *                                lock guards the generation and each commit
 *
 * Every coordinator that starts on a checkpoint directory takes the next
 * generation (rm_ckpt_generation_advance) before it looks for a checkpoint
 * to resume from, and its workers write their parts into
 * step-N.gG.tmp, a directory of their own generation. A commit (the rename
 * into step-N and the new `latest`) happens under the lock and only while
 * the generation file still holds the committer's generation, so a job of
 * an older generation that was cut off (its host hung or was partitioned,
 * its lock expired) and comes back can never move `latest`, add a
 * checkpoint, or write into the newer generation's directories: its commit
 * is refused and nothing is changed. The run lock keeps a second job away
 * from the start; the fence covers the moment between a lock that was
 * taken over and its old holder noticing.
 *
 * fcntl locks work on NFS (lockd, NFSv4) where flock may not; a holder's
 * lock dies with its process, or with its host once the server's lease on
 * it ends. */
#ifndef RINGMASTER_CKPT_FENCE_H
#define RINGMASTER_CKPT_FENCE_H

#include "error.h"

#define RM_CKPT_GENERATION_NAME "generation"
/* Returned by rm_ckpt_commit_fenced when a newer generation holds root. */
#define RM_CKPT_FENCED 1
/* How long a commit or an advance waits for another's lock before it gives
 * up naming the holder (a commit holds it for a rename and a small write). */
#define RM_CKPT_FENCE_WAIT_S 30.0

/* root's current generation; 0 when none was ever taken. A generation file
 * that does not hold a number is an error naming it. */
int rm_ckpt_generation_read(const char *root, long *generation, rm_error *err);

/* Takes the next generation of root under the lock: reads it, writes it
 * plus one (temporary file, fsync, rename, directory fsync) and returns the
 * new one in *generation. From then on commits of older generations are
 * refused. */
int rm_ckpt_generation_advance(const char *root, long *generation, rm_error *err);

/* Looks, without the lock: RM_OK while root's generation is `generation`,
 * RM_CKPT_FENCED (err as below) once a newer one (*current) holds it. An
 * early answer for a stale job; only rm_ckpt_commit_fenced's is binding. */
int rm_ckpt_fence_check(const char *root, long step, long generation, long *current, rm_error *err);

/* rm_ckpt_commit (tmp_dir becomes root/step-N, then `latest`), under the
 * lock, if root's generation is still `generation`. RM_OK: committed.
 * RM_CKPT_FENCED: a newer generation (*current) holds root; nothing was
 * changed; err says so with both numbers and the step. RM_ERR: failed. */
int rm_ckpt_commit_fenced(const char *root, const char *tmp_dir, long step, long generation, long *current,
                          rm_error *err);

#endif
