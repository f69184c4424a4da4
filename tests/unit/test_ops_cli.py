"""The ops CLI without an engine: help, exit codes, confirmation, and the promote/rollback flows
against an in-memory stand-in for the Automation API layer (infra.ops.stacks)."""
import copy
import dataclasses
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from infra.ops import checks, cli, console, promotion, stacks
from infra.ops.checks import DriftedResource
from infra.ops.errors import BadUsage, Refused
from infra.ops.history import parse_history
from infra.ops.stack_config import ConfigEntry, parse_config

FIXTURES = Path(__file__).parent / "fixtures" / "history"
COMMANDS = ["history", "diff", "promote", "rollback", "preflight", "drift"]


def recorded_history():
    return parse_history(json.loads((FIXTURES / "local-production.file-backend.json").read_text()))


class FakeStacks:
    """What infra.ops.stacks would read from and write to the backend, in memory."""

    def __init__(self):
        records = recorded_history()
        by_number = {r.number: r for r in records}
        self.config = {
            "local-production": copy.deepcopy(parse_config(json.loads((FIXTURES / "local-production.config.json").read_text()))),
            "local-staging": copy.deepcopy(by_number[2].config),
        }
        self.history = {"local-production": records, "local-staging": [by_number[2], by_number[1]]}
        self.writes, self.previews, self.ups = [], [], []
        self.drifted = []

    def open_stack(self, name, work_dir=None):
        if name not in self.config:
            raise BadUsage(f"unknown stack {name!r}")
        return SimpleNamespace(name=name)

    def read_config(self, stack):
        return copy.deepcopy(self.config[stack.name])

    def write_config(self, stack, entries, remove=()):
        self.writes.append(stack.name)
        for key in remove:
            self.config[stack.name].pop(key, None)
        self.config[stack.name].update(copy.deepcopy(entries))

    def install(self, monkeypatch):
        monkeypatch.setattr(stacks, "open_stack", self.open_stack)
        monkeypatch.setattr(stacks, "history", lambda stack: self.history[stack.name])
        monkeypatch.setattr(stacks, "read_config", self.read_config)
        monkeypatch.setattr(stacks, "write_config", self.write_config)
        monkeypatch.setattr(stacks, "preview", lambda stack, policies, on_event=None: self.previews.append(stack.name))
        monkeypatch.setattr(stacks, "up", lambda stack, message, policies: self.ups.append((stack.name, message)))
        monkeypatch.setattr(stacks, "git_head", lambda work_dir=None: "0" * 40)
        monkeypatch.setattr(stacks, "stack_file", lambda stack: None)  # config-level put-back
        monkeypatch.setattr(promotion, "detect_drift", lambda stack: self.drifted)
        return self


@pytest.fixture
def fake(monkeypatch):
    return FakeStacks().install(monkeypatch)


@pytest.fixture
def terminal(monkeypatch):
    """Stdin is a terminal where the operator types `answer`."""
    answers = []

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Tty())
    monkeypatch.setattr("builtins.input", lambda prompt: answers.pop(0))
    return answers


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples_and_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "exit codes:" in text and "python -m infra.ops " + command in text


def test_top_level_help_lists_commands_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert all(command in text for command in COMMANDS)
    assert "2  bad usage" in text and "PULUMI_BACKEND_URL" in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["rollback", "--stack", "p", "--to", "0"], "argument --to: must be 1 or more"),
        (["rollback", "--stack", "p", "--to", "x"], "'x' is not a whole number"),
        (["rollback", "--stack", "p", "--to", "1", "--steps", "1"], "not allowed with argument"),
        (["rollback", "--stack", "p"], "one of the arguments --to --steps is required"),
        (["history"], "the following arguments are required: --stack"),
        (["explode"], "invalid choice"),
        (["history", "--stack", "p", "--js"], "unrecognized arguments: --js"),  # flags in full: no prefix of --json
    ],
)
def test_malformed_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["promote", "--from", "local-staging", "--to", "local-staging"], "--from and --to are both 'local-staging'"),
        (["diff", "--from", "local-staging", "--to", "nowhere"], "unknown stack 'nowhere'"),
        (["promote", "--from", "local-staging", "--to", "local-production", "--apps", "payments"], "unknown app(s) payments"),
        (["promote", "--from", "local-staging", "--to", "local-production", "--apps", " , "], "--apps: give one or more"),
        (["rollback", "--stack", "local-production", "--to", "9"], "there is no update 9"),
        (["rollback", "--stack", "nowhere", "--steps", "1"], "unknown stack 'nowhere'"),
    ],
)
def test_bad_arguments_exit_2_and_change_nothing(fake, argv, message, capsys):
    before = copy.deepcopy(fake.config)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert fake.config == before and not fake.writes and not fake.ups and not fake.previews


def test_work_dir_without_a_project_is_bad_usage(tmp_path, capsys):
    assert cli.main(["--work-dir", str(tmp_path), "history", "--stack", "x"]) == 2
    assert "no Pulumi.yaml there" in capsys.readouterr().err


