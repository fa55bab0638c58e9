"""Certificates made for a test with the ``openssl`` command (no Python package needed).

certs = Certificates.make(tmp_path / "tls")
certs.ca, certs.server_cert, certs.server_key        # a CA and a server certificate it signed
certs.client_cert, certs.client_key                  # a client certificate of the same CA (mTLS)
certs.stranger_cert, certs.stranger_key              # a client certificate of another CA
certs.client_env()                                   # ACCORD_TLS_* for a CLI with the client cert
certs.replace_server_certificate()                   # a new server certificate, in place

Server certificates name ``localhost``, ``127.0.0.1`` and ``::1``; each has its own serial, so a
test can tell which one a server presents (``served_serial``).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = "openssl"
SERVER_NAMES = "DNS:localhost,IP:127.0.0.1,IP:::1"


def _run(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def _ca(directory: Path, name: str) -> None:
    _run(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=Accord test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def _leaf(directory: Path, name: str, ca: str, usage: str, names: str) -> None:
    _run(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    (directory / f"{name}.ext").write_text(
        f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage={usage}\nsubjectAltName={names}\n"
    )
    _run(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip


def serial_of(cert: Path) -> int:
    out = subprocess.run(
        [OPENSSL, "x509", "-in", str(cert), "-noout", "-serial"], check=True, capture_output=True, text=True
    ).stdout
    return int(out.strip().split("=", 1)[1], 16)


@dataclass
class Certificates:
    directory: Path
    generation: int = 0

    @classmethod
    def make(cls, directory: Path) -> Certificates:
        directory.mkdir(parents=True, exist_ok=True)
        _ca(directory, "ca")
        _ca(directory, "stranger-ca")
        certs = cls(directory)
        certs._new_server("server")
        _leaf(directory, "client", "ca", "clientAuth", "DNS:client.accord.test")
        _leaf(directory, "stranger", "stranger-ca", "clientAuth", "DNS:client.accord.test")
        return certs

    def _new_server(self, name: str) -> None:
        _leaf(self.directory, name, "ca", "serverAuth", SERVER_NAMES)

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def stranger_ca(self) -> Path:
        return self.directory / "stranger-ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    @property
    def stranger_cert(self) -> Path:
        return self.directory / "stranger.crt"

    @property
    def stranger_key(self) -> Path:
        return self.directory / "stranger.key"

    def server_args(self, *, mutual: bool = False) -> list[str]:
        """``accord coordinator start`` flags serving with the server certificate."""
        args = ["--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key)]
        return [*args, "--tls-client-ca", str(self.ca)] if mutual else args

    def client_env(self, *, cert: bool = True) -> dict[str, str]:
        """The ``ACCORD_TLS_*`` variables of a client trusting the CA (with the client cert)."""
        env = {"ACCORD_TLS_CA": str(self.ca)}
        if cert:
            env |= {"ACCORD_TLS_CERT": str(self.client_cert), "ACCORD_TLS_KEY": str(self.client_key)}
        return env

    def replace_server_certificate(self) -> int:
        """Replace server.crt and server.key with a new pair (each file swapped whole, as a
        deployment tool or Kubernetes does); returns the new certificate's serial."""
        self.generation += 1
        name = f"server-{self.generation}"
        self._new_server(name)
        os.replace(self.directory / f"{name}.key", self.server_key)
        os.replace(self.directory / f"{name}.crt", self.server_cert)
        return serial_of(self.server_cert)


def served_serial(address: str, ca: Path, *, cert: Path | None = None, key: Path | None = None) -> int:
    """The serial of the certificate a TLS server at ``address`` presents to a new connection
    (verified against ``ca``)."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2", "http/1.1"])
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host.strip("[]")) as conn:
            peer = conn.getpeercert()
    assert peer is not None
    return int(str(peer["serialNumber"]), 16)
