"""A throwaway, well-formed service-account key, for the demo and the tests.

The GCS emulator ignores credentials, but the product still reads and checks every customer key
(docs/operators-guide.md), so the demo needs a key that google-auth accepts: a real RSA key in the layout of
a key file downloaded from Google Cloud.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def rsa_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def service_account_info(private_key_pem: str, project_id: str = "beop-demo-project") -> dict:
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": uuid.uuid4().hex,
        "private_key": private_key_pem,
        "client_email": f"beop-delivery@{project_id}.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/beop-delivery",
        "universe_domain": "googleapis.com",
    }


def write_demo_key(path: Path) -> Path:
    """Write a key file (0600) once; an existing one is kept."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(service_account_info(rsa_private_key_pem()), indent=2), encoding="utf-8")
        path.chmod(0o600)
    return path
