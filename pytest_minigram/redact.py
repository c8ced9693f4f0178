"""Secrets never leave the process: passwords in URLs and token-like query values.

Every URL the plugin prints or stores (terminal, step summary, results file, report, JUnit,
benchmark JSON, stored rows) goes through `redact_url`; free text that may quote one (an
error message) through `redact_text`.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "secret", "token", "access_token",
                           "api_key", "apikey", "key", "auth", "sig", "signature"})
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):"
                       r"(?P<password>[^@\s/]*)@")
_QUERY = re.compile(r"(?P<key>[?&](?:" + "|".join(sorted(SECRET_PARAMS)) + r")=)[^&\s#]*",
                    re.IGNORECASE)


def redact_url(url: str) -> str:
    """``postgresql://u:SECRET@h/db`` -> ``postgresql://u:***@h/db``; secret query values too."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if not parts.scheme or not parts.netloc:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, MASK if k.lower() in SECRET_PARAMS else v)
                               for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Mask the password of every URL written inside ``text``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['key']}{MASK}", text)
