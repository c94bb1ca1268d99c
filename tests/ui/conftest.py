"""Dashboard fixtures: the monitor's app (which includes the /ui router) and its test data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from phase4.monitor.core.settings import Settings
from phase4.service import create_app
from tests.conftest import Fixture
from tests.ui.data import UiData, load


def ui_app(db_url: str, world: Fixture) -> FastAPI:
    return create_app(Settings(database_url=db_url, detection_interval_s=0), engine=world.engine)


@pytest.fixture
def ui_data(world: Fixture) -> UiData:
    return load(world)


@pytest.fixture
def ui_client(db_url: str, world: Fixture, ui_data: UiData) -> Iterator[TestClient]:
    with TestClient(ui_app(db_url, world), follow_redirects=False) as c:
        yield c
