"""Webhooks without a server: signatures verified by the standardwebhooks package, the address
guard, the retry schedule, and docs/webhooks.md against the code that sends the payloads."""

import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from crm_graphql.domain.webhooks import RetrySchedule, WebhookEvent
from crm_graphql.webhooks import reference
from crm_graphql.webhooks.addresses import IPAddress, UnsafeUrl, UrlPolicy
from crm_graphql.webhooks.delivery import WebhookDispatcher
from crm_graphql.webhooks.payloads import EVENT_FIELDS, example_payloads
from crm_graphql.webhooks.signing import new_secret, signed_headers

BODY = b'{"id":"evt_1","type":"LEAD_CREATED"}'


def now() -> int:
    return int(datetime.now(UTC).timestamp())


def test_a_signed_delivery_verifies_with_the_standardwebhooks_library():
    secret = new_secret()
    headers = signed_headers([secret], "evt_1", now(), BODY)
    assert Webhook(secret).verify(BODY, headers) == {"id": "evt_1", "type": "LEAD_CREATED"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"1", b"2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_during_a_rotation_both_secrets_verify():
    old, new = new_secret(), new_secret()
    headers = signed_headers([new, old], "evt_1", now(), BODY)
    assert len(headers["webhook-signature"].split()) == 2
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)


def resolving_to(*addresses: str) -> UrlPolicy:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in addresses]

    return UrlPolicy(enforce=True, resolver=resolver)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "::1",
        "10.1.2.3",  # private
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",  # link-local: the cloud metadata service
        "fd00:ec2::254",  # AWS's IPv6 metadata address (unique local)
        "fe80::1",
        "100.64.0.1",  # shared (carrier-grade NAT)
        "0.0.0.0",
        "224.0.0.1",  # multicast
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
    ],
)
async def test_production_refuses_urls_that_resolve_to_non_public_addresses(address: str):
    with pytest.raises(UnsafeUrl, match="non-public address"):
        await resolving_to(address).target("https://hooks.example.com/x")
    # One internal address among public ones is enough to refuse.
    with pytest.raises(UnsafeUrl, match="non-public address"):
        await resolving_to("93.184.216.34", address).target("https://hooks.example.com/x")


async def test_the_attempt_connects_to_the_checked_address_under_the_original_name():
    target = await resolving_to("93.184.216.34").target("https://hooks.example.com:8443/x?a=1")
    assert target.url == "https://93.184.216.34:8443/x?a=1"
    assert target.headers == {"host": "hooks.example.com:8443"}
    assert target.extensions == {"sni_hostname": "hooks.example.com"}
    target = await resolving_to("2606:2800:220:1::1").target("https://hooks.example.com/")
    assert target.url == "https://[2606:2800:220:1::1]/"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/x", "must use https"),
        ("ftp://hooks.example.com/x", "http or https"),
        ("/relative", "http or https"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("https://hooks.example.com:99999/", "Not a valid URL"),
    ],
)
async def test_production_refuses_other_urls(url: str, why: str):
    with pytest.raises(UnsafeUrl, match=why):
        await resolving_to("93.184.216.34").target(url)


async def test_allowed_hosts_and_development_skip_the_address_check():
    allowed = UrlPolicy(enforce=True, allowed_hosts=frozenset({"127.0.0.1"}))
    assert (await allowed.target("http://127.0.0.1:9/x")).url == "http://127.0.0.1:9/x"
    with pytest.raises(UnsafeUrl):
        await allowed.target("https://localhost:9/x")  # resolves to loopback, not named
    development = UrlPolicy(enforce=False)
    assert (await development.target("http://localhost:9/x")).url == "http://localhost:9/x"


async def test_an_attempt_is_refused_when_the_name_now_resolves_inside():
    """Registered while public, the name later points at the metadata service: the attempt
    refuses it before connecting."""
    answers = iter([["93.184.216.34"], ["169.254.169.254"]])

    async def resolver(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in next(answers)]

    policy = UrlPolicy(enforce=True, resolver=resolver)
    await policy.target("https://hooks.example.com/x")  # registration
    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    dispatcher = WebhookDispatcher(engine, policy, RetrySchedule(), 1.0, 1, 1.0, 1.0)
    await dispatcher.start()
    try:
        outcome = await dispatcher.send(
            "https://hooks.example.com/x", "evt_1", BODY, [new_secret()]
        )
    finally:
        await dispatcher.stop()
        await engine.dispose()
    assert not outcome.delivered
    assert outcome.error is not None
    assert "refused" in outcome.error
    assert "169.254.169.254" in outcome.error


def test_retries_span_about_a_day_with_jitter_then_stop():
    schedule = RetrySchedule()
    total = sum(schedule.nominal_delays(), timedelta())
    assert timedelta(hours=20) <= total <= timedelta(hours=28)
    rng = random.Random(7)
    for attempts in range(1, schedule.max_attempts):
        delay = schedule.delay_after(attempts, rng)
        nominal = schedule.nominal_delay(attempts)
        assert delay is not None
        assert nominal * 0.8 <= delay <= nominal * 1.2
    assert schedule.delay_after(schedule.max_attempts) is None
    spread = {schedule.delay_after(3, rng) for _ in range(20)}
    assert len(spread) > 1


def test_the_documented_events_payloads_and_schedule_are_the_codes():
    """docs/webhooks.md: regenerate with `python -m crm_graphql.webhooks.reference`."""
    assert reference.documented() == reference.render()


def test_every_event_has_a_payload_and_example():
    examples = example_payloads()
    assert set(EVENT_FIELDS) == set(examples) == set(WebhookEvent)
    for event, example in examples.items():
        assert example["type"] == event
        assert list(example["data"]) == [f.name for f in EVENT_FIELDS[event]]
