#include "security_tool.h"

#include "audit.h"
#include "checkpoint.h"
#include "config.h"
#include "crypto.h"
#include "exit_codes.h"
#include "fsutil.h"
#include "json_scan.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
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

/* The heads recorded outside the trail: summary.json's and every committed
 * checkpoint's. *anchors is the caller's to free. */
static int collect_anchors(const char *run_dir, const char *ckpt_root, rm_audit_anchor **anchors, int *n)
{
    *anchors = NULL;
    *n = 0;
    long *steps = NULL;
    int n_steps = 0;
    rm_error err;
    if (ckpt_root[0] && rm_ckpt_list(ckpt_root, &steps, &n_steps, &err) != RM_OK)
        n_steps = 0;
    *anchors = calloc((size_t)n_steps + 1, sizeof **anchors);
    if (!*anchors) {
        free(steps);
        return RM_ERR;
    }
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/summary.json", run_dir);
    size_t len;
    char *text = rm_read_file(path, 1u << 20, "too large", &len, &err);
    double seq;
    rm_audit_anchor *a = &(*anchors)[*n];
    if (text && rm_json_find_number(text, "audit_seq", &seq) == RM_OK && seq >= 1 &&
        rm_json_find_string(text, "audit_head", a->head, sizeof a->head) == RM_OK) {
        a->seq = (long)seq;
        snprintf(a->where, sizeof a->where, "summary.json");
        (*n)++;
    }
    free(text);
    for (int i = 0; i < n_steps; i++) {
        char name[32], dir[RM_PATH_CAP + 48];
        rm_ckpt_dir_name(steps[i], name, sizeof name);
        snprintf(dir, sizeof dir, "%s/%s", ckpt_root, name);
        rm_ckpt_manifest m;
        if (rm_ckpt_manifest_read(dir, &m, &err) != RM_OK)
            continue; /* `ringmaster ckpt verify` names a damaged one */
        if (m.audit_seq > 0) {
            a = &(*anchors)[*n];
            a->seq = m.audit_seq;
            snprintf(a->head, sizeof a->head, "%s", m.audit_head);
            snprintf(a->where, sizeof a->where, "checkpoint %s", name);
            (*n)++;
        }
        rm_ckpt_manifest_free(&m);
    }
    free(steps);
    return RM_OK;
}

int rm_audit_tool_main(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[0], "verify") != 0) {
        fprintf(stderr, "usage: ringmaster audit verify RUN_DIR\n"
                        "  checks RUN_DIR/audit.jsonl's hash chain (keyed with the run's security.key_file when it\n"
                        "  has one) and that it still ends where summary.json and the checkpoints say; exit 0 when\n"
                        "  intact\n");
        return RM_EXIT_USAGE;
    }
    const char *run_dir = argv[1];
    /* the run's config says where its checkpoints are and which key
     * keys the chain */
    static rm_config cfg;
    char path[RM_PATH_CAP + 32], root[RM_PATH_CAP] = "";
    rm_error why;
    snprintf(path, sizeof path, "%s/config.yaml", run_dir);
    if (rm_config_read(path, &cfg, &why) == RM_OK) {
        if (cfg.ckpt_dir[0])
            snprintf(root, sizeof root, "%s", cfg.ckpt_dir);
        else
            snprintf(root, sizeof root, "%s/checkpoints", run_dir);
        if (cfg.key_file[0]) {
            rm_security_no_core_dumps(1);
            if (rm_security_load(cfg.key_file, &why) != RM_OK) {
                rm_error_log("%s (the run's key, which keys its audit chain)", why.msg);
                return RM_EXIT_FATAL;
            }
        }
    } else {
        snprintf(root, sizeof root, "%s/checkpoints", run_dir);
    }
    rm_audit_anchor *anchors;
    int n_anchors;
    if (collect_anchors(run_dir, root, &anchors, &n_anchors) != RM_OK) {
        rm_error_log("out of memory");
        return RM_EXIT_FATAL;
    }
    long lines, bad;
    char head[65];
    int rc = rm_audit_verify(run_dir, rm_security_key(), anchors, n_anchors, &lines, head, &bad, &why);
    free(anchors);
    rm_security_unload();
    if (rc != RM_OK) {
        if (bad > 0)
            printf("%s/%s: FAILED at line %ld: %s\n", run_dir, RM_AUDIT_NAME, bad, why.msg);
        else
            printf("%s/%s: FAILED: %s\n", run_dir, RM_AUDIT_NAME, why.msg);
        return RM_EXIT_FATAL;
    }
    printf("%s/%s: OK, %ld line%s, head %s%s; %d anchor%s (summary.json, checkpoints) on the chain\n", run_dir,
           RM_AUDIT_NAME, lines, lines == 1 ? "" : "s", head, cfg.key_file[0] ? ", keyed" : "", n_anchors,
           n_anchors == 1 ? "" : "s");
    return RM_EXIT_OK;
}
