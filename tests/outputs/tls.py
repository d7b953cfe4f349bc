"""TLS for tests: a CA and certificates generated here (the `cryptography` package), and a
real TLS listener collecting newline-delimited JSON."""
from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.outputs.helpers import LineListener


class Authority:
    """A CA that writes itself and the certificates it issues as PEM files under `directory`."""

    def __init__(self, directory: Path, name: str = "OGRT test CA") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(hours=1))
                     .not_valid_after(now + dt.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.ca_file = self.dir / "ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem: str, names: list[str], client: bool = False) -> tuple[Path, Path]:
        """(cert_file, key_file) of a leaf certificate for DNS names / IP addresses `names`."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        now = dt.datetime.now(dt.timezone.utc)
        usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(self.key, hashes.SHA256()))
        cert_file, key_file = self.dir / f"{stem}.pem", self.dir / f"{stem}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        return cert_file, key_file


class TlsListener(LineListener):
    """LineListener behind TLS (started at once); with `client_ca` it requires a client
    certificate issued by that CA. With `plain_capture` it does no TLS at all: it keeps in
    `.raw` the first bytes a client sends (its ClientHello) and hangs up."""

    def __init__(self, cert: tuple[Path, Path] | None, client_ca: Path | None = None,
                 plain_capture: bool = False) -> None:
        super().__init__()
        self.raw = b""
        self.handshake_errors: list[str] = []
        self.ctx: ssl.SSLContext | None = None
        if not plain_capture:
            assert cert is not None
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(*cert)
            if client_ca is not None:
                self.ctx.verify_mode = ssl.CERT_REQUIRED
                self.ctx.load_verify_locations(client_ca)
        self.start()

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        if self.ctx is None:
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            with self._lock:
                self.raw += data
            conn.close()
            return
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self._lock:
                self.handshake_errors.append(str(e))
            return
        tls.settimeout(0.1)
        super()._read(tls)
