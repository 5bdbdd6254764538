"""What the shared real data says about people, as strings no warehouse value may contain.

Read straight from the files, independently of the importers (which read no name, subject
or body), so that a bug there cannot hide itself: the mailing list's display names,
addresses, subjects, message ids and distinctive body lines; GH Archive's logins, commit
authors' names and addresses, and the titles and body lines of issues, pull requests and
comments. Short or common strings are left out, as they would match harmless text:

* a display name needs :data:`MIN_NAME` characters and must not be a common word;
* a login needs :data:`MIN_LOGIN` characters and must not be part of a repository's public
  name (``gh:<owner>/<repo>`` is the channel id);
* a body line needs :data:`MIN_LINE` characters, three words, must not be quoted (``>``) and
  must not be boilerplate (a line written by :data:`BOILERPLATE_AUTHORS` or more people:
  list footers, pull-request templates).

Every set maps a kind (``"mail display names"``) to its strings, for the counts in the test.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.policy
import email.utils
import gzip
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any, Final

import orjson

MIN_NAME: Final = 8
MIN_LOGIN: Final = 6
MIN_LINE: Final = 30
MIN_SUBJECT: Final = 16
BOILERPLATE_AUTHORS: Final = 3

#: Display names and commit authors that are words or placeholders, not people.
COMMON_NAMES: Final = frozenset({
    "administrator", "anonymous", "developer", "developers", "maintainer", "maintainers",
    "mailer-daemon", "postmaster", "r-package-devel", "r-devel", "somebody", "somebody else",
    "subscriber", "unknown", "your name", "your-name", "username", "localhost",
    "github actions", "github-actions", "travis ci", "travis-ci", "continuous integration",
})  # fmt: skip

#: pipermail's separator line followed by a From: header (as test_importers splits)
_SEPARATOR: Final = re.compile(rb"\n(?=From .+  \w{3} \w{3} [ \d]\d [\d:]{8} \d{4}\nFrom: )")
_IDS: Final = re.compile(r"<([^<>\s]+)>")
_COMMENTED: Final = re.compile(r"([^()]*?)\s*\((.*)\)")
_WORD: Final = re.compile(r"[^\W\d_]{2,}")
#: "Re: ", "Fwd: ", "AW: ", "[R-pkg-devel] " before a subject
_SUBJECT_PREFIX: Final = re.compile(
    r"^(?:\s*(?:re|fwd?|aw|wg|sv)\s*:|\s*\[[^\]]*\])+\s*", re.IGNORECASE
)

Secrets = dict[str, set[str]]


def mail_messages(paths: Iterable[Path]) -> Iterator[Message]:
    """Every message of the pipermail archives ``paths``, parsed by the standard library."""
    for path in paths:
        for chunk in _SEPARATOR.split(path.read_bytes()):
            body = chunk.split(b"\n", 1)[1] if b"\n" in chunk else b""
            yield email.message_from_bytes(body, policy=email.policy.compat32)


def mbox_secrets(paths: Iterable[Path]) -> Secrets:
    """Names, addresses, subjects, message ids and body lines of the mbox archives."""
    found: Secrets = defaultdict(set)
    lines: list[tuple[str, str]] = []  # (sender address, body line)
    for message in mail_messages(paths):
        sender = ""
        for header in ("From", "To", "Cc"):
            for value in message.get_all(header) or []:
                for name, address in _addresses(str(value)):
                    if _is_name(name):
                        found["mail display names"].add(name)
                    if len(address) >= MIN_NAME:
                        found["mail addresses"].add(address)
                        sender = sender or address
        subject = " ".join(_decoded(message["Subject"] or "").split())
        for text in (subject, _SUBJECT_PREFIX.sub("", subject)):
            if len(text) >= MIN_SUBJECT:
                found["mail subjects"].add(text)
        for header in ("Message-ID", "In-Reply-To", "References"):
            found["mail message ids"].update(_IDS.findall(str(message[header] or "")))
        lines += [(sender, line) for line in _text_lines(_body(message))]
    found["mail body lines"] = _distinctive(lines)
    return dict(found)


def gharchive_secrets(path: Path) -> Secrets:
    """Logins, commit authors, and titles and body lines of issues, pull requests, comments."""
    with gzip.open(path, "rb") as raw:
        items = [orjson.loads(line) for line in raw if line.strip()]
    # Repositories' public names: the channel ids (gh:<owner>/<repo>) hold them.
    public = "\n".join({item["repo"]["name"] for item in items}).lower()
    found: Secrets = defaultdict(set)
    lines: list[tuple[str, str]] = []  # (author's login, body line)
    for item in items:
        for key, value in _fields(item):
            if key == "login" and isinstance(value, str) and len(value) >= MIN_LOGIN:
                found["gh logins"].add(value)
        payload = item.get("payload") or {}
        for commit in payload.get("commits") or []:
            author = commit.get("author") or {}
            if _is_name(name := str(author.get("name") or "")):
                found["gh commit author names"].add(name)
            if "@" in (address := str(author.get("email") or "")):
                found["gh commit author addresses"].add(address)
        for key in ("issue", "pull_request", "comment"):
            part = payload.get(key) or {}
            title, body = part.get("title"), part.get("body")
            if isinstance(title, str) and len(title := " ".join(title.split())) >= MIN_SUBJECT:
                found["gh titles"].add(title)
            if isinstance(body, str):
                login = str((part.get("user") or {}).get("login") or "")
                lines += [(login, line) for line in _text_lines(body)]
    found["gh body lines"] = _distinctive(lines)
    for kind, texts in found.items():
        found[kind] = {text for text in texts if text.lower() not in public}
    return dict(found)


def _decoded(value: Any) -> str:
    """A header's text with RFC 2047 encoded words decoded."""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (LookupError, UnicodeDecodeError, email.errors.HeaderParseError):
        return str(value)


