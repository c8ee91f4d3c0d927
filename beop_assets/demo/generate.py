"""Realistic demo data for the landing zone (docs/landing-zone.md).

`generate_day(landing, day, participations, seed)` writes

- ``<landing>/reference/{accounts,campaigns,contents,optins}.ndjson``: FIXED reference data, identical
  whatever the seed or the day, so that several generated days (any seeds) stay consistent and an
  export configuration can be written against these ids;
- ``<landing>/participations/date=YYYY-MM-DD/part-0000N.ndjson[.gz]``: exactly ``participations``
  events of that UTC day (1 file up to 99 events, 2 files up to 9,999, else 4; when there are several
  files, ``part-00001`` is gzip-compressed). The day's old ``part-*`` files are removed first;
- with ``faults=True``, one more file ``part-faults.ndjson`` holding a handful of bad lines (invalid
  JSON, missing ``participation_id``, unknown account, unknown content, content of another account,
  timestamp of another day, a duplicate ``participation_id``) to demonstrate the rejection path.

The reference data (ids to write an export configuration against):

- ``a_1`` (username ``acme``): campaigns ``cmp_1``, ``cmp_2``, ``cmp_3``; contents ``c_1`` (cmp_1),
  ``c_2`` (cmp_1), ``c_3`` (cmp_2), ``c_4`` (cmp_3), ``c_5`` (no campaign);
- ``a_2`` (username ``globex``): campaigns ``cmp_4``, ``cmp_5``; contents ``c_6`` (cmp_4), ``c_7`` (cmp_5),
  ``c_8`` (no campaign);
- ``a_3`` (username ``initech``): campaigns ``cmp_6``, ``cmp_7``; contents ``c_9`` (cmp_6), ``c_10`` (cmp_7),
  ``c_11`` (no campaign).

Optins (each attached to a content of its account):

- ``a_1``: ``o_1`` "Newsletter ACME" (c_1), ``o_2`` "Offres partenaires" (c_1),
  ``o_3`` "Newsletter ACME" (c_4; the same name as ``o_1``, for the "same name" rule),
  ``o_4`` "Règlement du jeu" (c_5);
- ``a_2``: ``o_5`` (c_6), ``o_6`` (c_7), ``o_7`` (c_8);
- ``a_3``: ``o_8`` (c_9), ``o_9`` (c_10), ``o_10`` (c_11).

Names and texts contain accents, emoji, commas, quotes and newlines (``c_10``'s name, ``o_2``'s text).

Events: ``participation_id`` is ``p_YYYYMMDD_<n>`` (n zero-padded, 0-based); timestamps increase with n
over the day; each event's content is drawn among all contents, its account is that content's account,
its optins (0-3) are among that account's optins. The optional fields ``email``, ``tc_string``,
``page_url``, ``questions``, ``optins`` and ``forms`` are sometimes missing and sometimes null.
Everything is deterministic for a given (seed, day, participations).

A configuration to start from: a ``crm-participation`` export of ``a_1`` with ``campaigns: [cmp_1]``,
``contents: [c_5]`` and ``optins: [o_1, o_3]`` (two columns named "Newsletter ACME"); a ``crm-optin``
export of ``a_2`` with ``optins: [o_5, o_6]``; a global export of ``a_3``.

Speed: the events are built as JSON text inside DuckDB (hash-based randomness, values picked from pools
pre-encoded in Python, one ``concat`` per line), never row by row in Python; the part files are written
side by side, one single-threaded DuckDB connection each (timings in bench/README.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

try:  # python-isal is a dependency (fast gzip); fall back to zlib if it is ever absent.
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover
    import gzip as _gzip  # type: ignore[no-redef]

# --------------------------------------------------------------------------------------------------
# Reference data: fixed, independent of the seed and the day.
# --------------------------------------------------------------------------------------------------

ACCOUNTS: list[dict[str, Any]] = [
    {"account_id": "a_1", "username": "acme"},
    {"account_id": "a_2", "username": "globex"},
    {"account_id": "a_3", "username": "initech"},
]

CAMPAIGNS: list[dict[str, Any]] = [
    {"campaign_id": "cmp_1", "account_id": "a_1", "name": "Noël 2026 🎄 — Grand jeu"},
    {"campaign_id": "cmp_2", "account_id": "a_1", "name": 'Rentrée, "Back to school"'},
    {"campaign_id": "cmp_3", "account_id": "a_1", "name": "Été / Summer 2026 ☀️"},
    {"campaign_id": "cmp_4", "account_id": "a_2", "name": "Lancement « Globex One »"},
    {"campaign_id": "cmp_5", "account_id": "a_2", "name": "Fidélité, clients VIP ⭐"},
    {"campaign_id": "cmp_6", "account_id": "a_3", "name": "Sondage satisfaction — T4"},
    {"campaign_id": "cmp_7", "account_id": "a_3", "name": "Salon de l'auto 🚗, Genève"},
]

CONTENTS: list[dict[str, Any]] = [
    {"content_id": "c_1", "account_id": "a_1", "campaign_id": "cmp_1", "name": "Quiz de Noël 🎅", "version": 3},
    {
        "content_id": "c_2",
        "account_id": "a_1",
        "campaign_id": "cmp_1",
        "name": "Calendrier de l'Avent, jour 1",
        "version": 1,
    },
    {
        "content_id": "c_3",
        "account_id": "a_1",
        "campaign_id": "cmp_2",
        "name": 'Sondage "fournitures scolaires"',
        "version": 2,
    },
    {"content_id": "c_4", "account_id": "a_1", "campaign_id": "cmp_3", "name": "Concours photo ☀️📷", "version": 5},
    {
        "content_id": "c_5",
        "account_id": "a_1",
        "campaign_id": None,
        "name": "Newsletter — formulaire permanent",
        "version": 1,
    },
    {"content_id": "c_6", "account_id": "a_2", "campaign_id": "cmp_4", "name": "Découvrez Globex One", "version": 2},
    {
        "content_id": "c_7",
        "account_id": "a_2",
        "campaign_id": "cmp_5",
        "name": "Programme VIP : votre avis, svp",
        "version": 4,
    },
    {"content_id": "c_8", "account_id": "a_2", "campaign_id": None, "name": "Contact & démo", "version": 1},
    {"content_id": "c_9", "account_id": "a_3", "campaign_id": "cmp_6", "name": "Votre avis compte 👍", "version": 2},
    {
        "content_id": "c_10",
        "account_id": "a_3",
        "campaign_id": "cmp_7",
        "name": "Essai gratuit\nréservez maintenant",
        "version": 1,
    },
    {"content_id": "c_11", "account_id": "a_3", "campaign_id": None, "name": "Quiz « culture générale »", "version": 3},
]

OPTINS: list[dict[str, Any]] = [
    {
        "optin_id": "o_1",
        "account_id": "a_1",
        "content_id": "c_1",
        "name": "Newsletter ACME",
        "text": "J'accepte de recevoir la newsletter d'ACME, ses offres & actualités 📬.",
    },
    {
        "optin_id": "o_2",
        "account_id": "a_1",
        "content_id": "c_1",
        "name": "Offres partenaires",
        "text": "J'accepte que mes données soient transmises aux partenaires d'ACME, \"triés sur le volet\".\n"
        "Désinscription possible à tout moment.",
    },
    {
        "optin_id": "o_3",
        "account_id": "a_1",
        "content_id": "c_4",
        "name": "Newsletter ACME",
        "text": "Recevoir la newsletter d'été, une fois par semaine ☀️",
    },
    {
        "optin_id": "o_4",
        "account_id": "a_1",
        "content_id": "c_5",
        "name": "Règlement du jeu",
        "text": "J'ai lu et j'accepte le règlement, y compris l'article 5 « données personnelles ».",
    },
    {
        "optin_id": "o_5",
        "account_id": "a_2",
        "content_id": "c_6",
        "name": "Newsletter Globex",
        "text": "Oui, je veux être informé(e) des nouveautés Globex 🚀",
    },
    {
        "optin_id": "o_6",
        "account_id": "a_2",
        "content_id": "c_7",
        "name": "Programme VIP ⭐",
        "text": 'Adhérer au programme "VIP", gratuit et sans engagement.',
    },
    {
        "optin_id": "o_7",
        "account_id": "a_2",
        "content_id": "c_8",
        "name": "Être recontacté(e), par téléphone",
        "text": "Un conseiller peut m'appeler, du lundi au vendredi, 9h–18h.",
    },
    {
        "optin_id": "o_8",
        "account_id": "a_3",
        "content_id": "c_9",
        "name": "Newsletter Initech",
        "text": "Je m'abonne à la lettre d'information d'Initech ✉️",
    },
    {
        "optin_id": "o_9",
        "account_id": "a_3",
        "content_id": "c_10",
        "name": 'Offres "essai gratuit"',
        "text": "Recevoir les offres d'essai, 2 à 3 fois par mois.\nVos données restent en Europe 🇪🇺.",
    },
    {
        "optin_id": "o_10",
        "account_id": "a_3",
        "content_id": "c_11",
        "name": "Jeux & concours 🎲",
        "text": "Participer aux prochains jeux-concours d'Initech, Inc.",
    },
]

REFERENCE: dict[str, list[dict[str, Any]]] = {
    "accounts": ACCOUNTS,
    "campaigns": CAMPAIGNS,
    "contents": CONTENTS,
    "optins": OPTINS,
}

# --------------------------------------------------------------------------------------------------
# Value pools for the events.
# --------------------------------------------------------------------------------------------------

PUBLISHERS: list[tuple[str, str, str]] = [  # id, name, site
    ("pub_1", "Le Journal", "https://www.lejournal.example"),
    ("pub_2", "L'Équipe du Soir", "https://www.lequipe-du-soir.example"),
    ("pub_3", 'Le "Petit" Quotidien', "https://petit-quotidien.example"),
    ("pub_4", "Marie, Claire & Co", "https://marie-claire-co.example"),
    ("pub_5", "Süddeutsche Blatt", "https://sueddeutsche-blatt.example"),
    ("pub_6", "El País Digital 🌍", "https://elpais-digital.example"),
]

FIRST_NAMES: list[tuple[str, str, str]] = [  # display, email form, gender
    ("Zoé", "zoe", "F"),
    ("François", "francois", "M"),
    ("Jürgen", "jurgen", "M"),
    ("Ana-María", "ana-maria", "F"),
    ("Søren", "soren", "M"),
    ("Chloë", "chloe", "F"),
    ("Łukasz", "lukasz", "M"),
    ("Ève", "eve", "F"),
    ("Jean-Luc", "jean-luc", "M"),
    ("Amélie", "amelie", "F"),
    ("Mathéo", "matheo", "M"),
    ("Inès", "ines", "F"),
    ("Björn", "bjorn", "M"),
    ("Maëlys", "maelys", "F"),
    ("Noah", "noah", "M"),
    ("Aïcha", "aicha", "F"),
]

LAST_NAMES: list[tuple[str, str]] = [
    ("Dupont", "dupont"),
    ("O'Connor", "oconnor"),
    ("Nguyễn", "nguyen"),
    ("Müller", "muller"),
    ("Lefèvre", "lefevre"),
    ("García", "garcia"),
    ("D'Artagnan", "dartagnan"),
    ("van der Berg", "vanderberg"),
    ("Kowalski", "kowalski"),
    ("Šimić", "simic"),
    ("Benoît-Lévêque", "benoit-leveque"),
    ("Ødegaard", "odegaard"),
    ("Martin", "martin"),
    ("Иванова", "ivanova"),
    ("山田", "yamada"),
    ("Martínez", "martinez"),
]

EMAIL_DOMAINS: list[str] = ["example.com", "example.org", "exemple.fr", "mail.example.net"]

QUESTION_TEXTS: list[str] = [
    "Quel est votre cadeau de Noël préféré ? 🎁",
    "Sur une échelle de 1 à 10,\nrecommanderiez-vous ce produit ?",
    'Votre "plat" préféré, en deux mots ?',
    "Colonne A\tou colonne B : laquelle choisissez-vous ?",
    "¿Qué opinas del producto? — 日本語もOK",
    "Combien de fois par semaine lisez-vous « Le Journal » ?",
    'Qui a dit : "Je pense, donc je suis" ?\n(indice : un philosophe)',
]

ANSWER_TEXTS: list[str] = [
    "Un vélo 🚲",
    "9, sans hésiter !",
    'Raclette "maison", évidemment',
    "Ligne 1\nLigne 2\nLigne 3",
    "Tab\tseparated\tanswer",
    "Oui",
    "Non, merci",
    "😀😀😀",
    "C'est « génial »",
    "Descartes",
    "Ünïcödé ✓ — ok",
    "",
]

FORM_NAMES: list[str] = ["Jeu-concours 🎁", "Inscription, newsletter", 'Formulaire "contact"']

STREETS: list[str] = [
    "rue de l'Église",
    "avenue des Champs-Élysées",
    'boulevard "Saint-Michel"',
    "place du Marché, bât. A",
    "chemin des Écoliers",
    "Hauptstraße",
]

ADDRESS_LINE_2: list[str | None] = [
    None,
    None,
    "Bâtiment B, 3ᵉ étage",
    "Apt 12\nDigicode 1234A",
    "c/o M. Dupont",
]

PLACES: list[tuple[str, str, str]] = [  # zip code, city, country
    ("75011", "Paris", "France"),
    ("69002", "Lyon", "France"),
    ("13001", "Marseille", "France"),
    ("1000", "Bruxelles", "Belgique"),
    ("1204", "Genève", "Suisse"),
    ("97400", "Saint-Denis", "La Réunion, France"),
    ("10115", "Berlin", "Deutschland"),
    ("00118", "Roma", "Italia"),
]

COMMENTS: list[str | None] = [
    None,
    "Merci !",
    "Super jeu, j'adore 😍",
    'Je voudrais "plus" de questions,\nsvp.',
    "Tab\tdans\tle commentaire",
    "Première ligne\r\nDeuxième ligne",
    "Ça marche, 👍🏽",
]


@dataclass(frozen=True)
class GenerationSummary:
    day: dt.date
    participations: int  # valid events written (the bad lines of `faults` not included)
    files: tuple[Path, ...]  # the day's participation files, faults file included
    reference_files: tuple[Path, ...]
    accounts: tuple[str, ...]  # the accounts the day's events belong to
    bad_lines: int = 0


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _lit(value: Any) -> str:
    """A DuckDB SQL literal for a Python value (str, int, bool, None, list, dict -> struct)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_lit(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no SQL literal for {value!r}")


def _json_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_reference(landing: Path) -> tuple[Path, ...]:
    """Write the fixed reference files under `<landing>/reference/` (unchanged files are left alone)."""
    folder = Path(landing) / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in REFERENCE.items():
        path = folder / f"{name}.ndjson"
        _write_if_changed(path, "".join(_json_line(r) for r in rows))
        paths.append(path)
    return tuple(paths)


def _file_count(participations: int) -> int:
    if participations < 100:
        return 1
    if participations < 10_000:
        return 2
    return 4


_DRAWS = 256  # independent random draws per event: event i uses the keys i * _DRAWS + k


def _hash_base(seed: int, day: dt.date) -> int:
    """A per-(seed, day) offset for the hash keys, small enough that `i * _DRAWS + k + base` fits a BIGINT.

    DuckDB's multi-argument `hash(a, b, ...)` combines its arguments too weakly (draws come out
    correlated), while the single-argument hash of a BIGINT mixes well.
    """
    digest = hashlib.blake2b(f"{seed}/{day.isoformat()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (1 << 60)


def _id_width(participations: int) -> int:
    return max(6, len(str(max(participations - 1, 0))))


# --------------------------------------------------------------------------------------------------
# The event query
# --------------------------------------------------------------------------------------------------


def _j(value: Any) -> str:
    """The JSON text of a value, as `to_json` would write it (UTF-8 kept raw)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _jpool(values: list[Any]) -> str:
    """A SQL list literal of the JSON texts of `values`: picked per row, they need no escaping at run time."""
    return _lit([_j(v) for v in values])


def _pick(pool_sql: str, draw: str) -> str:
    """`pool[draw + 1]` for a 0-based draw."""
    return f"{pool_sql}[{draw} + 1]"


# Form fields: (field_id, field_name, field_type, SQL expression of the field's JSON value)
_FULL_FORM = [
    ("fd_1", "Civilité", "gender", "gender_j"),
    ("fd_2", "Prénom", "firstname", "firstname_j"),
    ("fd_3", "Nom", "lastname", "lastname_j"),
    ("fd_4", "E-mail", "email", "mail_j"),
    ("fd_5", "Téléphone", "phone", "phone_j"),
    ("fd_6", "Date de naissance", "birthdate", "birthdate_j"),
    ("fd_7", "Adresse", "address-line-1", "address1_j"),
    ("fd_8", "Complément d'adresse", "address-line-2", "address2_j"),
    ("fd_9", "Code postal", "address-zip-code", "zip_j"),
    ("fd_10", "Ville", "address-city", "city_j"),
    ("fd_11", "Pays", "address-country", "country_j"),
    ("fd_12", "Commentaire", None, "comment_j"),
]
_SHORT_FORM = [
    ("fd_1", "Prénom", "firstname", "firstname_j"),
    ("fd_2", "Adresse e-mail", "email", "mail_j"),
    ("fd_3", "Mobile", "phone", "phone_j"),
    ("fd_4", "Un mot pour nous ?", None, "comment_j"),
]


def _cat(*parts: str) -> str:
    """One variadic `concat(...)`: a single allocation per row, where a chain of `||` copies the
    growing line again at every step (quadratic in the number of pieces)."""
    return "concat(" + ", ".join(parts) + ")"


def _s(text: str) -> str:
    """A SQL string literal holding `text` verbatim (JSON punctuation, pre-encoded keys...)."""
    return _lit(text)


def _form_sql(form_id: str, form_name: str, fields: list[tuple[str, str, str | None, str]]) -> str:
    """SQL building the JSON text of a one-form `forms` list; `form_id`/`form_name` are SQL expressions."""
    parts = [_s('[{"form_id":'), form_id, _s(',"form_name":'), form_name, _s(',"form_data":[')]
    for n, (fid, fname, ftype, expr) in enumerate(fields):
        static = (
            "," if n else ""
        ) + f'{{"field_id":{_j(fid)},"field_name":{_j(fname)},"field_type":{_j(ftype)},"field_value":'
        parts += [_s(static), expr, _s("}")]
    parts.append(_s("]}]"))
    return _cat(*parts)


def _events_sql(day: dt.date, participations: int, seed: int, start: int, stop: int) -> str:
    """A query of one VARCHAR column `line`: the JSON text of events start..stop-1 of the day.

    The JSON is assembled as text: every value picked from a pool is pre-encoded in Python (`_jpool`),
    generated values are ASCII without quotes or backslashes, so nothing needs escaping per row
    (several times faster than building structs and calling `to_json`).
    """
    accounts = [a["account_id"] for a in ACCOUNTS]
    content_account_idx = [accounts.index(c["account_id"]) + 1 for c in CONTENTS]
    account_optins = [[_j(o["optin_id"]) for o in OPTINS if o["account_id"] == a] for a in accounts]
    versions = _lit([c["version"] for c in CONTENTS])
    width = _id_width(participations)
    # milliseconds per event slot: timestamps increase with the event number and stay inside the day
    slot = max(1, 86_400_000 // max(participations, 1))
    prefix = f"p_{day:%Y%m%d}_"
    base = _hash_base(seed, day)

    def r(k: int, n: int) -> str:
        """A deterministic pseudo-random INTEGER in [0, n) for event `i` and draw `k`."""
        return f"(hash(i * {_DRAWS} + {k} + {base}) % {n})::INTEGER"

    def optional(key: str, value: str, draw: str, absent_pct: int, null_pct: int) -> str:
        """`,"key":<value>` usually; sometimes `,"key":null`; sometimes nothing at all."""
        return (
            f"CASE WHEN {draw} < {absent_pct} THEN '' "
            f"WHEN {draw} < {absent_pct + null_pct} THEN {_s(f',{_j(key)}:null')} "
            f"ELSE {_cat(_s(f',{_j(key)}:'), value)} END"
        )

    def question(k: int) -> list[str]:
        qtext = _pick(_jpool(QUESTION_TEXTS), f"((ci * 3 + {k}) % {len(QUESTION_TEXTS)})")
        answer = _pick(_jpool(ANSWER_TEXTS), r(100 + k, len(ANSWER_TEXTS)))
        return [
            _s(f'{{"question_id":"q_{k + 1}","question_text":'),
            qtext,
            _s(',"answer_text":'),
            answer,
            _s("}"),
        ]

    def optin(k: int) -> list[str]:
        optin_id = f"acc_optins[((optin_start + {k}) % len(acc_optins)) + 1]"
        value = f"CASE WHEN {r(200 + k, 100)} < 62 THEN 'true' ELSE 'false' END"
        return [
            _s('{"optin_id":'),
            optin_id,
            _s(',"optin_email":'),
            "optin_email_j",
            _s(',"optin_value":'),
            value,
            _s("}"),
        ]

    def listing(count: str, item, most: int) -> str:
        """`[item(0),...,item(count-1)]` for a count in 0..most."""
        branches = []
        for n in range(1, most + 1):
            parts = [_s("[")]
            for k in range(n):
                parts += ([_s(",")] if k else []) + item(k)
            branches.append(f"WHEN {n} THEN {_cat(*parts, _s(']'))}")
        return f"CASE {count} WHEN 0 THEN '[]' {' '.join(branches)} END"

    form_names = _jpool(FORM_NAMES)
    full_form = _form_sql(
        _cat(_s('"f_'), "ci::VARCHAR", _s('"')), _pick(form_names, f"(ci % {len(FORM_NAMES)})"), _FULL_FORM
    )
    short_form = _form_sql(
        _cat(_s('"f_'), "ci::VARCHAR", _s('_s"')),
        _pick(form_names, f"((ci + 1) % {len(FORM_NAMES)})"),
        _SHORT_FORM,
    )
    page_url = _cat(
        _s('"'),
        f"{_lit([s for _, _, s in PUBLISHERS])}[pi + 1]",
        _s("/article/"),
        f"(1000 + {r(22, 9000)})::VARCHAR",
        _s("-"),
        _pick(_lit(["noel", "sport", "cuisine", "auto", "culture"]), r(23, 5)),
        f"CASE WHEN {r(24, 4)} = 0 THEN '?utm_source=beop&utm_medium=embed&tags=a,b' ELSE '' END",
        _s('"'),
    )
    tc_string = _cat(
        _s('"CP'),
        f"upper(to_hex(hash(i * {_DRAWS} + 25 + {base})))",
        _s("AAAAA"),
        f"upper(to_hex(hash(i * {_DRAWS} + 26 + {base})))",
        _s('.YAAAAAAAAAAA"'),
    )
    timestamp = (
        f"strftime(DATE '{day.isoformat()}' + to_milliseconds((i * {slot} + {r(21, slot)}) % 86400000), "
        "'%Y-%m-%dT%H:%M:%S.%gZ')"
    )
    line = _cat(
        _s(f'{{"participation_id":"{prefix}'),
        f"lpad(i::VARCHAR, {width}, '0')",
        _s('","timestamp":"'),
        timestamp,
        _s('","account_id":'),
        f"{_jpool(accounts)}[ai]",
        _s(',"content_id":'),
        f"{_jpool([c['content_id'] for c in CONTENTS])}[ci]",
        _s(',"content_version":'),
        f"(CASE WHEN {r(7, 10)} = 0 THEN greatest(1, {versions}[ci] - 1) ELSE {versions}[ci] END)::VARCHAR",
        _s(',"publisher_id":'),
        f"{_jpool([p for p, _, _ in PUBLISHERS])}[pi + 1]",
        _s(',"publisher_name":'),
        f"{_jpool([n for _, n, _ in PUBLISHERS])}[pi + 1]",
        optional("page_url", page_url, r(40, 100), 5, 5),
        optional("tc_string", tc_string, r(41, 100), 8, 7),
        optional("email", "mail_j", r(42, 100), 6, 9),
        optional("questions", listing(r(27, 4), question, 3), r(43, 100), 10, 5),
        optional("optins", listing(f"least({r(28, 4)}, len(acc_optins))", optin, 3), r(44, 100), 5, 5),
        optional(
            "forms",
            f"CASE WHEN {r(31, 10)} < 4 THEN {full_form} WHEN {r(31, 10)} < 7 THEN {short_form} ELSE '[]' END",
            r(45, 100),
            5,
            5,
        ),
        _s("}"),
    )
    mail = _cat(
        _pick(_lit([a for _, a, _ in FIRST_NAMES]), "fi"),
        _s("."),
        _pick(_lit([a for _, a in LAST_NAMES]), "li"),
        "CASE WHEN pct < 50 THEN '' ELSE (pct % 97)::VARCHAR END",
        _s("@"),
        _pick(_lit(EMAIL_DOMAINS), r(8, len(EMAIL_DOMAINS))),
    )
    phone = (
        f"printf('\"+33 %d %02d %02d %02d %02d\"', 6 + {r(9, 2)}, {r(10, 100)}, {r(11, 100)}, "
        f"{r(12, 100)}, {r(13, 100)})"
    )
    birthdate = f"printf('\"%04d-%02d-%02d\"', 1950 + {r(14, 56)}, 1 + {r(15, 12)}, 1 + {r(16, 28)})"
    address1 = _cat(
        _s('"'),
        f"(1 + {r(17, 180)})::VARCHAR",
        _s(", "),
        _pick(_lit([_j(s)[1:-1] for s in STREETS]), r(18, len(STREETS))),
        _s('"'),
    )

    return f"""
WITH b AS (
    SELECT
        i,
        {r(1, len(CONTENTS))} + 1 AS ci,
        {r(2, len(FIRST_NAMES))} AS fi,
        {r(3, len(LAST_NAMES))} AS li,
        {r(4, len(PUBLISHERS))} AS pi,
        {r(5, len(PLACES))} AS place,
        {r(6, 100)} AS pct
    FROM range({start}, {stop}) t(i)
), e AS (
    SELECT
        i, ci, pi, place,
        {_lit(content_account_idx)}[ci] AS ai,
        {_pick(_jpool([f for f, _, _ in FIRST_NAMES]), "fi")} AS firstname_j,
        {_pick(_jpool([g for _, _, g in FIRST_NAMES]), "fi")} AS gender_j,
        {_pick(_jpool([n for n, _ in LAST_NAMES]), "li")} AS lastname_j,
        {mail} AS mail
    FROM b
), ev AS (
    SELECT
        *,
        concat('"', mail, '"') AS mail_j,
        CASE WHEN {r(30, 10)} < 7 THEN concat('"', mail, '"') ELSE 'null' END AS optin_email_j,
        {_lit(account_optins)}[ai] AS acc_optins,
        {r(29, 16)} AS optin_start,
        {phone} AS phone_j,
        {birthdate} AS birthdate_j,
        {address1} AS address1_j,
        {_pick(_jpool(ADDRESS_LINE_2), r(19, len(ADDRESS_LINE_2)))} AS address2_j,
        {_pick(_jpool([z for z, _, _ in PLACES]), "place")} AS zip_j,
        {_pick(_jpool([c for _, c, _ in PLACES]), "place")} AS city_j,
        {_pick(_jpool([k for _, _, k in PLACES]), "place")} AS country_j,
        {_pick(_jpool(COMMENTS), r(20, len(COMMENTS)))} AS comment_j
    FROM e
)
SELECT {line} AS line
FROM ev
"""


def _copy_lines(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """Write the `line` column of `query` as raw text lines (DuckDB's CSV writer with quoting off).

    The lines are JSON texts from `to_json`: no raw newline, quote-free CSV is exactly the text.
    """
    escaped = str(path).replace("'", "''")
    con.execute(
        f"COPY ({query}) TO '{escaped}' "
        "(FORMAT CSV, HEADER false, QUOTE '', ESCAPE '', DELIMITER E'\\x01', NEW_LINE E'\\n')"
    )


def _write_part(query: str, path: Path, gz: bool) -> Path:
    """Write one part file (its own single-threaded in-memory DuckDB connection)."""
    with duckdb.connect(config={"threads": 1}) as con:
        if not gz:
            _copy_lines(con, query, path)
            return path
        # DuckDB's own gzip COPY is slow: write plain text, then compress it with isal at level 1.
        # The temporary name matches neither `*.ndjson` nor `*.ndjson.gz`, but `part-*` (cleaned up).
        tmp = path.with_name(path.name + ".plain-tmp")
        try:
            _copy_lines(con, query, tmp)
            _gzip_file(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def _gzip_file(src: Path, dst: Path) -> None:
    """Compress `src` into `dst` (level 1; mtime 0 and no file name in the header: reproducible bytes)."""
    with (
        open(src, "rb") as fin,
        open(dst, "wb") as raw,
        _gzip.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=raw, mtime=0) as fout,
    ):
        shutil.copyfileobj(fin, fout, 4 * 1024 * 1024)


# --------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------


def _fault_lines(day: dt.date, first_line: str | None) -> list[str]:
    """A handful of bad lines, one per rejection reason, plus an exact duplicate of the day's first event."""
    stamp = f"{day.isoformat()}T12:00:00.000Z"
    other_day = f"{(day - dt.timedelta(days=1)).isoformat()}T23:59:59.999Z"
    tag = f"{day:%Y%m%d}"

    def event(pid: str | None, ts: str, account: str, content: str) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "participation_id": pid,
            "timestamp": ts,
            "account_id": account,
            "content_id": content,
            "content_version": 1,
            "publisher_id": "pub_1",
            "publisher_name": "Le Journal",
            "page_url": "https://www.lejournal.example/article/1",
            "email": "faulty@example.com",
            "questions": [],
            "optins": [],
            "forms": [],
        }
        if pid is None:
            del obj["participation_id"]
        return obj

    lines = [
        # invalid JSON (truncated line)
        '{"participation_id": "p_' + tag + '_bad_json", "timestamp": "' + stamp + '", "account_id": "a_1",',
        _json_line(event(None, stamp, "a_1", "c_1")).rstrip("\n"),  # missing participation_id
        _json_line(event(f"p_{tag}_bad_account", stamp, "a_999", "c_1")).rstrip("\n"),  # unknown account
        _json_line(event(f"p_{tag}_bad_content", stamp, "a_1", "c_999")).rstrip("\n"),  # unknown content
        _json_line(event(f"p_{tag}_foreign_content", stamp, "a_1", "c_6")).rstrip("\n"),  # content of a_2
        _json_line(event(f"p_{tag}_other_day", other_day, "a_1", "c_1")).rstrip("\n"),  # timestamp of day - 1
    ]
    if first_line is not None:
        lines.append(first_line.rstrip("\n"))  # the same participation_id twice: loaded once
    return lines


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def generate_day(
    landing: Path,
    day: dt.date,
    participations: int,
    seed: int = 0,
    *,
    faults: bool = False,
) -> GenerationSummary:
    """Write the reference data and exactly `participations` events of `day` into `landing`."""
    if participations < 0:
        raise ValueError("participations must be >= 0")
    landing = Path(landing)
    reference_files = write_reference(landing)

    folder = landing / "participations" / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*"):
        if old.is_file():
            old.unlink()

    n_files = _file_count(participations)
    bounds = [participations * k // n_files for k in range(n_files + 1)]
    tasks = []
    for k in range(n_files):
        gz = n_files > 1 and k == 1
        path = folder / (f"part-{k:05d}.ndjson.gz" if gz else f"part-{k:05d}.ndjson")
        tasks.append((_events_sql(day, participations, seed, bounds[k], bounds[k + 1]), path, gz))
    # DuckDB runs each query's `range()` pipeline on one thread: the files are written side by side,
    # one connection each, which uses both cores (and keeps every file's row order deterministic).
    workers = max(1, min(len(tasks), os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        files = list(pool.map(lambda task: _write_part(*task), tasks))

    used_accounts: tuple[str, ...] = ()
    if participations:
        base = _hash_base(seed, day)
        with duckdb.connect() as con:
            rows = con.execute(
                f"SELECT DISTINCT (hash(i * {_DRAWS} + 1 + {base}) % {len(CONTENTS)})::INTEGER "
                f"FROM range({participations}) t(i)"
            ).fetchall()
        used = {CONTENTS[row[0]]["account_id"] for row in rows}
        used_accounts = tuple(a["account_id"] for a in ACCOUNTS if a["account_id"] in used)

    bad_lines = 0
    if faults:
        first_line = None
        if participations:
            with open(files[0], encoding="utf-8") as fh:
                first_line = fh.readline()
        lines = _fault_lines(day, first_line)
        path = folder / "part-faults.ndjson"
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        files.append(path)
        bad_lines = len(lines)

    return GenerationSummary(
        day=day,
        participations=participations,
        files=tuple(files),
        reference_files=reference_files,
        accounts=used_accounts,
        bad_lines=bad_lines,
    )
