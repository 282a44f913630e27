"""The one error type the command line turns into a message and exit status 2, and the
masking that keeps a storage password out of every message, log line and file."""

from __future__ import annotations

import re

# scheme://user:password@host -> the password is everything between the first ':' after
# the user and the last '@' before the host (a password may itself hold '@' or ':').
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^\s/]*@")
# ...or a password given as a query parameter: ?password=secret
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd)=)[^&\s'\"]*", re.IGNORECASE)


class UsageError(Exception):
    """Bad input from the user: the message names the problem and what is accepted."""


def mask_url(text: str) -> str:
    """`text` (a storage URL, or any message holding one) with every URL password as ***:
    postgresql://user:secret@host/db -> postgresql://user:***@host/db."""
    text = _CREDENTIALS.sub(r"\g<head>***@", text)
    return _QUERY_PASSWORD.sub(r"\g<head>***", text)
