"""A MariaDB server of the benchmark's own, started with the configuration ZensCall ships.

``PrivateMariaDB(defaults_file)`` runs ``mariadb-install-db`` into a temporary datadir and starts
``mariadbd --defaults-file=<file>`` on a free port of 127.0.0.1 (root without a password). The
command line adds only where the server lives (datadir, port, socket, pid and log files) and that
it runs as the current user: every tuning setting comes from the file, so the figures are those
of ``deploy/mariadb/zenscall.cnf`` (``DEFAULT_CNF``). ``defaults_file=None`` starts the server
with none (``--no-defaults``: MariaDB's built-in defaults, a 128 MB buffer pool and a 96 MB redo
log). The machine's own MariaDB is never touched. Use it as a context manager; the server and
its datadir are removed on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CNF = ROOT / "deploy" / "mariadb" / "zenscall.cnf"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary(name: str, fallback: str) -> str:
    return shutil.which(name) or fallback


class PrivateMariaDB:
    def __init__(self, defaults_file: Path | None = DEFAULT_CNF, *, keep: bool = False) -> None:
        self.defaults_file = defaults_file
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix="zc-mariadb-"))
        self.datadir = self.dir / "data"
        self.log = self.dir / "mariadb.log"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def server_url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}"

    def _defaults(self) -> list[str]:
        # must come first on both command lines
        return [f"--defaults-file={self.defaults_file}"] if self.defaults_file else ["--no-defaults"]

    def start(self) -> PrivateMariaDB:
        subprocess.run([_binary("mariadb-install-db", "/usr/bin/mariadb-install-db"), *self._defaults(),
                        "--user=root", f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
                        "--skip-test-db"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=180)
        self.proc = subprocess.Popen(
            [_binary("mariadbd", "/usr/sbin/mariadbd"), *self._defaults(), "--user=root",
             f"--datadir={self.datadir}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--socket={self.dir / 'mariadb.sock'}", f"--pid-file={self.dir / 'mariadb.pid'}",
             f"--log-error={self.log}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited ({self.proc.returncode}):\n{self.log_tail()}")
            if self._answers():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"mariadbd did not answer within 120 s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        import pymysql

        try:
            pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=1).close()
            return True
        except pymysql.MySQLError:
            return False

    def variables(self, *names: str) -> dict[str, str]:
        """The server's values of some global variables (to print what a run used)."""
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES "
                            "WHERE VARIABLE_NAME IN (" + ",".join(["%s"] * len(names)) + ")",
                            [n.upper() for n in names])
                found = {str(k).lower(): str(v) for k, v in cur.fetchall()}
        finally:
            conn.close()
        return {name: found.get(name, "?") for name in names}

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # a clean shutdown
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateMariaDB:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
