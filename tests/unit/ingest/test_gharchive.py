"""The GH Archive importer: mapping, roles, skipped and malformed events; checked on real data."""

from __future__ import annotations

import gzip
import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest import (
    ActorRole,
    Decision,
    Event,
    EventType,
    InputError,
    Pseudonymiser,
    RejectCode,
    Rejection,
    Visibility,
)
from ingest.importers.foreign import IMPORT_NAMESPACE
from ingest.importers.gharchive import GhArchive
from ingest.producer import Record

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "gharchive"
REPO = {"id": 1, "name": "octo/widgets"}


def gh(
    n: int, kind: str, login: str, *, action: str | None = None, **payload: Any
) -> dict[str, Any]:
    return {
        "id": str(1000 + n),
        "type": kind,
        "actor": {"id": n, "login": login},
        "repo": REPO,
        "created_at": f"2015-01-01T12:{n:02d}:00Z",
        "payload": ({"action": action} if action else {}) | payload,
    }


def issue(number: int, author: str) -> dict[str, Any]:
    return {"number": number, "title": "Widgets break on Tuesdays", "body": "Secret steps",
            "user": {"login": author}}  # fmt: skip


def pull(number: int, author: str) -> dict[str, Any]:
    return {"number": number, "title": "Fix Tuesdays", "body": "Secret patch",
            "user": {"login": author}}  # fmt: skip


FIXTURE = [
    gh(1, "IssuesEvent", "alice", action="opened", issue=issue(7, "alice")),
    gh(2, "IssueCommentEvent", "bob", action="created", issue=issue(7, "alice"),
       comment={"body": "Secret answer"}),
    gh(3, "IssueCommentEvent", "alice", action="created", issue=issue(7, "alice")),
    gh(4, "IssueCommentEvent", "ci-bot", action="created", issue=issue(7, "alice")),
    gh(5, "IssuesEvent", "bob", action="closed", issue=issue(7, "alice")),
    gh(6, "IssuesEvent", "alice", action="reopened", issue=issue(7, "alice")),
    gh(7, "IssuesEvent", "alice", action="closed", issue=issue(7, "alice")),
    gh(8, "PullRequestEvent", "carol", action="opened", number=8, pull_request=pull(8, "carol")),
    gh(9, "PullRequestReviewCommentEvent", "bob", action="created", pull_request=pull(8, "carol")),
    gh(10, "PullRequestReviewCommentEvent", "carol", action="created",
       pull_request=pull(8, "carol")),
    gh(11, "PullRequestEvent", "bob", action="closed", number=8, pull_request=pull(8, "carol")),
    gh(12, "PushEvent", "bob", ref="refs/heads/main"),
    gh(13, "IssuesEvent", "dave", action="opened", issue={"title": "no number"}),
]  # fmt: skip


@pytest.fixture
def archive(tmp_path: Path) -> GhArchive:
    path = tmp_path / "2015-01-01-12.json.gz"
    lines = [orjson.dumps(item) for item in FIXTURE]
    lines.insert(5, b"{not json")
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    source = GhArchive([path])
    source.open()
    return source


def test_mapping_and_roles(archive: GhArchive) -> None:
    events = [r.data for r in archive.records() if isinstance(r.data, Event)]
    assert archive.done == archive.total > 0
    assert [(e.event_type, e.actor_role, e.actor_id) for e in events] == [
        (EventType.TICKET_OPENED, ActorRole.CUSTOMER, "alice"),
        (EventType.TICKET_REPLIED, ActorRole.AGENT, "bob"),  # a response
        (EventType.TICKET_REPLIED, ActorRole.CUSTOMER, "alice"),  # the author: a follow-up
        (EventType.TICKET_REPLIED, ActorRole.BOT, "ci-bot"),
        (EventType.TICKET_RESOLVED, ActorRole.AGENT, "bob"),
        (EventType.TICKET_REOPENED, ActorRole.CUSTOMER, "alice"),
        (EventType.TICKET_RESOLVED, ActorRole.CUSTOMER, "alice"),  # closed by its author
        (EventType.POST_SUBMITTED, ActorRole.CUSTOMER, "carol"),
        (EventType.POST_REVIEWED, ActorRole.AGENT, "bob"),
        (EventType.TICKET_REPLIED, ActorRole.CUSTOMER, "carol"),  # the author answers a review
    ]
    assert {e.channel_id for e in events} == {"gh:octo/widgets"}
    assert [e.conversation_id for e in events] == ["gh:octo/widgets#7"] * 7 + [
        "gh:octo/widgets#8"
    ] * 3
    assert {(e.channel_kind.value, e.scope.value) for e in events} == {("ticket", "external")}
    assert {e.visibility for e in events if e.event_type is EventType.TICKET_REPLIED} == {
        Visibility.PUBLIC
    }
    assert [e.decision for e in events if e.event_type is EventType.POST_REVIEWED] == [
        Decision.CHANGES_REQUESTED
    ]
    assert events[0].occurred_at == datetime(2015, 1, 1, 12, 1, tzinfo=UTC)
    assert events[0].event_id == uuid.uuid5(IMPORT_NAMESPACE, "gharchive\x1f1001\x1fticket_opened")


