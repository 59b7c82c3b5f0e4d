/* `ringmaster plot RUN_DIR`: see plot.c. */
#ifndef RINGMASTER_PLOT_H
#define RINGMASTER_PLOT_H

/* argv: what follows "plot". Returns the process exit status. */
int rm_plot_main(int argc, char **argv);

#endif
