"""``boosterd hmi-cert``: a self-signed TLS certificate for the HMI, for this station.

The certificate names the station as a browser reaches it (subjectAltName: the host
name, ``<host>.local``, ``localhost``, the HMI's bind address or else the machine's own
addresses, 127.0.0.1, and any ``--name``/``--ip``), so a technician accepts it once per
browser and is warned if the address ever answers with another key. Made with the
``openssl`` command (Debian's ``openssl`` package): EC P-256, SHA-256, 10 years by
default. The key is written owner-only (0600), or 0640 to the service's group when run
as root and the ``boosterd`` group exists, so the daemon can read it and nobody else.
"""

from __future__ import annotations

import argparse
import grp
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from controller.config.schema import HmiConfig

DEFAULT_CERT = "/etc/boosterd/hmi.crt"
DEFAULT_KEY = "/etc/boosterd/hmi.key"
SERVICE_GROUP = "boosterd"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "hmi-cert", help="make a self-signed TLS certificate for the web HMI"
    )
    p.add_argument("--config", help="station file: its hmi cert_file, key_file and bind")
    p.add_argument(
        "--cert", help=f"certificate to write (default: hmi.cert_file or {DEFAULT_CERT})"
    )
    p.add_argument("--key", help=f"private key to write (default: hmi.key_file or {DEFAULT_KEY})")
    p.add_argument("--name", action="append", default=[], help="another DNS name (repeatable)")
    p.add_argument("--ip", action="append", default=[], help="another IP address (repeatable)")
    p.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    p.add_argument("--force", action="store_true", help="replace an existing certificate")
    p.set_defaults(handler=run)


def own_addresses() -> list[str]:
    """The machine's addresses (Debian's ``hostname -I``), loopback excluded."""
    try:
        out = subprocess.run(
            ["hostname", "-I"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = [(a, _ip(a)) for a in out.split()]
    return [a for a, ip in found if ip is not None and not ip.is_loopback]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", maxsplit=1)[0])
    except ValueError:
        return None


def subject_alt_names(
    *, hostname: str, bind: str | None, names: list[str], ips: list[str], found: list[str]
) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) for the certificate, each once, in a stable order."""
    dns = [hostname, f"{hostname}.local", "localhost", *names]
    addresses = list(ips)
    bound = _ip(bind) if bind else None
    if bound is not None and not bound.is_unspecified and not bound.is_loopback:
        addresses.append(str(bound))
    else:
        addresses.extend(found)  # bound to every address (or not yet set): name them all
    addresses.extend(["127.0.0.1", "::1"])
    return list(dict.fromkeys(d for d in dns if d)), list(dict.fromkeys(addresses))


def make_certificate(
    cert: Path, key: Path, *, common_name: str, dns: list[str], ips: list[str], days: int
) -> None:
    """Write ``key`` and ``cert`` with openssl; both appear whole or not at all."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the 'openssl' command is missing: sudo apt-get install openssl")
    san = ",".join([*(f"DNS:{d}" for d in dns), *(f"IP:{a}" for a in ips)])
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=key.parent, prefix=".hmi-cert-") as tmp:
        tmp_key, tmp_cert = Path(tmp) / "key.pem", Path(tmp) / "cert.pem"
        os.close(os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        result = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-sha256", "-nodes", "-days", str(days), "-subj", f"/CN={common_name}",
             "-addext", f"subjectAltName={san}",
             "-addext", "basicConstraints=critical,CA:FALSE",
             "-addext", "keyUsage=critical,digitalSignature",
             "-addext", "extendedKeyUsage=serverAuth",
             "-keyout", str(tmp_key), "-out", str(tmp_cert)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"openssl failed: {result.stderr.strip()[-500:]}")
        _key_readable_by_service(tmp_key)
        os.chmod(tmp_cert, 0o644)
        os.replace(tmp_key, key)
        os.replace(tmp_cert, cert)


def _key_readable_by_service(path: Path) -> None:
    """As root with the service's group present: root:boosterd 0640; else owner-only."""
    if os.geteuid() != 0:
        return
    try:
        gid = grp.getgrnam(SERVICE_GROUP).gr_gid
    except KeyError:
        return
    os.chown(path, 0, gid)
    os.chmod(path, 0o640)


def fingerprint(cert: Path) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return out.stdout.strip().partition("=")[2] or "?"


def run(args: argparse.Namespace) -> int:
    hmi = HmiConfig()
    if args.config:
        from controller.config import ConfigError, load_config

        try:
            hmi = load_config(args.config).hmi or hmi
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
    cert = Path(args.cert or hmi.cert_file or DEFAULT_CERT)
    key = Path(args.key or hmi.key_file or DEFAULT_KEY)
    if (cert.exists() or key.exists()) and not args.force:
        print(f"boosterd hmi-cert: {cert} or {key} exists; --force replaces them", file=sys.stderr)
        return 1
    bad = [a for a in args.ip if _ip(a) is None]
    if bad or args.days < 1:
        print(f"boosterd hmi-cert: not an IP address: {', '.join(bad)}" if bad
              else "boosterd hmi-cert: --days must be at least 1", file=sys.stderr)  # fmt: skip
        return 2
    hostname = socket.gethostname()
    dns, ips = subject_alt_names(
        hostname=hostname,
        bind=hmi.bind if args.config else None,
        names=args.name,
        ips=args.ip,
        found=own_addresses(),
    )
    try:
        make_certificate(cert, key, common_name=hostname, dns=dns, ips=ips, days=args.days)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"boosterd hmi-cert: {exc}", file=sys.stderr)
        return 1
    print(f"certificate {cert} and key {key}, valid {args.days} days, for:")
    print("  " + ", ".join([*dns, *ips]))
    print(f"SHA-256 fingerprint (compare it with the browser's): {fingerprint(cert)}")
    if not args.config or hmi.cert_file is None:
        print("to use it, in the station file's hmi: section:")
        print(f"  cert_file: {cert}\n  key_file: {key}")
    return 0
