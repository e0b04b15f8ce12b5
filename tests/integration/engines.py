"""Real database and SSH engines on 127.0.0.1 for the integration tests: a PostgreSQL
cluster and an sshd, each started in a temporary folder and stopped after.

Both need root (PostgreSQL runs as the `postgres` user, sshd as root) and the Debian
packages `postgresql` and `openssh-server`. Where they are missing a test skips with the
reason; with CI=true it fails instead (`.ci/run` installs the packages).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 60


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require(ok: bool, reason: str) -> None:
    """Skip with `reason` unless `ok`; under CI=true, fail instead (CI must run it)."""
    if ok:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _checked(cmd: list[str], what: str, timeout: int = 120) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"{what}: {' '.join(cmd)} exited {result.returncode}:\n"
                    f"{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout


def _wait_for_port(port: int, alive, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive():
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 2):
            return
        time.sleep(0.3)
    text = log.read_text()[-3000:] if log.exists() else ""
    pytest.fail(f"{what} not listening on 127.0.0.1:{port}:\n{text}")


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL cluster; `uri` is a SQLAlchemy URI of its database `db`."""

    port: int
    db: str
    folder: Path
    bin: Path

    @property
    def uri(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.db}"


@contextlib.contextmanager
def postgres(db: str = "mlflow") -> Iterator[Postgres]:
    """initdb a temporary cluster (as `postgres`), start it on a free loopback port with its
    unix socket in the same folder, create database `db`; stop and remove it after."""
    bin_dir = postgres_bin()
    require(os.geteuid() == 0, "PostgreSQL is started as the postgres user: needs root")
    require(bin_dir is not None, "PostgreSQL not installed (apt-get install postgresql)")
    require(shutil.which("runuser") is not None, "runuser not found")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        require(False, "no `postgres` user (apt-get install postgresql creates it)")
    folder = Path(tempfile.mkdtemp(prefix="brainseg-pg-"))  # /tmp: postgres can enter it
    shutil.chown(folder, "postgres", "postgres")
    data, log, port = folder / "data", folder / "server.log", free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    _checked([*as_pg, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
              "-A", "trust", "-E", "UTF8", "--no-sync"], "initdb")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        _checked([*as_pg, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                  "-l", str(log), "-w", "-t", str(START_TIMEOUT_S), "start"], "pg_ctl start")
        _checked([*as_pg, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                  "-U", "postgres", db], "createdb")
        yield Postgres(port, db, folder, bin_dir)
    finally:
        subprocess.run([*as_pg, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "-w", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


SSHD = Path("/usr/sbin/sshd")  # sshd refuses to start from a relative path


@dataclass(frozen=True)
class Sshd:
    """A running sshd that lets `root` in with the private key `key` (no host key check:
    the client is told nothing about the generated host key)."""

    port: int
    key: Path
    folder: Path


@contextlib.contextmanager
def sshd() -> Iterator[Sshd]:
    """Start sshd on a free loopback port with a generated host key and a generated key
    of root's (authorized in a temporary file), SFTP on; stop it after."""
    require(os.geteuid() == 0, "sshd logs users in as themselves: needs root")
    require(SSHD.is_file(), f"{SSHD} not found (apt-get install openssh-server)")
    require(shutil.which("ssh-keygen") is not None, "ssh-keygen not found (openssh-client)")
    folder = Path(tempfile.mkdtemp(prefix="brainseg-sshd-"))
    port, log = free_port(), folder / "sshd.log"
    for name in ("host_key", "user_key"):
        _checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                  "-f", str(folder / name)], "ssh-keygen")
    shutil.copy(folder / "user_key.pub", folder / "authorized_keys")
    (folder / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}",
        f"PidFile {folder / 'sshd.pid'}", f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no",
        "StrictModes no",  # the keys lie under /tmp, which anyone may write
        "Subsystem sftp internal-sftp", "LogLevel VERBOSE", ""]))
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privilege separation
    with log.open("w") as out:
        server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(folder / "sshd_config")],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_port(port, lambda: server.poll() is None, log, "sshd")
        yield Sshd(port, folder / "user_key", folder)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
        shutil.rmtree(folder, ignore_errors=True)
