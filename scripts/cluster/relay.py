#!/usr/bin/python3
"""The cluster's remote shell, in ssh's place for Open MPI.

  relay.py serve SOCKET        on a host (host-init.sh starts it): runs each
                               command line sent to SOCKET with /bin/sh, its
                               output back over the connection
  relay.py run SOCKET CMD...   anywhere: sends the command line to the host
                               behind SOCKET and copies its output to stdout
                               until the command ends

A host's PID namespace cannot be entered from another host's (they are
siblings), so commands are started by a process that lives on the host:
what it runs is on the host, and dies with it. SOCKET sits in the
cluster's state directory, which every host sees."""
import os
import signal
import socket
import subprocess
import sys


def serve(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reap the commands
    while True:
        conn, _ = srv.accept()
        if os.fork() == 0:
            srv.close()
            line = b""
            while not line.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    os._exit(1)
                line += chunk
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            fd = conn.fileno()
            devnull = os.open(os.devnull, os.O_RDONLY)
            rc = subprocess.call(["/bin/sh", "-c", line.decode()[:-1]], stdin=devnull, stdout=fd, stderr=fd,
                                 cwd="/")
            os._exit(rc)
        conn.close()


def run(path, argv):
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    conn.sendall((" ".join(argv).replace("\n", " ") + "\n").encode())
    out = sys.stdout.buffer
    while True:
        data = conn.recv(65536)
        if not data:
            return 0
        out.write(data)
        out.flush()


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "run":
        sys.exit(run(sys.argv[2], sys.argv[3:]))
    else:
        sys.exit("usage: relay.py serve SOCKET | relay.py run SOCKET CMD...")
