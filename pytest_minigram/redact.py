"""Secrets never leave the process: passwords in URLs and token-like query values.

Every URL the plugin prints or stores (terminal, step summary, results file, report, JUnit,
benchmark JSON, stored rows) goes through `redact_url`; free text that may quote one (an
error message) through `redact_text`. When in doubt they mask too much, never too little: a
password may hold ``/``, ``:`` or ``@``, so everything up to the last ``@`` before the host is
the password's.
"""

from __future__ import annotations

import re

MASK = "***"
SECRET_PARAMS = ("password", "passwd", "pwd", "secret", "client_secret", "token",
                 "access_token", "refresh_token", "id_token", "private_token", "api_key",
                 "apikey", "key", "auth", "sig", "signature", "x-amz-signature",
                 "x-amz-credential", "x-amz-security-token")
_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/\s]*):(?P<password>\S*)"
    r"@(?P<host>[^@\s/?#]*)")
_PARAM = re.compile(r"(?P<key>[?&#;](?:" + "|".join(re.escape(k) for k in SECRET_PARAMS)
                    + r")=)[^&\s#]*", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Mask the password of every URL written inside ``text``, and secret query values."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@{m['host']}", text)
    return _PARAM.sub(lambda m: f"{m['key']}{MASK}", text)


def redact_url(url: str) -> str:
    """``postgresql://u:SECRET@h/db`` -> ``postgresql://u:***@h/db``; secret query values too."""
    return redact_text(url)
