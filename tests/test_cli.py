"""The `turnout` command run for real (a subprocess): outputs, exit codes, and never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from turnout.schema import schema_json

ROOT = Path(__file__).resolve().parents[1]
ROUTES = ROOT / "routes.yaml"
KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "XAI_API_KEY", "OLLAMA_URL")


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in KEYS}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "turnout.cli", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_repo_file_prints_the_summary_and_warnings():
    """A valid file exits 0 with the one-line summary on stdout and disabled providers on stderr."""
    result = run("validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "routes.yaml: valid — 6 routes, 10 models, 3 pools, 7 providers (4 disabled)\n"
    assert "warning: providers.openai.api_key: provider 'openai' is disabled" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_invalid_file_lists_every_problem(tmp_path: Path):
    """An invalid file exits 1 with each problem as FILE:LINE:COL on stderr."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nproviders:\n  mock: {driver: mokc}\nmodels:\n  echo: {provider: mock}\n"
        "routes:\n  chat: {chain: [ecoh]}\n",
        encoding="utf-8",
    )
    result = run("validate", str(bad))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{bad}:3:18: providers.mock.driver: unknown driver 'mokc'; did you mean 'mock'?" in lines
    assert f"{bad}:7:18: routes.chat.chain[0]: unknown pool or model 'ecoh'; did you mean 'echo'?" in lines
    assert result.stdout == ""


def test_validate_binary_garbage_is_a_located_error_not_a_traceback(tmp_path: Path):
    """Random bytes give exit 1 and a located message."""
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(b"version: 1\n\x00\xff\xfe{[")
    result = run("validate", str(junk))
    assert result.returncode == 1
    assert f"{junk}:2:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("target", ["missing.yaml", "."], ids=["missing", "directory"])
def test_unreadable_file_exits_2_naming_it(target: str):
    """A file that cannot be read is a usage problem: exit 2 and the path in the message."""
    result = run("validate", target)
    assert result.returncode == 2
    assert f"turnout: cannot read {target}:" in result.stderr


@pytest.mark.parametrize("args", [("validate", "--bogus"), ("frobnicate",), ()], ids=["flag", "command", "none"])
def test_usage_errors_exit_2(args: tuple[str, ...]):
    """Unknown flags, unknown commands and no command at all exit 2 with argparse's usage."""
    result = run(*args)
    assert result.returncode == 2
    assert "usage: turnout" in result.stderr


@pytest.mark.parametrize("command", ["validate", "explain", "schema"])
def test_help_for_each_command(command: str):
    """`turnout COMMAND --help` prints that command's usage and exits 0."""
    result = run(command, "--help")
    assert result.returncode == 0
    assert f"usage: turnout {command}" in result.stdout


def test_explain_json_is_deployment_oriented_and_masks_keys():
    """`explain --json` gives routes -> steps -> deployments and never the key's value."""
    result = run("explain", "--json", env={"OPENAI_API_KEY": "sk-cli-SECRET-9999"})
    assert result.returncode == 0, result.stderr
    assert "sk-cli-SECRET-9999" not in result.stdout + result.stderr
    data = json.loads(result.stdout)
    chat = next(r for r in data["routes"] if r["name"] == "chat")
    first = chat["steps"][0]
    assert (first["target"], first["kind"], first["strategy"]) == ("small", "pool", "weighted")
    mini = first["deployments"][0]
    assert mini["key"] == "openai/gpt-4o-mini" and mini["enabled"] is True and mini["weight"] == 3.0
    assert mini["price"]["input"] == "0.15"
    haiku = first["deployments"][1]
    assert haiku["enabled"] is False and "ANTHROPIC_API_KEY is not set" in haiku["disabled_reason"]
    assert chat["policy"]["on_error"]["bad_request"] == "fail"
    assert next(p for p in data["providers"] if p["name"] == "openai")["api_key"] == "***"


