/* ringmaster keygen and ringmaster audit: the command-line side of
 * encryption at rest and the audit trail. */
#ifndef RINGMASTER_SECURITY_TOOL_H
#define RINGMASTER_SECURITY_TOOL_H

/* `ringmaster keygen FILE`: argv holds what follows "keygen". */
int rm_keygen_main(int argc, char **argv);

/* `ringmaster audit verify RUN_DIR`: argv holds what follows "audit". */
int rm_audit_tool_main(int argc, char **argv);

#endif
