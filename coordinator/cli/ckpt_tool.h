#ifndef RINGMASTER_CKPT_TOOL_H
#define RINGMASTER_CKPT_TOOL_H

/* `ringmaster ckpt list|verify|export ...`; argv starts after "ckpt". */
int rm_ckpt_tool_main(int argc, char **argv);

#endif
