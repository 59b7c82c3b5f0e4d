/* The rate this worker's BLAS multiplies at, for MFU: what the model's
 * FLOPs per second are measured against. */
#ifndef RINGMASTER_SGEMM_PROBE_H
#define RINGMASTER_SGEMM_PROBE_H

/* FLOP/s of a large square sgemm (the best a worker's products can do)
 * with the BLAS threads set now, measured for about seconds_budget.
 * 0 when the memory for it cannot be had. */
double rm_sgemm_peak_flops(double seconds_budget);

#endif
