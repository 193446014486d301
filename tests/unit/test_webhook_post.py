"""`post_json` against a real local HTTP server: which answers are retried, how long it waits, what it logs."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pipelines.notifications import post_json
from tests.webhook_server import TOKEN, Webhook


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.close()


def test_5xx_is_retried_with_doubling_pauses_and_given_up_after_three_tries(webhook: Webhook) -> None:
    webhook.answers = [500, 502, 503, 200]
    pauses: list[float] = []
    logged: list[str] = []
    assert not post_json(webhook.url, {"run_id": "r1"}, logged.append, sleep=pauses.append)
    assert pauses == [1.0, 2.0] and webhook.answers == [200] and webhook.posts == []
    assert "gave up after 3 tries" in logged[-1] and all(TOKEN not in line for line in logged)


def test_a_5xx_then_success_delivers_once(webhook: Webhook) -> None:
    webhook.answers = [503]
    pauses: list[float] = []
    assert post_json(webhook.url, {"run_id": "r2"}, lambda _: None, sleep=pauses.append)
    assert pauses == [1.0] and webhook.posts == [{"run_id": "r2"}]


def test_4xx_is_final(webhook: Webhook) -> None:
    webhook.answers = [403, 200]
    logged: list[str] = []
    assert not post_json(webhook.url, {"run_id": "r3"}, logged.append, sleep=lambda _: pytest.fail("4xx retried"))
    assert webhook.answers == [200] and "HTTP 403" in logged[0] and "not retried" in logged[0]


def test_a_refused_connection_is_retried_and_logged_without_the_url() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hooks/{TOKEN}"
    from resources.secrets import remember

    remember(url)
    pauses: list[float] = []
    logged: list[str] = []
    assert not post_json(url, {"run_id": "r4"}, logged.append, sleep=pauses.append)
    assert pauses == [1.0, 2.0] and len(logged) == 3
    assert all("could not be reached" in line and TOKEN not in line for line in logged)
