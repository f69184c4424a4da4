"""History numbering, what each update deployed, and rollback target selection, on recorded
`pulumi stack history --json --show-secrets` output (no engine)."""
import json
from pathlib import Path

import pytest

from infra.ops.errors import BadUsage, Refused
from infra.ops.history import latest_update, parse_history, select_rollback_target
from infra.ops.stack_config import ConfigEntry

FIXTURES = Path(__file__).parent / "fixtures" / "history"
WEBHOOK = "https://hooks.clpr.localhost/deploys/local-production"


def recorded(name: str) -> list[dict]:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def file_backend():
    return parse_history(recorded("local-production.file-backend.json"))


def test_file_backend_entries_are_numbered_oldest_first_and_listed_newest_first(file_backend):
    assert [(r.number, r.kind, r.result) for r in file_backend] == [
        (4, "update", "failed"),
        (3, "refresh", "succeeded"),
        (2, "update", "succeeded"),
        (1, "update", "succeeded"),
    ]
    assert file_backend[-1].message == "deploy v1"


def test_backend_versions_win_over_positions():
    records = parse_history(recorded("local-production.cloud-versions.json"))
    assert [r.number for r in records] == [14, 13, 12, 11]


def test_each_update_shows_the_app_versions_of_its_config(file_backend):
    by_number = {r.number: r for r in file_backend}
    assert by_number[1].app_versions() == {"backend": "1.4.2", "frontend": "2.1.0"}
    assert by_number[2].app_versions() == {
        "backend": "1.5.0",
        "frontend": "sha256:4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b",
    }
    # The failed update's image had no tag: shown whole rather than hidden.
    assert by_number[4].app_versions()["backend"] == "ghcr.io/clpr-tv/backend"


def test_git_commit_and_dirty_flag_come_from_the_update_environment(file_backend):
    by_number = {r.number: r for r in file_backend}
    assert by_number[4].git_dirty is True and by_number[4].git_commit.endswith("+dirty")
    assert by_number[2].git_dirty is False and len(by_number[2].git_commit) == 12
    assert by_number[1].git_head != by_number[2].git_head


def test_config_keeps_structure_and_secret_plaintext(file_backend):
    v1 = file_backend[-1].config
    assert v1["clipper:apps"].structured and v1["clipper:apps"].value["backend"]["replicas"] == 1
    assert v1["clipper:notificationWebhook"] == ConfigEntry(WEBHOOK, secret=True)
    assert v1["clipper:environment"] == ConfigEntry("production")


def test_json_output_has_no_secret_values(file_backend):
    text = json.dumps([r.to_json() for r in file_backend])
    assert WEBHOOK not in text
    assert json.loads(text)[0]["appVersions"]["backend"] == "ghcr.io/clpr-tv/backend"


def test_latest_update_skips_refreshes(file_backend):
    assert latest_update(file_backend).number == 4
    assert latest_update(file_backend[1:]).number == 2


@pytest.mark.parametrize("steps,expected", [(1, 2), (2, 1)])
def test_steps_walk_back_successful_updates_from_the_newest_update(file_backend, steps, expected):
    # Newest update (4) failed: --steps 1 undoes it, back to the last good one.
    assert select_rollback_target(file_backend, steps=steps).number == expected


def test_steps_from_a_successful_newest_update_skip_it(file_backend):
    without_failed = file_backend[1:]
    assert select_rollback_target(without_failed, steps=1).number == 1


def test_to_picks_the_numbered_update(file_backend):
    target = select_rollback_target(file_backend, to=1)
    assert target.message == "deploy v1"
    assert target.label.startswith("update 1 (")


def test_rolling_back_to_a_failed_update_is_refused(file_backend):
    with pytest.raises(Refused, match="update 4 .* failed: rolling back to a configuration that did not deploy"):
        select_rollback_target(file_backend, to=4)


def test_rolling_back_to_a_refresh_is_refused(file_backend):
    with pytest.raises(Refused, match="is a refresh, not an update"):
        select_rollback_target(file_backend, to=3)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"to": 9}, r"there is no update 9 in this stack's history \(numbers: 1..4\)"),
        ({"steps": 3}, r"--steps 3: only 2 successful update\(s\) before the newest"),
        ({}, "give exactly one of --to N or --steps K"),
        ({"to": 1, "steps": 1}, "give exactly one of --to N or --steps K"),
    ],
)
def test_out_of_range_targets_are_bad_usage(file_backend, kwargs, message):
    with pytest.raises(BadUsage, match=message):
        select_rollback_target(file_backend, **kwargs)


def test_empty_history_is_bad_usage():
    with pytest.raises(BadUsage, match="no updates to roll back"):
        select_rollback_target([], steps=1)
    with pytest.raises(BadUsage, match="the stack has no history"):
        select_rollback_target([], to=1)