def test_confirmation_needs_yes_or_a_terminal(monkeypatch, terminal):
    console.confirm("Deploy", assume_yes=True, stdin=io.StringIO())
    with pytest.raises(Refused, match="no terminal to ask on.*pass --yes"):
        console.confirm("Deploy", assume_yes=False, stdin=io.StringIO())
    terminal.append("yes")
    console.confirm("Deploy", assume_yes=False)
    terminal.append("n")
    with pytest.raises(Refused, match="not confirmed"):
        console.confirm("Deploy", assume_yes=False)


def test_history_table_numbers_and_versions(fake, capsys):
    assert cli.main(["history", "--stack", "local-production"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["#", "time", "kind", "result", "message", "git"]
    assert lines[2].startswith("4 ") and "failed" in lines[2]
    assert "backend 1.4.2, frontend 2.1.0" in lines[-1] and lines[-1].startswith("1 ")


def test_history_json(fake, capsys):
    assert cli.main(["history", "--stack", "local-production", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["number"] for e in entries] == [4, 3, 2, 1]
    assert entries[3]["appVersions"] == {"backend": "1.4.2", "frontend": "2.1.0"}


def test_rollback_restores_the_update_config_exactly_and_ups(fake, capsys):
    v1 = {r.number: r for r in recorded_history()}[1]
    fake.config["local-production"]["clipper:ingress"] = ConfigEntry({"controller": "gateway"}, structured=True)
    assert cli.main(["rollback", "--stack", "local-production", "--to", "1", "--yes", "--program", "head"]) == 0
    assert fake.config["local-production"] == v1.config
    assert fake.ups == [("local-production", f"rollback local-production to update 1 ({v1.start_time:%Y-%m-%d %H:%M:%S} UTC)")]
    out, err = capsys.readouterr()
    assert "apps then: backend 1.4.2, frontend 2.1.0" in out
    assert "HEAD is 000000000000" in err  # the update ran at another commit: said so


def test_rollback_without_terminal_or_yes_is_refused_and_config_put_back(fake, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO())
    before = copy.deepcopy(fake.config)
    assert cli.main(["rollback", "--stack", "local-production", "--steps", "1", "--program", "head"]) == 1
    assert "pass --yes" in capsys.readouterr().err
    assert fake.previews == ["local-production"] and not fake.ups
    assert fake.config == before


def test_declined_rollback_puts_config_back(fake, terminal):
    terminal.append("no")
    before = copy.deepcopy(fake.config)
    assert cli.main(["rollback", "--stack", "local-production", "--steps", "2"]) == 1
    assert fake.config == before and not fake.ups


def test_failed_preview_puts_config_back(fake, monkeypatch):
    def failing_preview(stack, policies, on_event=None):
        raise Refused("preview of local-production failed:\nerror: policy violation")

    monkeypatch.setattr(stacks, "preview", failing_preview)
    before = copy.deepcopy(fake.config)
    assert cli.main(["rollback", "--stack", "local-production", "--steps", "1", "--yes"]) == 1
    assert fake.config == before and not fake.ups


def test_staged_config_puts_the_stack_file_back_byte_for_byte(monkeypatch, tmp_path):
    path = tmp_path / "Pulumi.local-production.yaml"
    original = "# comment kept\nconfig:\n  clipper:apps: {backend: {image: 'b:1'}}\n"
    path.write_text(original)
    stack = SimpleNamespace(name="acme/local-production", workspace=SimpleNamespace(work_dir=str(tmp_path)))
    monkeypatch.setattr(stacks, "write_config", lambda stack, entries, remove=(): path.write_text("config: {}\n"))
    with pytest.raises(Refused):
        with stacks.staged_config(stack, {"clipper:apps": ConfigEntry({}, structured=True)}):
            assert path.read_text() == "config: {}\n"
            raise Refused("declined")
    assert path.read_text() == original
    with stacks.staged_config(stack, {}) as staged:
        staged.keep()
    assert path.read_text() == "config: {}\n"


def test_rollback_to_a_failed_update_is_refused_before_any_write(fake, capsys):
    assert cli.main(["rollback", "--stack", "local-production", "--to", "4", "--yes"]) == 1
    assert "did not deploy" in capsys.readouterr().err
    assert not fake.writes and not fake.ups


def test_promote_copies_images_and_records_the_versions(fake, capsys):
    fake.history["local-production"] = fake.history["local-production"][-1:]  # production runs v1
    fake.config["local-production"] = copy.deepcopy(fake.history["local-production"][0].config)
    assert cli.main(["promote", "--from", "local-staging", "--to", "local-production", "--apps", "backend", "--yes"]) == 0
    assert fake.ups == [("local-production", "promote local-staging -> local-production: backend 1.4.2 -> 1.5.0")]
    apps = fake.config["local-production"]["clipper:apps"].value
    assert apps["backend"]["image"] == "ghcr.io/clpr-tv/backend:1.5.0"
    assert apps["frontend"]["image"] == "ghcr.io/clpr-tv/frontend:2.1.0"
    assert fake.config["local-production"]["clipper:notificationWebhook"].secret


def test_promote_refuses_a_source_whose_last_update_failed(fake, capsys):
    fake.history["local-staging"] = recorded_history()
    assert cli.main(["promote", "--from", "local-staging", "--to", "local-production", "--yes"]) == 1
    assert "update 4" in capsys.readouterr().err and not fake.writes and not fake.ups


def test_promote_refuses_a_drifted_source(fake, capsys):
    newest = fake.history["local-staging"][0]
    in_cluster = dict(newest.config, **{"clipper:existing": ConfigEntry({"mode": "cluster"}, structured=True)})
    fake.history["local-staging"][0] = dataclasses.replace(newest, config=in_cluster)
    fake.drifted = [DriftedResource("urn:pulumi:s::clipper::kubernetes:apps/v1:Deployment::backend", "update", ("spec",))]
    assert cli.main(["promote", "--from", "local-staging", "--to", "local-production", "--yes"]) == 1
    captured = capsys.readouterr()
    assert "drifted from its recorded state" in captured.err
    assert "kubernetes:apps/v1:Deployment::backend" in captured.out
    assert not fake.writes and not fake.ups


def test_render_mode_sources_skip_the_drift_check(fake, capsys):
    fake.drifted = [DriftedResource("urn:x", "update", ())]  # would refuse if it were asked
    assert cli.main(["promote", "--from", "local-staging", "--to", "local-production", "--yes"]) == 0
    assert "render mode (no live state): drift check skipped" in capsys.readouterr().out


def test_promote_refuses_undeployed_source_changes(fake, capsys):
    apps = fake.config["local-staging"]["clipper:apps"].value
    apps["backend"]["image"] = "ghcr.io/clpr-tv/backend:9.9.9"
    assert cli.main(["promote", "--from", "local-staging", "--to", "local-production", "--yes"]) == 1
    assert "undeployed changes" in capsys.readouterr().err and not fake.writes


def test_diff_prints_the_plan_and_changes_nothing(fake, capsys):
    assert cli.main(["diff", "--from", "local-staging", "--to", "local-production"]) == 0
    out = capsys.readouterr().out
    assert "app backend" in out and "promotion would:" in out
    assert not fake.writes


def test_drift_exits_1_and_lists_resources(monkeypatch, fake, capsys):
    fake.config["local-production"]["clipper:existing"] = ConfigEntry({"mode": "cluster"}, structured=True)
    monkeypatch.setattr(
        checks, "detect_drift",
        lambda stack: [DriftedResource("urn:pulumi:s::clipper::kubernetes:core/v1:Service::frontend-service", "update", ("spec",))],
    )
    assert cli.main(["drift", "--stack", "local-production"]) == 1
    assert "kubernetes:core/v1:Service::frontend-service  update" in capsys.readouterr().out
    monkeypatch.setattr(checks, "detect_drift", lambda stack: [])
    assert cli.main(["drift", "--stack", "local-production"]) == 0


def test_drift_on_a_render_mode_stack_has_nothing_to_compare(fake, capsys):
    assert cli.main(["drift", "--stack", "local-production"]) == 0
    assert "render mode" in capsys.readouterr().out


def _config(environment):
    return {"clipper:environment": ConfigEntry(environment)}


@pytest.mark.parametrize(
    "stack,environment,expected",
    [
        ("production", "production", "policies/config/production.json"),
        ("staging", "staging", "policies/config/staging.json"),
        ("acme/dev", "development", "policies/config/staging.json"),
        ("local-production", "production", "policies/config/local.json"),
    ],
)
def test_policy_config_follows_the_target_environment(stack, environment, expected):
    options = stacks.policy_options(stack, _config(environment))
    assert options == {"policy_packs": ["policies"], "policy_pack_configs": [expected]}


def test_no_policy_pack_no_policy_options(tmp_path):
    assert stacks.policy_options("production", _config("production"), tmp_path) == {}


def test_preflight_marks_policy_violations_no_go(monkeypatch):
    def preview_with_violation(stack, policies, on_event=None):
        on_event(SimpleNamespace(policy_event=SimpleNamespace(
            policy_name="pods-non-root", message="runs as root\nmore", enforcement_level="mandatory")))
        raise Refused("preview failed")

    monkeypatch.setattr(stacks, "preview", preview_with_violation)
    preview, policy = checks.check_preview(SimpleNamespace(name="p"), {"policy_packs": ["policies"]})
    assert not preview.go and "mandatory policy" in preview.detail
    assert not policy.go and policy.detail == "pods-non-root: runs as root"


def test_table_keeps_columns_aligned_and_cells_on_one_line():
    text = console.table(["a", "long header"], [("x", "two\nlines"), ("wider", "")])
    lines = text.splitlines()
    assert lines[0] == "a      long header"
    assert lines[2] == "x      two / lines"
    assert lines[3] == "wider"
