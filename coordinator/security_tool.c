#include "security_tool.h"

#include "audit.h"
#include "crypto.h"
#include "exit_codes.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

int rm_keygen_main(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "usage: ringmaster keygen FILE\n"
                        "  writes a new 32-byte key to FILE (mode 0600); refuses to replace an existing file\n");
        return RM_EXIT_USAGE;
    }
    rm_security_no_core_dumps(1);
    rm_error err;
    if (rm_key_generate(argv[0], &err) != RM_OK) {
        rm_error_log("%s", err.msg);
        return RM_EXIT_FATAL;
    }
    printf("%s: new key (mode 0600). Keep a copy somewhere safe: data and checkpoints sealed with it cannot be read "
           "without it.\n",
           argv[0]);
    return RM_EXIT_OK;
}

int rm_audit_tool_main(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[0], "verify") != 0) {
        fprintf(stderr, "usage: ringmaster audit verify RUN_DIR\n"
                        "  checks RUN_DIR/audit.jsonl's hash chain; exit 0 when intact\n");
        return RM_EXIT_USAGE;
    }
    long lines, bad;
    char head[65];
    rm_error why;
    if (rm_audit_verify(argv[1], &lines, head, &bad, &why) != RM_OK) {
        if (bad > 0)
            printf("%s/%s: FAILED at line %ld: %s\n", argv[1], RM_AUDIT_NAME, bad, why.msg);
        else
            printf("%s/%s: FAILED: %s\n", argv[1], RM_AUDIT_NAME, why.msg);
        return RM_EXIT_FATAL;
    }
    printf("%s/%s: OK, %ld line%s, head %s\n", argv[1], RM_AUDIT_NAME, lines, lines == 1 ? "" : "s", head);
    return RM_EXIT_OK;
}