def test_skipped_and_malformed_are_counted(archive: GhArchive) -> None:
    records = list(archive.records())
    stats = archive.stats
    assert stats.events == 14 and stats.mapped.total() == 10 and stats.requests == 2
    assert stats.skipped == Counter({"PullRequestEvent/closed": 1, "PushEvent": 1})
    assert stats.repositories == {"gh:octo/widgets"}
    assert [str(p) for p in stats.malformed] == [
        "2015-01-01-12.json.gz:6: not JSON",
        "2015-01-01-12.json.gz:14: no payload.issue.user.login",
    ]
    rejected = [r for r in records if isinstance(r.data, Rejection)]
    assert [r.source for r in rejected] == [p.source for p in stats.malformed]
    assert all(r.raw is not None and b"dave" not in r.raw for r in rejected)


def test_ids_are_stable_and_nothing_identifying_leaves(archive: GhArchive) -> None:
    first = [r.data for r in archive.records()]
    assert first == [r.data for r in archive.records()]
    pseudonymiser = Pseudonymiser(b"k" * 32)
    values = [pseudonymiser.apply(e).model_dump_json() for e in first if isinstance(e, Event)]
    for secret in ("alice", "bob", "carol", "Tuesdays", "Secret"):
        assert not any(secret in value for value in values), secret


def test_open_checks_the_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        GhArchive([tmp_path / "missing.json.gz"]).open()
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="cannot read"):
        GhArchive([tmp_path / "bad.json.gz"]).open()


def test_a_truncated_file_keeps_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "cut.json.gz"
    whole = gzip.compress(b"\n".join(orjson.dumps(item) for item in FIXTURE[:3]) + b"\n")
    path.write_bytes(whole[:-8])  # without the gzip trailer
    source = GhArchive([path])
    records = list(source.records())
    assert sum(isinstance(r.data, Event) for r in records) == 3
    assert records[-1].data == Rejection(RejectCode.MALFORMED_ROW, "file ends unreadably here")
    assert records[-1].source == "cut.json.gz:4"
    # The line it broke in is read and malformed: the counts add up, as for a plain file.
    stats = source.stats
    assert stats.events == 4 == stats.mapped.total() + len(stats.malformed)


def test_a_mapped_type_without_an_action_is_malformed_not_skipped(tmp_path: Path) -> None:
    # An IssuesEvent without its action could be an opening or a closing: it cannot be
    # skipped as an unmapped action (that lost it without a trace), nor mapped.
    lines = [
        {**FIXTURE[0], "payload": "opened"},
        {**FIXTURE[0], "id": "2001", "payload": {"issue": issue(7, "alice")}},
        {**FIXTURE[0], "id": "2002", "payload": {"action": "", "issue": issue(7, "alice")}},
        {**FIXTURE[0], "id": "2003", "payload": {"action": 5, "issue": issue(7, "alice")}},
        {**FIXTURE[0], "id": "2004", "payload": {"action": "labeled", "issue": issue(7, "alice")}},
        {**FIXTURE[11], "payload": "x"},  # a PushEvent has no action: skipped, as ever
    ]
    path = tmp_path / "2015-01-01-12.json"
    path.write_bytes(b"\n".join(orjson.dumps(item) for item in lines) + b"\n")
    source = GhArchive([path])
    records = list(source.records())
    assert [(r.source, r.data) for r in records] == [
        (f"2015-01-01-12.json:{n}", Rejection(RejectCode.MALFORMED_ROW, "no payload.action"))
        for n in (1, 2, 3, 4)
    ]
    assert source.stats.skipped == Counter({"IssuesEvent/labeled": 1, "PushEvent": 1})


def test_skipped_types_are_counted_printable(tmp_path: Path) -> None:
    # The counts are printed: a type from the file must not bring a terminal's escape
    # sequences (clear the screen, set the title) or a megabyte along.
    lines = [
        {**FIXTURE[11], "type": "\x1b[2J\x1b]0;owned\x1b\\Event"},
        {**FIXTURE[11], "type": "IssuesEvent", "payload": {"action": "\u009b31m"}},
        {**FIXTURE[11], "type": "X" * 5000},
    ]
    path = tmp_path / "2015-01-01-12.json"
    path.write_bytes(b"\n".join(orjson.dumps(item) for item in lines) + b"\n")
    source = GhArchive([path])
    assert list(source.records()) == []
    assert source.stats.skipped == Counter(
        {
            "\ufffd[2J\ufffd]0;owned\ufffd\\Event": 1,
            "IssuesEvent/\ufffd31m": 1,
            "X" * 99 + "\u2026": 1,
        }
    )


# -- the real GH Archive hour ----------------------------------------------


