"""CSAF ``remediations[].restart_required`` prefills a remediation request's expected downtime."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from conftest import OWNER, make_config

from bot.feeds.csaf_map import parse_csaf
from bot.views import AdvisoryView
from bot.workflows.advisory_triage import change_prefill
from storage.models import AdvisoryRecord
from tests.feeds.conftest import DATA


def bsi() -> dict[str, Any]:
    """The BSI sample, read when a test runs (collection must not need ../shared: the fresh-clone check)."""
    doc: dict[str, Any] = json.loads((DATA / "csaf" / "bsi-2022-0001.json").read_text())
    return doc


def with_restarts(*categories: str) -> dict[str, Any]:
    doc = copy.deepcopy(bsi())
    rems = doc["vulnerabilities"][0]["remediations"]
    template = rems[0]
    rems[:] = [{**template, "restart_required": {"category": c}} for c in categories]
    return doc


@pytest.mark.parametrize(
    ("categories", "restart", "words"),
    [
        ((), "", ""),
        (("none",), "none", "none expected (no restart)"),
        (("service", "none"), "service", "services restart; no host reboot"),
        (("vulnerable_component", "machine"), "machine", "the machine restarts"),
        (("zone",), "machine", "the machine restarts"),
    ],
)
def test_the_worst_restart_category_prefills_the_expected_downtime(
    categories: tuple[str, ...], restart: str, words: str
) -> None:
    advisory = parse_csaf(with_restarts(*categories) if categories else bsi())
    assert advisory.restart == restart
    view = AdvisoryView(record=AdvisoryRecord(), advisory=advisory, matches=[])
    assert change_prefill(make_config(), view, requester=OWNER).expected_downtime == words