def test_explain_text_shows_policies_and_disabled_reasons():
    """The text report names each route, its effective timeouts and why providers are disabled."""
    result = run("explain", str(ROUTES))
    assert result.returncode == 0, result.stderr
    assert "route smart" in result.stdout
    assert "deadline 2m" in result.stdout  # the route's override
    assert "mid-stream failure: continue" in result.stdout
    assert "DISABLED: api_key is empty (GEMINI_API_KEY is not set)" in result.stdout


def test_explain_invalid_file_exits_1(tmp_path: Path):
    """Explain refuses an invalid file the same way validate does."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\n", encoding="utf-8")
    result = run("explain", str(bad))
    assert result.returncode == 1
    assert "missing required key 'providers'" in result.stderr


def test_schema_prints_the_shipped_schema():
    """`turnout schema` prints exactly the packaged JSON Schema."""
    result = run("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == schema_json()


def test_validate_reports_driver_option_errors_with_their_location(tmp_path: Path):
    """Options outside a driver's schema fail validate at their key; what only the driver's constructor rejects
    (found when the graph is compiled) is located at the provider."""
    pytest.importorskip("turnout.router.compile")
    bad = tmp_path / "opts.yaml"
    bad.write_text(
        "version: 1\nproviders:\n  echo: {driver: mock, options: {bogus: 1}}\nmodels:\n  echo: {provider: echo}\n"
        "routes:\n  chat: {chain: [echo]}\n",
        encoding="utf-8",
    )
    result = run("validate", str(bad))
    assert result.returncode == 1
    assert f"{bad}:3:34: providers.echo.options.bogus: unknown option 'bogus'" in result.stderr
    bad.write_text(bad.read_text().replace("driver: mock, options: {bogus: 1}", "driver: azure, base_url: https://x"))
    result = run("validate", str(bad))
    assert result.returncode == 1
    assert f"{bad}:3:9: providers.echo:" in result.stderr
    assert "api_version is required" in result.stderr


def test_serve_is_registered_when_the_sidecar_provides_it():
    """`turnout --help` lists serve exactly when turnout.server.cli offers add_serve_parser."""
    result = run("--help")
    assert result.returncode == 0
    try:
        from turnout.server.cli import add_serve_parser  # noqa: F401
    except ImportError:
        assert "serve" not in result.stdout
    else:
        assert "serve" in result.stdout


COUNTING_DRIVER = '''
import os
from turnout.drivers.mock import MockDriver


class CountingDriver(MockDriver):
    """The mock driver, appending a line to $TURNOUT_TEST_BUILT each time one is built (once per compile)."""

    def __init__(self, spec, *args, **kwargs):
        with open(os.environ["TURNOUT_TEST_BUILT"], "a") as fh:
            fh.write(spec.name + "\\n")
        super().__init__(spec, *args, **kwargs)
'''


def test_explain_compiles_the_file_once(tmp_path: Path):
    """`turnout explain` builds each provider's driver once: the graph that validated the file is the one shown."""
    site = tmp_path / "site"
    (site / "counting_driver-0.dist-info").mkdir(parents=True)
    (site / "counting_driver-0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: counting-driver\n")
    (site / "counting_driver-0.dist-info" / "entry_points.txt").write_text(
        "[turnout.drivers]\ncounting = counting_driver:CountingDriver\n"
    )
    (site / "counting_driver.py").write_text(COUNTING_DRIVER)
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "version: 1\nproviders:\n  p: {driver: counting}\nmodels:\n  m: {provider: p}\nroutes:\n  r: {chain: [m]}\n"
    )
    built = tmp_path / "built.txt"
    env = {"PYTHONPATH": str(site), "TURNOUT_TEST_BUILT": str(built)}
    result = run("explain", str(routes), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["routes"][0]["steps"][0]["deployments"][0]["driver"] == "counting"
    assert built.read_text().splitlines() == ["p"]