@pytest.fixture(scope="module")
def real() -> tuple[GhArchive, list[Record], list[dict[str, Any]]]:
    paths = sorted(DATA.glob("*.json.gz"))
    if not paths:
        pytest.skip(f"the shared real data is not at {DATA.resolve()} (a GH Archive hour)")
    source = GhArchive(paths)
    source.open()
    raw: list[dict[str, Any]] = []
    for path in paths:
        with gzip.open(path, "rt") as lines:
            raw.extend(json.loads(line) for line in lines)
    return source, list(source.records()), raw


def test_real_hour_maps_as_an_independent_count_says(
    real: tuple[GhArchive, list[Record], list[dict[str, Any]]],
) -> None:
    source, records, raw = real
    kinds = Counter((e["type"], e["payload"].get("action")) for e in raw)
    events = [r.data for r in records if isinstance(r.data, Event)]
    made = Counter(e.event_type.value for e in events)

    def by_author(e: dict[str, Any], key: str) -> bool:
        return bool(e["actor"]["login"] == e["payload"][key]["user"]["login"])

    review_by_author = sum(
        by_author(e, "pull_request") for e in raw if e["type"] == "PullRequestReviewCommentEvent"
    )
    assert len(raw) == source.stats.events == 8273
    assert made == {
        "ticket_opened": kinds["IssuesEvent", "opened"],
        "ticket_resolved": kinds["IssuesEvent", "closed"],
        "ticket_reopened": kinds["IssuesEvent", "reopened"],
        "ticket_replied": kinds["IssueCommentEvent", "created"] + review_by_author,
        "post_submitted": kinds["PullRequestEvent", "opened"],
        "post_reviewed": kinds["PullRequestReviewCommentEvent", "created"] - review_by_author,
    }
    assert made == {
        "ticket_opened": 236, "ticket_resolved": 119, "ticket_reopened": 6,
        "ticket_replied": 574 + 10, "post_submitted": 189, "post_reviewed": 40,
    }  # fmt: skip
    assert len(records) == len(events) == 1174 and not source.stats.malformed
    assert source.stats.skipped.total() == 8273 - 1174
    assert source.stats.skipped["PushEvent"] == kinds["PushEvent", None] == 4284
    assert len({e.event_id for e in events}) == len(events)
    assert len({e.channel_id for e in events}) == len(source.stats.repositories) == 671

    comments = [e for e in raw if e["type"] == "IssueCommentEvent"]
    roles = Counter(e.actor_role.value for e in events if e.event_type is EventType.TICKET_REPLIED)
    assert roles["customer"] == sum(by_author(e, "issue") for e in comments) + review_by_author
    assert roles == {"agent": 382, "customer": 189 + 10, "bot": 3}


def test_real_hour_requests_and_first_responses(
    real: tuple[GhArchive, list[Record], list[dict[str, Any]]],
) -> None:
    """Issues are answered by others' comments, pull requests by others' review comments."""
    source, records, raw = real
    events = [r.data for r in records if isinstance(r.data, Event)]
    answers = {EventType.TICKET_OPENED: EventType.TICKET_REPLIED,
               EventType.POST_SUBMITTED: EventType.POST_REVIEWED}  # fmt: skip
    opened = {e.conversation_id: e for e in events if e.event_type in answers}
    answered = {
        e.conversation_id
        for e in events
        if e.conversation_id in opened
        and e.event_type is answers[opened[e.conversation_id].event_type]
        and e.actor_role is ActorRole.AGENT
        and e.occurred_at >= opened[e.conversation_id].occurred_at
    }
    # the same from the raw file: (repository, number) -> the GitHub event type that answers
    opened_raw: dict[tuple[str, int], str] = {}
    for e in raw:
        action = (e["type"], e["payload"].get("action"))
        if action == ("IssuesEvent", "opened"):
            opened_raw[e["repo"]["name"], e["payload"]["issue"]["number"]] = "IssueCommentEvent"
        elif action == ("PullRequestEvent", "opened"):
            number = e["payload"]["pull_request"]["number"]
            opened_raw[e["repo"]["name"], number] = "PullRequestReviewCommentEvent"
    answered_raw: set[tuple[str, int]] = set()
    for e in raw:
        key = "issue" if e["type"] == "IssueCommentEvent" else "pull_request"
        login = e["actor"]["login"]
        thread = (e["repo"]["name"], e["payload"].get(key, {}).get("number"))
        if (
            opened_raw.get(thread) == e["type"]
            and login != e["payload"][key]["user"]["login"]
            and not login.endswith(("[bot]", "-bot"))
        ):
            answered_raw.add(thread)
    assert len(opened) == len(opened_raw) == source.stats.requests == 236 + 189
    # Within the hour, 11 issues got a first response, no pull request a review.
    assert len(answered) == len(answered_raw) == 11
    assert {opened[c].event_type for c in answered} == {EventType.TICKET_OPENED}
