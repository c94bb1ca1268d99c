"""One sentence everywhere (SQLite and PostgreSQL, no browser): the API's alert object, the email
sent for the alert and the first line of its page carry the same headline, with the size of the
change; lists and timelines are in world dates."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from phase4.alerts.notify import notify_pending
from phase4.alerts.notify.sink import LocalSMTPSink
from tests.alerts.conftest import settings_for
from tests.conftest import Fixture
from tests.ui.data import UiData
from tests.ui.test_ui_http import login


def _first_heading(page: str) -> str:
    found = re.search(r'<h1 id="headline">(.*?)</h1>', page, re.S)
    assert found, page[:2000]
    return html.unescape(found.group(1)).strip()


def test_the_api_the_email_and_the_alert_page_say_the_same_sentence(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    alert_id = ui_data.drift_alert
    api = ui_client.get(f"/v1/alerts/{alert_id}", headers=world.auth(world.viewer)).json()
    sentence = api["headline"]
    # the site's liver SUVmean 25% high: said with its size, interval and world dates
    assert sentence.startswith("Liver SUVmean at site-b rose "), sentence
    assert "% (95% CI " in sentence and "(detected " in sentence
    assert api["evidence"]["headline"] == sentence
    assert api["detected"] is not None and api["change_began"] is not None
    assert api["delay_days"] == api["evidence"]["change"]["delay_days"]

    login(ui_client, world.reviewer)
    assert _first_heading(ui_client.get(f"/ui/alerts/{alert_id}").text) == sentence

    with LocalSMTPSink() as sink:
        notify_pending(world.engine, settings_for(sink, digest_threshold=100))
        mails = [
            m
            for m in sink.messages
            if str(m.message["X-Phase4-Alert-Ids"]).split(",") == [str(alert_id)]
        ]
    assert mails
    for mail in mails:
        assert mail.part("plain").splitlines()[0] == sentence
        assert mail.subject.startswith("[phase4 WARNING] Liver SUVmean at site-b rose ")
        assert sentence.split("; linked to:")[0].rstrip(".") in mail.subject


def test_alert_lists_show_world_dates_not_processing_times(
    ui_client: TestClient, world: Fixture, ui_data: UiData
) -> None:
    login(ui_client, world.reviewer)
    page = ui_client.get("/ui/alerts?status=all").text
    head = page.split("<tbody>")[0]
    assert "Change began" in head and "Detected" in head and "Delay" in head
    assert ">Opened<" not in head
    listed = ui_client.get("/v1/alerts", headers=world.auth(world.viewer)).json()
    detected = [a["detected"] for a in listed if a["detected"] is not None]
    assert detected == sorted(detected, reverse=True)  # latest detection first
