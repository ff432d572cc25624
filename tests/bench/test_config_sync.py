"""bench.config_sync: the derived values land in cdk.json where a reader expects them, nothing else moves."""

from __future__ import annotations

import json

from bench import config_sync
from bench.decisions import CONFIG_KEYS


def _derived(**prod_changes) -> dict:
    dev = {key: 1 for key in CONFIG_KEYS}
    dev["instance_type"] = "ml.g4dn.xlarge"
    return {"dev": dev, "prod": {**dev, **prod_changes}}


def _context() -> dict:
    return {
        "dogbreed:defaults": {"instance_type": "ml.g4dn.xlarge", "max_instances": 9, "alarm_email": ""},
        "dogbreed:stages": {"dev": {}, "prod": {"production": True, "max_instances": 6, "min_instances": 2}},
    }


def test_dev_values_become_defaults_and_prod_keeps_only_what_differs():
    written = config_sync.apply(_context(), _derived(max_instances=3, min_instances=2))
    defaults, prod = written["dogbreed:defaults"], written["dogbreed:stages"]["prod"]
    assert defaults["max_instances"] == 1 and defaults["alarm_email"] == ""  # untouched keys stay
    assert prod == {"production": True, "max_instances": 3, "min_instances": 2}
    assert written["dogbreed:stages"]["dev"] == {}
    assert config_sync.differences(written, _derived(max_instances=3, min_instances=2)) == []


def test_an_override_equal_to_the_new_default_is_removed():
    context = _context()
    context["dogbreed:stages"]["prod"]["target_invocations_per_instance"] = 600
    written = config_sync.apply(context, _derived())
    assert "target_invocations_per_instance" not in written["dogbreed:stages"]["prod"]


def test_differences_name_stage_key_and_both_values():
    lines = config_sync.differences(_context(), _derived(max_instances=3))
    assert "prod.max_instances: cdk.json 6, derived 3" in lines
    assert "dev.max_instances: cdk.json 9, derived 1" in lines


def test_cli_checks_then_writes_a_cdk_json_that_passes_the_check(tmp_path, capsys):
    cdk_json = tmp_path / "cdk.json"
    cdk_json.write_text(json.dumps({"app": "x", "context": _context()}, indent=2) + "\n")
    benchmarks = tmp_path / "benchmarks.json"
    benchmarks.write_text(json.dumps({"stages": _derived(max_instances=3)}))
    args = ["--cdk-json", str(cdk_json), "--benchmarks", str(benchmarks)]
    assert config_sync.main(args) == 1
    assert config_sync.main([*args, "--write"]) == 0
    assert config_sync.main(args) == 0
    assert json.loads(cdk_json.read_text())["app"] == "x"
    assert "holds the values derived" in capsys.readouterr().out
