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


def test_an_instance_kind_change_names_the_image_tag_that_must_change_too(tmp_path, capsys):
    context = _context()
    context["dogbreed:defaults"]["inference_image_tag"] = "2.6.0-gpu-py312"
    derived = _derived(instance_type="ml.c6i.xlarge")
    derived["dev"]["inference_image_kind"] = "gpu"
    derived["prod"]["inference_image_kind"] = "cpu"
    lines = config_sync.differences(context, derived)
    assert [line for line in lines if "inference_image_tag" in line] == [
        "prod.inference_image_tag: cdk.json '2.6.0-gpu-py312' is not a -cpu- image, which ml.c6i.xlarge "
        "needs (set it by hand)"
    ]
    cdk_json = tmp_path / "cdk.json"
    cdk_json.write_text(json.dumps({"context": context}))
    benchmarks = tmp_path / "benchmarks.json"
    benchmarks.write_text(json.dumps({"stages": derived}))
    args = ["--cdk-json", str(cdk_json), "--benchmarks", str(benchmarks)]
    # Written, the derived keys agree, but a GPU image on a CPU instance is not "in sync".
    assert config_sync.main([*args, "--write"]) == 1
    assert "not written: prod.inference_image_tag" in capsys.readouterr().out
    assert config_sync.main(args) == 1


def test_run_to_run_noise_in_a_target_leaves_cdk_json_alone():
    context = _context()
    context["dogbreed:defaults"]["target_invocations_per_instance"] = 2340
    for measured, rewritten in [(2370, False), (2130, False), (2100, True), (2700, True)]:
        derived = _derived()
        for values in derived.values():
            values["target_invocations_per_instance"] = measured
        written = config_sync.apply(context, derived)
        value = written["dogbreed:defaults"]["target_invocations_per_instance"]
        assert value == (measured if rewritten else 2340), measured
        assert config_sync.differences(written, derived) == []


def test_a_count_one_off_is_a_change_not_noise():
    assert not config_sync.in_sync(2, 3) and not config_sync.in_sync(18, 16)
    assert config_sync.in_sync(2340, 2370) and config_sync.in_sync("ml.g4dn.xlarge", "ml.g4dn.xlarge")
    assert not config_sync.in_sync(True, 1)  # a boolean is not the number 1
