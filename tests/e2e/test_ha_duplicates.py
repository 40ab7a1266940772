"""HA Alertmanager pairs send the same notifications twice; the receiver stores and notifies once.

Two groups (service=checkout with three alerts, service=search with two), routed by the receiver to two
people on Slack and email. The same alerts (same startsAt) go to both Alertmanagers through
POST /api/v2/alerts, then again with endsAt = now to resolve them.

- Unpeered pair (`--cluster.listen-address=`): each Alertmanager sends every group state on its own,
  so every webhook arrives twice (deterministic duplicates).
- Peered pair (gossiping nflog, short --cluster.peer-timeout) with the receiver stopped between firing
  and resolved and started again on the same port and database: both peers fail to deliver the
  resolved state, both retry, both get through once the receiver is back.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import receiver_values
from tests.e2e.processes import (
    Alertmanager,
    ReceiverProcess,
    alertmanager_config,
    api_alert,
    run_alertmanager,
    wait_cluster_ready,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GROUPS = {"checkout": ["i1", "i2", "i3"], "search": ["i1", "i2"]}
# Slack DM channel per recipient: the fake's DM ids are "D" + user id (admin from delivery_settings,
# bob from the fake's default users).
SLACK_DMS = {"admin@example.com": "DUADMIN01", "bob@example.com": "DUBOB0002"}
EMAILS = ["admin@example.com", "bob@example.com"]
GROUP_INTERVAL = 2.0
QUIET = 4 * GROUP_INTERVAL  # a few group_intervals in which nothing more may arrive
DEADLINE = 60.0


def drill_alerts(starts_at: datetime, ends_at: datetime | None = None) -> list[dict[str, Any]]:
    return [
        api_alert(
            {"alertname": "HADrill", "severity": "warning", "service": service, "instance": instance},
            starts_at=starts_at,
            ends_at=ends_at,
        )
        for service, instances in GROUPS.items()
        for instance in instances
    ]


def drill_receiver_values(slack_fake: Any, smtp_server: Any) -> dict[str, Any]:
    route = {"matchers": ["alertname=HADrill"], "slack": list(SLACK_DMS), "email": EMAILS}
    return receiver_values(slack_fake, smtp_server, routes=[route])


def post_to_all(managers: list[Alertmanager], alerts: list[dict[str, Any]]) -> None:
    for am in managers:
        am.post_alerts(alerts)


def expected_messages(states: int) -> int:
    return len(GROUPS) * len(SLACK_DMS) * states


def wait_for_messages(slack_fake: Any, smtp_server: Any, states: int) -> None:
    """Until every recipient has its messages for `states` state changes; then a quiet period."""
    want = expected_messages(states)
    wait_until(
        lambda: len(slack_fake.messages) >= want and len(smtp_server.received) >= want,
        DEADLINE,
        f"{want} Slack messages and {want} emails",
    )
    time.sleep(QUIET)


def posted_messages(slack_fake: Any) -> list[tuple[Any, str]]:
    """Each posted Slack message with the text it was posted with (before any chat.update)."""
    posts, messages = slack_fake.calls_to("chat.postMessage"), slack_fake.messages
    assert len(posts) == len(messages), "every chat.postMessage call should have posted a message"
    for post, message in zip(posts, messages, strict=True):
        assert (post["channel"], post.get("thread_ts")) == (message.channel, message.thread_ts)
    return [(message, str(post.get("text") or "")) for post, message in zip(posts, messages, strict=True)]


def assert_one_message_per_recipient_and_state(slack_fake: Any, smtp_server: Any, *, resolved: bool) -> None:
    """Slack and email: per recipient and group, one FIRING and (if `resolved`) one RESOLVED in its thread."""
    states = 2 if resolved else 1
    messages, mails = slack_fake.messages, smtp_server.received
    assert len(messages) == expected_messages(states), [(m.channel, m.text) for m in messages]
    assert len(mails) == expected_messages(states), [(m.rcpt_tos, m.message["Subject"]) for m in mails]

    # The receiver rewrites a firing message (chat.update) when its group resolves, so judge each
    # message by the text it was posted with.
    posted = posted_messages(slack_fake)
    updated = [(u["channel"], u["ts"]) for u in slack_fake.updates]
    for channel in SLACK_DMS.values():
        for service in GROUPS:
            size = len(GROUPS[service])
            about = [(m, text) for m, text in posted if m.channel == channel and f"service={service}" in text]
            firing = [(m, text) for m, text in about if text.startswith("FIRING")]
            done = [(m, text) for m, text in about if text.startswith("RESOLVED")]
            assert len(firing) == 1, (channel, service, [text for _, text in about])
            assert len(done) == (1 if resolved else 0), (channel, service, [text for _, text in about])
            (first, first_text), *_ = firing
            assert first.thread_ts is None and f"Firing ({size})" in first_text  # the whole group at once
            if resolved:
                reply, reply_text = done[0]
                assert reply.thread_ts == first.ts and f"Resolved ({size})" in reply_text
                assert updated.count((channel, first.ts)) == 1  # the firing message marked resolved once
            else:
                assert (channel, first.ts) not in updated

    for address in EMAILS:
        mine = [m.message for m in mails if m.rcpt_tos == [address]]
        by_group: dict[str, list[Any]] = defaultdict(list)
        for message in mine:
            by_group[str(message["X-Alert-Receiver-Group"])].append(message)
        assert len(by_group) == len(GROUPS), (address, list(by_group))
        for group, group_mails in by_group.items():
            firing = [m for m in group_mails if str(m["Subject"]).startswith("[FIRING")]
            done = [m for m in group_mails if str(m["Subject"]).startswith("[RESOLVED")]
            assert len(firing) == 1 and len(done) == (1 if resolved else 0), (address, group, len(group_mails))
            if resolved:
                assert done[0]["In-Reply-To"] == firing[0]["Message-ID"]


def assert_duplicates_recognised(receiver: ReceiverProcess, receipts: list[dict[str, Any]]) -> None:
    """Every group state was accepted once; each repeat of it is flagged, and listed by ?duplicate=true."""
    by_digest: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for receipt in receipts:
        by_digest[receipt["digest"]].append(receipt)
    for digest, same in by_digest.items():
        first, *later = sorted(same, key=lambda r: r["id"])
        assert first["duplicate"] is False, (digest, same)
        assert all(r["duplicate"] for r in later), (digest, same)
    accepted = Counter((r["group_key"], r["status"]) for r in receipts if not r["duplicate"])
    assert set(accepted.values()) == {1}, accepted
    assert len(accepted) == len(GROUPS) * 2  # firing and resolved, per group
    flagged = {r["id"] for r in receiver.get_all("/api/v1/receipts", duplicate="true", limit=100)}
    assert flagged == {r["id"] for r in receipts if r["duplicate"]}


def assert_history(receiver: ReceiverProcess) -> None:
    """Each alert stored once (one occurrence per label set), resolved, with firing → resolved events."""
    stored = receiver.get_all("/api/v1/alerts", alertname="HADrill", limit=100)
    assert len(stored) == sum(len(instances) for instances in GROUPS.values())
    assert len({a["fingerprint"] for a in stored}) == len(stored)
    assert {(a["labels"]["service"], a["labels"]["instance"]) for a in stored} == {
        (s, i) for s, instances in GROUPS.items() for i in instances
    }
    for alert in stored:
        assert alert["status"] == "resolved", alert
        detail = receiver.get(f"/api/v1/alerts/{alert['id']}")
        assert [e["kind"] for e in detail["events"]] == ["firing", "resolved"], detail["events"]
    sent = receiver.get_all("/api/v1/notifications", limit=100)
    assert len(sent) == expected_messages(2) * 2  # Slack and email
    assert {n["status"] for n in sent} == {"sent"}


def receipt_summary(receipts: list[dict[str, Any]], names: dict[str, str]) -> list[str]:
    return [
        f"{r['id']}:{r['status']}:{names.get(r['external_url'], r['external_url'])}:"
        f"{'dup' if r['duplicate'] else 'new'}:{r['alert_count']}"
        for r in sorted(receipts, key=lambda r: r["id"])
    ]


def test_unpeered_pair_duplicates_are_stored_and_notified_once(
    tmp_path: Path,
    slack_fake: Any,
    smtp_server: Any,
    alertmanager_bin: str,
    token_file: Path,
    start_receiver: Any,
) -> None:
    receiver = start_receiver(drill_receiver_values(slack_fake, smtp_server))
    config = alertmanager_config(f"{receiver.url}/webhook", token_file, group_by=["alertname", "service"])
    with (
        run_alertmanager(alertmanager_bin, tmp_path, config, name="am-a") as am_a,
        run_alertmanager(alertmanager_bin, tmp_path, config, name="am-b") as am_b,
    ):
        pair = [am_a, am_b]
        names = {am_a.url: "a", am_b.url: "b"}
        for am in pair:
            assert am.status()["cluster"]["status"] == "disabled"

        started = datetime.now(UTC)
        post_to_all(pair, drill_alerts(started))
        wait_for_messages(slack_fake, smtp_server, states=1)
        assert_one_message_per_recipient_and_state(slack_fake, smtp_server, resolved=False)

        post_to_all(pair, drill_alerts(started, ends_at=datetime.now(UTC)))
        wait_for_messages(slack_fake, smtp_server, states=2)
        counts = {names[am.url]: am.webhook_counts() for am in pair}

    assert_one_message_per_recipient_and_state(slack_fake, smtp_server, resolved=True)
    receipts = receiver.get_all("/api/v1/receipts", limit=100)
    assert_duplicates_recognised(receiver, receipts)
    # Unpeered, both Alertmanagers delivered every group state: the duplicates really came in.
    senders: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in receipts:
        senders[(r["group_key"], r["status"])].add(r["external_url"])
    assert senders and all(urls == {am_a.url, am_b.url} for urls in senders.values()), senders
    assert_history(receiver)
    print(f"\nunpeered pair: webhook attempts {counts}; receipts {receipt_summary(receipts, names)}")


def test_peered_pair_with_receiver_restart_between_firing_and_resolved(
    tmp_path: Path,
    slack_fake: Any,
    smtp_server: Any,
    alertmanager_bin: str,
    token_file: Path,
    start_receiver: Any,
) -> None:
    receiver = start_receiver(drill_receiver_values(slack_fake, smtp_server))
    config = alertmanager_config(f"{receiver.url}/webhook", token_file, group_by=["alertname", "service"])
    with run_alertmanager(alertmanager_bin, tmp_path, config, name="am-a", cluster=True) as am_a:
        assert am_a.cluster_address is not None
        with run_alertmanager(
            alertmanager_bin, tmp_path, config, name="am-b", cluster=True, peers=[am_a.cluster_address]
        ) as am_b:
            pair = [am_a, am_b]
            names = {am_a.url: "a", am_b.url: "b"}
            wait_cluster_ready(pair)

            started = datetime.now(UTC)
            post_to_all(pair, drill_alerts(started))
            wait_for_messages(slack_fake, smtp_server, states=1)
            assert_one_message_per_recipient_and_state(slack_fake, smtp_server, resolved=False)
            firing_receipts = receiver.get_all("/api/v1/receipts", limit=100)
            before = {names[am.url]: am.webhook_counts() for am in pair}

            # A rolling restart of the receiver while the alerts resolve: both peers fail to deliver
            # (the second one waits peer_timeout, finds no nflog entry for the resolved state, tries too).
            receiver.stop()
            post_to_all(pair, drill_alerts(started, ends_at=datetime.now(UTC)))
            wait_until(
                lambda: all(
                    am.webhook_counts()["failed_requests"] > before[names[am.url]]["failed_requests"] for am in pair
                ),
                DEADLINE,
                "both Alertmanagers failing to reach the stopped receiver",
            )
            during = {names[am.url]: am.webhook_counts() for am in pair}
            receiver.start()  # same port, same database

            wait_for_messages(slack_fake, smtp_server, states=2)
            after = {names[am.url]: am.webhook_counts() for am in pair}

    assert receiver.lives == 2
    assert_one_message_per_recipient_and_state(slack_fake, smtp_server, resolved=True)
    receipts = receiver.get_all("/api/v1/receipts", limit=100)
    assert_duplicates_recognised(receiver, receipts)
    # Both peers were retrying the resolved state when the receiver came back, so both got through:
    # the second delivery of each group is the duplicate the receiver had to recognise.
    resolved_senders: dict[str, set[str]] = defaultdict(set)
    for r in receipts:
        if r["status"] == "resolved":
            resolved_senders[r["group_key"]].add(r["external_url"])
    assert len(resolved_senders) == len(GROUPS)
    assert all(urls == {am_a.url, am_b.url} for urls in resolved_senders.values()), resolved_senders
    assert_history(receiver)
    print(
        f"\npeered pair: firing receipts {receipt_summary(firing_receipts, names)}; "
        f"webhook attempts before stop {before}, while down {during}, after restart {after}; "
        f"all receipts {receipt_summary(receipts, names)}"
    )
