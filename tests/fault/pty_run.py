"""Runs a command on a new pseudo-terminal, as at a real terminal, and
types Ctrl-C into it: the terminal's line discipline sends SIGINT to the
foreground process group, which is what a user's Ctrl-C does.

  pty_run.py LOG WAIT_FOR CTRL_CS GAP_S -- COMMAND...

Writes everything the command prints to LOG; once the path WAIT_FOR exists
types CTRL_CS Ctrl-Cs GAP_S seconds apart (0: none); exits with the
command's exit status (128 + N when it died of signal N)."""
import os
import pty
import select
import sys
import time

log_path, wait_for, ctrl_cs, gap = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
command = sys.argv[sys.argv.index("--") + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(command[0], command)
deadline = time.time() + 240
typed = 0
next_at = None
with open(log_path, "wb") as log:
    while time.time() < deadline:
        if typed < ctrl_cs and os.path.exists(wait_for):
            now = time.time()
            if next_at is None:
                next_at = now
            if now >= next_at:
                os.write(fd, b"\x03")
                typed += 1
                next_at = now + gap
        ready, _, _ = select.select([fd], [], [], 0.05)
        if fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the command and everything on the terminal are gone
                break
            if not data:
                break
            log.write(data)
            log.flush()
    else:
        os.kill(pid, 9)
        log.write(b"\npty_run.py: timed out\n")
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
