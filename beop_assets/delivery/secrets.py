"""The one owner of secret masking: which values are secret, and hiding them in any text.

Which values: a target model declares its credential fields (`credential_field("env")` for a field
naming an environment variable that holds a secret, `credential_field("file")` for a field naming a
file whose content is secret). `secret_values` walks any model (a target, an export, a registry
entry) and reads what those fields point at, so a credential field added to a target tomorrow is
masked everywhere without this module changing. Values are read where the fields point at the time
of the call: a rotated key is masked as soon as it is in place.

Why masking at all, when messages are written to name only where a secret comes from: exception
texts of the libraries underneath (key parsers, JSON decoders, HTTP errors) can quote their input,
and a message that reaches a log, a chat webhook or an e-mail must never carry a password or a key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

CREDENTIAL = "credential"
MASK = "***"
CredentialKind = Literal["env", "file"]
# A shorter string would mangle messages (and reveals little); a shorter line of a multi-line secret
# (a PEM key's armour, an empty line) is no secret on its own.
MIN_SECRET = 6
MIN_SECRET_LINE = 16
# Fields of a JSON key file (a GCS service-account key) that hold the secret inside the file.
_SECRET_JSON_FIELDS = ("private_key", "private_key_id")


def credential_field(kind: CredentialKind, **kwargs: Any) -> Any:
    """A model field that names where a credential is read (never the credential itself): `env`, a
    variable holding it; `file`, a file holding it."""
    kwargs.setdefault("default", None)
    return Field(json_schema_extra={CREDENTIAL: kind}, **kwargs)


def credential_fields(model: type[BaseModel]) -> dict[str, CredentialKind]:
    """The credential fields a model declares: name -> kind."""
    found: dict[str, CredentialKind] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, Mapping) and extra.get(CREDENTIAL) in ("env", "file"):
            found[name] = extra[CREDENTIAL]  # type: ignore[assignment]
    return found


def _read(path: str) -> str | None:
    try:
        with open(os.path.expanduser(path), encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _inner(text: str) -> Iterator[str]:
    """Secrets inside a secret file: a service-account key's private key, as it reads once decoded."""
    if not text.lstrip().startswith("{"):
        return
    try:
        parsed = json.loads(text)
    except ValueError:
        return
    if isinstance(parsed, dict):
        yield from (v for k in _SECRET_JSON_FIELDS if isinstance(v := parsed.get(k), str) and v)


def _models(value: object) -> Iterator[BaseModel]:
    if isinstance(value, BaseModel):
        yield value
        for name in type(value).model_fields:
            yield from _models(getattr(value, name, None))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _models(item)


def secret_values(*models: object, environ: Mapping[str, str] | None = None) -> list[str]:
    """The values every declared credential field of `models` (and the models inside them) points at:
    environment variables' contents, key files' contents (and the private key inside a JSON key)."""
    env = os.environ if environ is None else environ
    found: list[str] = []
    for model in (m for top in models for m in _models(top)):
        for name, kind in credential_fields(type(model)).items():
            where = getattr(model, name, None)
            if not where:
                continue
            value = env.get(where) if kind == "env" else _read(where)
            if value:
                found.append(value)
                found.extend(_inner(value))
    return found


def mask(text: str, secrets: Iterable[str], marker: str = MASK) -> str:
    """`text` with every secret, and every long line of a multi-line secret (a key may be quoted line
    by line), replaced by `marker`. Longest first, so that a secret containing another is hidden whole."""
    parts: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        for part in (secret, secret.replace("\\n", "\n"), *secret.splitlines(), *secret.replace("\\n", "\n").split()):
            part = part.strip()
            if len(part) >= MIN_SECRET and (part == secret.strip() or len(part) >= MIN_SECRET_LINE):
                parts.add(part)
    for part in sorted(parts, key=len, reverse=True):
        text = text.replace(part, marker)
    return text
