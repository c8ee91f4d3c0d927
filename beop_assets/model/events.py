"""The shape of a participation event (docs/landing-zone.md), as DuckDB parses it.

One JSON structure, parsed once per line by `from_json`: it is lenient (a value of the wrong type
becomes NULL) so that an odd field never rejects an otherwise valid participation; only the checks
of docs/landing-zone.md reject a line (see `day_loader.REJECTION_RULES`).
"""

import json

EVENT_STRUCTURE = {
    "participation_id": "VARCHAR",
    "timestamp": "VARCHAR",
    "account_id": "VARCHAR",
    "content_id": "VARCHAR",
    "content_version": "BIGINT",
    "publisher_id": "VARCHAR",
    "publisher_name": "VARCHAR",
    "page_url": "VARCHAR",
    "tc_string": "VARCHAR",
    "email": "VARCHAR",
    "questions": [{"question_id": "VARCHAR", "question_text": "VARCHAR", "answer_text": "VARCHAR"}],
    "optins": [{"optin_id": "VARCHAR", "optin_email": "VARCHAR", "optin_value": "BOOLEAN"}],
    "forms": [
        {
            "form_id": "VARCHAR",
            "form_name": "VARCHAR",
            "form_data": [
                {"field_id": "VARCHAR", "field_name": "VARCHAR", "field_type": "VARCHAR", "field_value": "VARCHAR"}
            ],
        }
    ],
}

EVENT_STRUCTURE_SQL = json.dumps(EVENT_STRUCTURE).replace("'", "''")

# The four fields the first pass of a load looks at (`day_loader`): the same fields as in
# EVENT_STRUCTURE, so that they parse to the same values, at a fraction of the cost of the whole event.
KEY_FIELDS = ("participation_id", "timestamp", "account_id", "content_id")
KEY_STRUCTURE_SQL = json.dumps({key: EVENT_STRUCTURE[key] for key in KEY_FIELDS}).replace("'", "''")
