/* `ringmaster doctor`: see doctor.h. */
#ifndef RINGMASTER_DOCTOR_CMD_H
#define RINGMASTER_DOCTOR_CMD_H

/* argv: what follows "doctor". Returns the process exit status. */
int rm_doctor_cmd_main(int argc, char **argv);

#endif