def _addresses(value: str) -> Iterator[tuple[str, str]]:
    """(display name, address) pairs of an address header: ``Name <addr>`` as the standard
    library parses it; pipermail's ``addr (Name)`` (the address obfuscated, with spaces;
    the name may hold commas and parentheses); else addresses split at commas."""
    value = " ".join(value.split())
    if "<" in value:
        pairs = email.utils.getaddresses([value])
    elif commented := _COMMENTED.fullmatch(value):
        pairs = [(commented[2], commented[1])]
    else:
        pairs = [("", part) for part in value.split(",")]
    for name, address in pairs:
        yield " ".join(_decoded(name).split()), address.strip()


def _is_name(name: str) -> bool:
    return len(name) >= MIN_NAME and name.lower() not in COMMON_NAMES and bool(_WORD.search(name))


def _body(message: Message) -> str:
    """The text parts of a message, decoded as their charset says (else UTF-8)."""
    texts = []
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            charset = part.get_content_charset() or "utf-8"
            try:
                texts.append(payload.decode(charset, errors="replace"))
            except LookupError:
                texts.append(payload.decode("utf-8", errors="replace"))
    return "\n".join(texts)


def _text_lines(text: str) -> Iterator[str]:
    """Lines long and wordy enough to be someone's writing, quoted ones left out."""
    for line in text.splitlines():
        line = line.strip()
        quoted = line.startswith((">", "|"))
        if len(line) >= MIN_LINE and not quoted and len(_WORD.findall(line)) >= 3:
            yield line


def _distinctive(lines: list[tuple[str, str]]) -> set[str]:
    """The lines fewer than :data:`BOILERPLATE_AUTHORS` authors wrote."""
    authors: dict[str, set[str]] = defaultdict(set)
    for author, line in lines:
        authors[line].add(author)
    return {line for line, who in authors.items() if len(who) < BOILERPLATE_AUTHORS}


def _fields(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON value, at any depth."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key, inner
            yield from _fields(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _fields(inner)
