"""A throwaway C2PA signing key and certificate chain for tests."""

import datetime
from pathlib import Path


def make_c2pa_files(folder: Path) -> tuple[Path, Path]:
    """A throwaway CA and an ES256 signing certificate it issued (C2PA refuses self-signed signers)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "t2i tests")])

    def usage(**on):
        flags = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                     data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                     encipher_only=False, decipher_only=False)
        return x509.KeyUsage(**{**flags, **on})

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def certificate(subject, public_key, *extensions):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(name("t2i test CA"))
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    ca = certificate(name("t2i test CA"), ca_key.public_key(), (x509.BasicConstraints(ca=True, path_length=None), True),
                     (usage(key_cert_sign=True, crl_sign=True), True))
    leaf = certificate(name("t2i test signer"), key.public_key(),
                       (x509.BasicConstraints(ca=False, path_length=None), True), (usage(digital_signature=True), True),
                       (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False),
                       (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (folder / "chain.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM)
                                       + ca.public_bytes(serialization.Encoding.PEM))
    return folder / "key.pem", folder / "chain.pem"
