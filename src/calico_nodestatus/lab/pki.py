"""Throw-away certificates for the lab's private servers (etcd, kube-apiserver) on loopback.

One CA per server set, a serving certificate for 127.0.0.1/localhost, and client certificates
whose subject carries the identity Kubernetes reads from it (CN = user, O = groups). Keys are
P-256, written 0600; everything is valid for a day.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class KeyPair:
    cert_file: Path
    key_file: Path


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class CertificateAuthority:
    """A CA in `directory` (ca.pem, ca-key.pem) that issues server and client certificates."""

    def __init__(self, directory: Path, common_name: str = "calico-nodestatus-lab-ca") -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = _name(common_name)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file = directory / "ca.pem"
        self.cert_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def _issue(self, stem: str, subject: x509.Name, usages: list[x509.ObjectIdentifier]) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if ExtendedKeyUsageOID.SERVER_AUTH in usages:
            san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        pair = KeyPair(self.directory / f"{stem}.pem", self.directory / f"{stem}-key.pem")
        cert = builder.sign(self._key, hashes.SHA256())
        pair.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private_key(pair.key_file, key)
        return pair

    def server(self, stem: str = "server") -> KeyPair:
        """A serving certificate for 127.0.0.1 and localhost. It is a client certificate too:
        etcd's JSON gateway dials etcd's own gRPC port with it."""
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        return self._issue(stem, _name(stem), usages)

    def client(self, stem: str, user: str | None = None, groups: tuple[str, ...] = ()) -> KeyPair:
        """A client certificate for `user` (CN, default the stem) in `groups` (O)."""
        return self._issue(stem, _name(user or stem, groups), [ExtendedKeyUsageOID.CLIENT_AUTH])


def signing_key(private_file: Path, public_file: Path) -> None:
    """A key pair for signing service-account tokens: the private key in SEC1 PEM (what
    kube-apiserver's signing-key flag reads) and its public key (what verifies the tokens)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    fd = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_file.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
