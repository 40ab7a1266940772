"""SlackNotifier driven through slack-sdk against the local fake Slack Web API."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from receiver.notifiers.base import Message, PermanentDeliveryError, TemporaryDeliveryError
from receiver.notifiers.slack import (
    InMemorySlackDirectory,
    SlackNotifier,
    build_slack_client,
    classify_slack_error,
)
from tests.fakes.slack_api import FakeSlackApi, slack_fake  # noqa: F401  (fixture)

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*FIRING* model drift"}}]
RESOLVED_BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*RESOLVED* model drift"}}]


def dm(recipient: str = "alice@example.com", **kwargs: object) -> Message:
    fields: dict = {"channel": "slack", "recipient": recipient, "subject": "drift", "text": "firing"}
    return Message(**(fields | kwargs))


@pytest.fixture
async def notifier(slack_fake: FakeSlackApi) -> AsyncIterator[SlackNotifier]:  # noqa: F811
    notifier = SlackNotifier(build_slack_client(slack_fake.token, slack_fake.base_url, timeout=5))
    yield notifier
    await notifier.aclose()


def methods(fake: FakeSlackApi) -> list[str]:
    return [call.method for call in fake.calls]


async def test_email_recipient_is_looked_up_opened_and_posted(notifier, slack_fake):  # noqa: F811
    result = await notifier.send(dm(blocks=BLOCKS))

    assert methods(slack_fake) == ["users.lookupByEmail", "conversations.open", "chat.postMessage"]
    assert slack_fake.calls_to("users.lookupByEmail") == [{"email": "alice@example.com"}]
    assert slack_fake.calls_to("conversations.open") == [{"users": "UALICE01"}]
    assert slack_fake.calls_to("chat.postMessage") == [{"channel": "DUALICE01", "text": "firing", "blocks": BLOCKS}]
    [posted] = slack_fake.messages
    assert result.provider_ref == {"channel": "DUALICE01", "ts": posted.ts}


async def test_directory_cache_skips_lookups_on_later_sends(slack_fake):  # noqa: F811
    directory = InMemorySlackDirectory()
    for _ in range(2):  # a second notifier sharing the directory, as after a restart with a DB
        notifier = SlackNotifier(build_slack_client(slack_fake.token, slack_fake.base_url, 5), directory)
        await notifier.send(dm())
        await notifier.send(dm())
        await notifier.aclose()

    assert methods(slack_fake) == ["users.lookupByEmail", "conversations.open"] + ["chat.postMessage"] * 4
    assert await directory.get("alice@example.com") == "DUALICE01"


async def test_user_id_recipient_skips_email_lookup(notifier, slack_fake):  # noqa: F811
    await notifier.send(dm("UBOB0002"))

    assert methods(slack_fake) == ["conversations.open", "chat.postMessage"]
    assert slack_fake.messages[0].channel == "DUBOB0002"


async def test_unusable_recipient_is_permanent_without_calling_slack(notifier, slack_fake):  # noqa: F811
    with pytest.raises(PermanentDeliveryError) as caught:
        await notifier.send(dm("#general"))
    assert caught.value.reason == "slack_invalid_recipient"
    assert slack_fake.calls == []


async def test_reply_goes_into_thread_then_original_is_updated(notifier, slack_fake):  # noqa: F811
    first = await notifier.send(dm(blocks=BLOCKS))
    reply = await notifier.send(
        dm(
            text="resolved",
            thread=first.provider_ref,
            update_blocks=RESOLVED_BLOCKS,
            update_text="resolved: drift",
        )
    )

    assert methods(slack_fake)[-2:] == ["chat.postMessage", "chat.update"]
    thread_ts = first.provider_ref["ts"]
    assert slack_fake.calls_to("chat.postMessage")[-1] == {
        "channel": "DUALICE01",
        "thread_ts": thread_ts,
        "text": "resolved",
    }
    assert slack_fake.calls_to("chat.update") == [
        {"channel": "DUALICE01", "ts": thread_ts, "blocks": RESOLVED_BLOCKS, "text": "resolved: drift"}
    ]
    original, posted_reply = slack_fake.messages
    assert (original.blocks, original.text) == (RESOLVED_BLOCKS, "resolved: drift")
    assert posted_reply.thread_ts == thread_ts
    assert reply.provider_ref == {"channel": "DUALICE01", "ts": posted_reply.ts, "thread_ts": thread_ts}


async def test_reply_without_update_blocks_does_not_update(notifier, slack_fake):  # noqa: F811
    first = await notifier.send(dm())
    await notifier.send(dm(text="resolved", thread=first.provider_ref))
    assert "chat.update" not in methods(slack_fake)


async def test_thread_without_slack_ids_posts_a_new_dm(notifier, slack_fake):  # noqa: F811
    result = await notifier.send(dm(thread={"logged": "1", "message_id": "log-1"}, update_blocks=RESOLVED_BLOCKS))
    assert methods(slack_fake)[-1] == "chat.postMessage"
    assert slack_fake.messages[0].thread_ts is None
    assert "thread_ts" not in result.provider_ref


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"error": "cant_update_message"}, "slack_cant_update_message"),
        ({"status": 500, "error": None}, "slack_http_500"),
    ],
)
async def test_failed_update_is_reported_not_raised(notifier, slack_fake, caplog, fault, reason):  # noqa: F811
    first = await notifier.send(dm())
    slack_fake.fail_next("chat.update", **fault)

    reply = await notifier.send(dm(text="resolved", thread=first.provider_ref, update_blocks=RESOLVED_BLOCKS))

    assert reply.provider_ref["update_error"] == reason
    assert len(slack_fake.messages) == 2  # the reply, posted exactly once
    assert any(r.levelno == logging.WARNING and reason in r.getMessage() for r in caplog.records)


async def test_rate_limit_is_temporary_with_retry_after_and_no_client_retry(notifier, slack_fake):  # noqa: F811
    await notifier.send(dm())
    slack_fake.rate_limit_next("chat.postMessage", retry_after=7)

    with pytest.raises(TemporaryDeliveryError) as caught:
        await notifier.send(dm())

    assert (caught.value.reason, caught.value.retry_after) == ("slack_ratelimited", 7.0)
    assert len(slack_fake.calls_to("chat.postMessage")) == 2  # slack-sdk did not retry on its own


@pytest.mark.parametrize(("error", "reason"), [("internal_error", "slack_internal_error"), (None, "slack_http_500")])
async def test_server_error_is_temporary(notifier, slack_fake, error, reason):  # noqa: F811
    slack_fake.fail_next("users.lookupByEmail", status=500, error=error)
    with pytest.raises(TemporaryDeliveryError) as caught:
        await notifier.send(dm())
    assert caught.value.reason == reason
    assert len(slack_fake.calls) == 1


async def test_dropped_post_is_temporary_and_not_retried(notifier, slack_fake):  # noqa: F811
    # slack-sdk's default handlers would retry this once; a retried post could appear twice in Slack.
    # (aiohttp itself retries an idempotent GET such as users.lookupByEmail once, which is harmless.)
    slack_fake.disconnect_next("chat.postMessage")
    with pytest.raises(TemporaryDeliveryError) as caught:
        await notifier.send(dm())
    assert caught.value.reason == "slack_network"
    assert len(slack_fake.calls_to("chat.postMessage")) == 1


async def test_unknown_email_is_permanent(notifier):
    with pytest.raises(PermanentDeliveryError) as caught:
        await notifier.send(dm("nobody@example.com"))
    assert caught.value.reason == "slack_users_not_found"


async def test_bad_token_is_permanent(slack_fake):  # noqa: F811
    notifier = SlackNotifier(build_slack_client("xoxb-wrong", slack_fake.base_url, 5))
    with pytest.raises(PermanentDeliveryError) as caught:
        await notifier.send(dm())
    await notifier.aclose()
    assert caught.value.reason == "slack_invalid_auth"


async def test_unreachable_slack_is_temporary():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    notifier = SlackNotifier(build_slack_client("xoxb-x", f"http://127.0.0.1:{port}/api/", 5))
    with pytest.raises(TemporaryDeliveryError) as caught:
        await notifier.send(dm())
    await notifier.aclose()
    assert caught.value.reason == "slack_network"


SECRET = "xoxb-4242-SECRET-do-not-leak"
FAULTS: dict[str, Callable[[FakeSlackApi], None]] = {
    "ratelimited": lambda fake: fake.rate_limit_next(retry_after=3),
    "server_error": lambda fake: fake.server_error_next(),
    "html_500": lambda fake: fake.fail_next(status=502, error=None),
    "disconnect": lambda fake: fake.disconnect_next("chat.postMessage"),
    "unknown_user": lambda fake: fake.fail_next("users.lookupByEmail", error="users_not_found"),
    "invalid_auth": lambda fake: setattr(fake, "token", "xoxb-the-real-one"),
}

EXPECTED_REASON = {
    "ratelimited": "slack_ratelimited",
    "server_error": "slack_internal_error",
    "html_500": "slack_http_502",
    "disconnect": "slack_network",
    "unknown_user": "slack_users_not_found",
    "invalid_auth": "slack_invalid_auth",
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_token_never_appears_in_errors_or_logs(slack_fake, caplog, fault):  # noqa: F811
    caplog.set_level(logging.DEBUG)  # slack-sdk logs requests and responses at DEBUG
    slack_fake.token = SECRET
    FAULTS[fault](slack_fake)
    notifier = SlackNotifier(build_slack_client(SECRET, slack_fake.base_url, 5))
    with pytest.raises(Exception) as caught:
        await notifier.send(dm())
    await notifier.aclose()

    exc = caught.value
    assert isinstance(exc, (TemporaryDeliveryError, PermanentDeliveryError))
    assert exc.reason == EXPECTED_REASON[fault]
    for text in (str(exc), exc.detail, exc.reason, repr(exc), caplog.text):
        assert SECRET not in text and "4242-SECRET" not in text


async def test_token_never_appears_when_update_fails(slack_fake, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    slack_fake.token = SECRET
    notifier = SlackNotifier(build_slack_client(SECRET, slack_fake.base_url, 5))
    first = await notifier.send(dm())
    slack_fake.server_error_next("chat.update")
    reply = await notifier.send(dm(thread=first.provider_ref, update_blocks=RESOLVED_BLOCKS))
    await notifier.aclose()
    assert SECRET not in caplog.text and SECRET not in json.dumps(reply.provider_ref)


@pytest.mark.parametrize(
    ("status", "error", "expected_type", "reason"),
    [
        (429, "ratelimited", TemporaryDeliveryError, "slack_ratelimited"),
        (200, "ratelimited", TemporaryDeliveryError, "slack_ratelimited"),
        (429, None, TemporaryDeliveryError, "slack_ratelimited"),
        (500, None, TemporaryDeliveryError, "slack_http_500"),
        (503, "service_unavailable", TemporaryDeliveryError, "slack_service_unavailable"),
        (200, "fatal_error", TemporaryDeliveryError, "slack_fatal_error"),
        (200, "request_timeout", TemporaryDeliveryError, "slack_request_timeout"),
        (200, "users_not_found", PermanentDeliveryError, "slack_users_not_found"),
        (200, "invalid_auth", PermanentDeliveryError, "slack_invalid_auth"),
        (200, "token_revoked", PermanentDeliveryError, "slack_token_revoked"),
        (200, "missing_scope", PermanentDeliveryError, "slack_missing_scope"),
        (200, "invalid_blocks", PermanentDeliveryError, "slack_invalid_blocks"),
        (200, "cannot_dm_bot", PermanentDeliveryError, "slack_cannot_dm_bot"),
        (200, "some_new_error", PermanentDeliveryError, "slack_some_new_error"),
        (200, "Weird Error!", PermanentDeliveryError, "slack_weird_error_"),
        (404, None, PermanentDeliveryError, "slack_http_404"),
    ],
)
def test_classify_slack_error(status, error, expected_type, reason):
    result = classify_slack_error(status, error, retry_after=5.0)
    assert type(result) is expected_type
    assert result.reason == reason


def test_retry_after_is_only_kept_for_rate_limits():
    assert classify_slack_error(429, "ratelimited", 9.0).retry_after == 9.0
    assert classify_slack_error(500, None, 9.0).retry_after is None


def test_built_client_has_no_retry_handlers():
    assert build_slack_client("xoxb-x", "http://127.0.0.1:1/api/", 5).retry_handlers == []


async def test_fake_accepts_form_encoded_calls(slack_fake):  # noqa: F811
    client = build_slack_client(slack_fake.token, slack_fake.base_url, 5)
    await client.api_call("chat.postMessage", data={"channel": "DUBOB0002", "text": "hi", "blocks": json.dumps(BLOCKS)})
    assert slack_fake.messages[0].blocks == BLOCKS
