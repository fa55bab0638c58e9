"""The coordinator's certificate, read again when its files change.

``CertificateFiles`` reads ``--tls-cert``, ``--tls-key`` and ``--tls-client-ca`` once at start
(a problem there stops the start, naming the file) and then checks at every new connection
whether any of them changed (a ``stat`` of each: cheap). A change is read and checked (the key
must be the certificate's) before it is used; files caught half-written, or a pair that does not
match, keep the previous certificate in use, with a warning, until the files are whole again.
Connections already open keep the certificate they started with.

Two servers take it: gRPC through its certificate fetcher (``grpc_credentials``), which gRPC
calls for every handshake, and the UI's HTTPS through an ``ssl.SSLContext`` whose server-name
callback (called for every handshake, with or without SNI) hands the handshake the newest one.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from contracts.errors import AccordError
from coordinator.config import ServerTlsFiles

logger = logging.getLogger(__name__)

_Signature = tuple[tuple[int, int, int] | None, ...]


class TlsFilesError(AccordError):
    """A TLS file of the coordinator cannot be used (exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class _Loaded:
    generation: int
    cert: bytes
    key: bytes
    client_ca: bytes | None
    context: ssl.SSLContext  # for the UI: made from the same files, which checked the pair


class CertificateFiles:
    """The coordinator's TLS files and what was last read from them."""

    def __init__(self, files: ServerTlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._loaded = self._read(1)  # raises TlsFilesError
        self._refused: _Signature | None = None

    @property
    def mutual(self) -> bool:
        return self.files.client_ca is not None

    def _paths(self) -> list[Path]:
        return [self.files.cert, self.files.key, *([self.files.client_ca] if self.files.client_ca else [])]

    def _stat(self) -> _Signature:
        signature: list[tuple[int, int, int] | None] = []
        for path in self._paths():
            try:
                st = path.stat()  # follows symlinks: a Kubernetes secret's swap changes the inode
                signature.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                signature.append(None)
        return tuple(signature)

    def _read(self, generation: int) -> _Loaded:
        """Read and check every file; raise TlsFilesError naming the first that cannot be used."""
        flags = ("--tls-cert", "--tls-key", "--tls-client-ca")
        texts: list[bytes] = []
        for flag, path in zip(flags, self._paths(), strict=False):
            try:
                texts.append(path.read_bytes())
            except OSError as exc:
                raise TlsFilesError(f"{flag} {path}: cannot read it: {exc.strerror or exc}") from None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        try:
            context.load_cert_chain(self.files.cert, self.files.key)
        except ssl.SSLError as exc:
            raise TlsFilesError(
                f"--tls-cert {self.files.cert} and --tls-key {self.files.key}: not a PEM certificate"
                f" and its private key ({exc.reason or exc}); see docs/production.md, TLS"
            ) from None
        except OSError as exc:
            raise TlsFilesError(
                f"--tls-cert {self.files.cert}: cannot read it: {exc.strerror or exc}"
            ) from None
        if self.files.client_ca is not None:
            try:
                ssl.create_default_context(cafile=self.files.client_ca)
            except (ssl.SSLError, OSError) as exc:
                raise TlsFilesError(
                    f"--tls-client-ca {self.files.client_ca}: not a PEM CA certificate file"
                    f" ({getattr(exc, 'reason', None) or exc})"
                ) from None
        # The context read the files again: if one changed meanwhile, what it holds may not be
        # what ``texts`` holds. Refuse this read; the next handshake tries again.
        for path, text in zip(self._paths(), texts, strict=True):
            try:
                same = path.read_bytes() == text
            except OSError:
                same = False
            if not same:
                raise TlsFilesError(f"{path} changed while it was read")
        context.sni_callback = self._hand_newest
        return _Loaded(
            generation=generation,
            cert=texts[0],
            key=texts[1],
            client_ca=texts[2] if self.files.client_ca else None,
            context=context,
        )

    def current(self) -> _Loaded:
        """What the files hold now (read again if they changed since the last look)."""
        signature = self._stat()
        if signature == self._signature:
            return self._loaded
        with self._lock:
            if signature == self._signature:
                return self._loaded
            try:
                loaded = self._read(self._loaded.generation + 1)
            except TlsFilesError as exc:
                if signature != self._refused:  # once per change, not at every handshake
                    logger.warning(
                        "TLS files changed but cannot be used yet (%s); keeping the previous ones", exc
                    )
                    self._refused = signature
                return self._loaded
            self._signature, self._loaded, self._refused = signature, loaded, None
            logger.info("TLS certificate reloaded from %s", self.files.cert)
            return loaded

    # ---------- gRPC

    def _grpc_configuration(self, loaded: _Loaded) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(loaded.key, loaded.cert)], root_certificates=loaded.client_ca
        )

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Server credentials whose certificate follows the files (and, with a client CA, that
        refuse a client without a certificate signed by it, at the handshake)."""
        served = [self._loaded.generation]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            # Called by gRPC for every handshake; None keeps the configuration it has.
            try:
                loaded = self.current()
                if loaded.generation == served[0]:
                    return None
                served[0] = loaded.generation
                return self._grpc_configuration(loaded)
            except Exception:  # never let a look at the files fail a handshake
                logger.exception("checking the TLS files failed")
                return None

        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(self._loaded), fetch, require_client_authentication=self.mutual
        )

    # ---------- the UI (HTTPS)

    def ssl_context(self) -> ssl.SSLContext:
        """The ``ssl.SSLContext`` to serve HTTPS with; each handshake gets the newest certificate."""
        return self._loaded.context

    def _hand_newest(self, connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: object) -> None:
        try:
            newest = self.current().context
            if connection.context is not newest:
                connection.context = newest
        except Exception:
            logger.exception("checking the TLS files failed")


def load(files: ServerTlsFiles) -> CertificateFiles:
    """Read ``files`` (raises TlsFilesError, exit 2, naming the file that cannot be used)."""
    return CertificateFiles(files)
