"""SFTP upload benchmark: ``SftpHook.upload`` (paramiko) against OpenSSH's own ``sftp`` client, same server.

Starts a real ``sshd`` on a loopback port (``partners.openssh``), makes a package-sized file of random bytes,
and uploads it alternately with the OpenSSH ``sftp`` client (``put``) and with the hook (temporary name,
pipelined writes, size check, ``posix_rename``), each timed from connecting to the file being in place. Prints
every run, then one JSON line with the medians and the hook's share of the OpenSSH client's throughput.

    .venv/bin/python bench/bench_sftp.py [--megabytes 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from partners.openssh import OpenSshServer, write_key  # noqa: E402

CONN_ID = "bench_sftp"


def make_file(path: Path, megabytes: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for index in range(megabytes):
            handle.write(block[index % 7 :] + block[: index % 7])  # distinct blocks, no cheap patterns


def openssh_put(server: OpenSshServer, key: Path, known_hosts: Path, source: Path, target: str) -> float:
    batch = source.with_suffix(".batch")
    batch.write_text(f"put {source} {target}\n")
    command = ["sftp", "-q", "-b", str(batch), "-i", str(key), "-P", str(server.port),
               "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
               "-o", "BatchMode=yes", f"{server.user}@127.0.0.1"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def hook_put(source: Path, target: str) -> float:
    from connectors.sftp import SftpHook

    started = time.perf_counter()
    with SftpHook(CONN_ID) as hook:
        hook.upload(source, target)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sftp-") as scratch:
        work = Path(scratch)
        server = OpenSshServer(work / "sshd")
        key = work / "client_ed25519"
        server.authorize(write_key(key).export_public_key("openssh").decode())
        server.start()
        try:
            known_hosts = work / "known_hosts"
            known_hosts.write_text(f"[127.0.0.1]:{server.port} {server.host_key_line}\n")
            extra = {"host_key": server.host_key_line, "remote_folder": str(server.root), "private_key_file": str(key)}
            os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
                {
                    "conn_type": "lienthong_sftp",
                    "host": "127.0.0.1",
                    "port": server.port,
                    "login": server.user,
                    "extra": extra,
                }  # fmt: skip
            )
            source = work / "package.zip"
            make_file(source, args.megabytes)
            size = source.stat().st_size
            hook_put(source, "warm-up.zip")  # imports and first connection out of the timings
            openssh, hook = [], []
            for round_number in range(1, args.rounds + 1):
                openssh.append(openssh_put(server, key, known_hosts, source, str(server.root / "openssh.zip")))
                hook.append(hook_put(source, "hook.zip"))
                for name in ("openssh.zip", "hook.zip"):
                    assert (server.root / name).stat().st_size == size
                print(f"round {round_number}: OpenSSH sftp {size / openssh[-1] / 1e6:7.1f} MB/s ({openssh[-1]:.2f} s); "
                      f"SftpHook {size / hook[-1] / 1e6:7.1f} MB/s ({hook[-1]:.2f} s)")  # fmt: skip
        finally:
            server.stop()
    openssh_rate = size / statistics.median(openssh) / 1e6
    hook_rate = size / statistics.median(hook) / 1e6
    print(f"median: OpenSSH sftp {openssh_rate:.1f} MB/s, SftpHook {hook_rate:.1f} MB/s, "
          f"share {hook_rate / openssh_rate:.0%} (target ≥ 50%)")  # fmt: skip
    result = {"benchmark": "sftp_upload", "bytes": size, "rounds": args.rounds,
              "openssh_sftp_mb_s": round(openssh_rate, 1), "sftp_hook_mb_s": round(hook_rate, 1),
              "share": round(hook_rate / openssh_rate, 3)}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
