/* Exit statuses of ringmaster's processes and of `ringmaster run`, chosen
 * so that the supervisor and Slurm scripts can act on them. mpirun passes
 * on the status of the rank that failed (or MPI_Abort's code). The table
 * users read is in docs/fault-tolerance.md and the README: keep the three
 * in step. */
#ifndef RINGMASTER_EXIT_CODES_H
#define RINGMASTER_EXIT_CODES_H

enum rm_exit_code {
    RM_EXIT_OK = 0,
    RM_EXIT_FAILED = 1,   /* a failure a restart from the last checkpoint may cure */
    RM_EXIT_USAGE = 2,    /* bad command line */
    RM_EXIT_FATAL = 3,    /* bad config, data or checkpoint, run directory refused or in use, or a stop policy:
                           * restarting cannot help */
    RM_EXIT_STORAGE = 74, /* a write failed (disk full, I/O error, permission): the job stopped, committed
                           * checkpoints are intact; restarting cannot help until there is room (EX_IOERR) */
    RM_EXIT_REQUEUE = 75, /* stopped on SIGTERM/SIGUSR1 after a checkpoint: requeue me (EX_TEMPFAIL) */
    RM_EXIT_INTERRUPTED = 130, /* stopped on Ctrl-C (SIGINT), after a checkpoint unless pressed twice (128 + 2) */
};

#endif
