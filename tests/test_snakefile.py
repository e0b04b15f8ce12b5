"""The Snakefile's own checks: schema validation and refused --config overrides."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def workflow_copy(tmp_path: Path, params: dict) -> Path:
    shutil.copy(REPO / "Snakefile", tmp_path / "Snakefile")
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    real = tmp_path / "tests" / "data" / "real"
    real.mkdir(parents=True)
    (real / "TCGA-DU-7294").symlink_to(REPO / "tests" / "data" / "real" / "TCGA-DU-7294")
    return tmp_path


def dry_run(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, "-n", "--cores", "1", *extra], cwd=folder,
                          capture_output=True, text=True, timeout=300)


def test_snakefile_plans_one_download_job_per_subject(tmp_path, params):
    result = dry_run(workflow_copy(tmp_path, params))
    assert result.returncode == 0, result.stderr
    n = params["download"]["n_subjects"]
    assert f"download_subject        {n}" in result.stdout
    assert f"extract                 {n}" in result.stdout


def test_a_manifest_source_plans_one_job_per_listed_subject_without_a_checkpoint(tmp_path,
                                                                                params):
    params["download"].update(source="manifest", manifest="workflow/manifests/brats18.tsv")
    result = dry_run(workflow_copy(tmp_path, params))
    assert result.returncode == 0, result.stderr
    assert re.search(r"^download_subject\s+20$", result.stdout, re.M)
    assert re.search(r"^extract\s+20$", result.stdout, re.M)
    assert not re.search(r"^fetch\s", result.stdout, re.M)
    assert result.stdout.count("input: workflow/manifests/brats18.tsv\n") == 20


def test_snakefile_validates_params_against_the_schema(tmp_path, params):
    params["train"]["epoch"] = 3
    result = dry_run(workflow_copy(tmp_path, params))
    assert result.returncode != 0
    assert "'epoch' was unexpected" in result.stdout + result.stderr


def test_config_overrides_are_refused(tmp_path, params):
    folder = workflow_copy(tmp_path, params)
    (folder / "partial.yaml").write_text(yaml.safe_dump({"base": {"seed": 43}}))
    result = dry_run(folder, "--configfile", "partial.yaml")
    assert result.returncode != 0
    assert "--config overrides and partial" in result.stdout + result.stderr


def test_a_complete_configfile_is_what_every_command_reads(tmp_path, params):
    folder = workflow_copy(tmp_path, params)
    params["base"]["seed"] += 1
    (folder / "other.yaml").write_text(yaml.safe_dump(params))
    result = dry_run(folder, "--configfile", "other.yaml", "-p")
    assert result.returncode == 0, result.stderr
    assert "brainseg download --params other.yaml" in result.stdout
    assert "--params params.yaml" not in result.stdout


PROFILE = REPO / "workflow" / "profiles" / "default" / "config.yaml"


def test_default_profile_sets_what_it_says_and_comments_every_entry():
    from snakemake.cli import parse_args

    text = PROFILE.read_text().splitlines()
    for k, line in enumerate(text):
        if line and not line.startswith("#"):
            assert text[k - 1].startswith("#"), f"{PROFILE}: no comment above '{line}'"
    settings = yaml.safe_load(PROFILE.read_text())
    _, args = parse_args(["--workflow-profile", str(PROFILE.parent), "--snakefile",
                          str(REPO / "Snakefile")])
    assert settings["cores"] == "all" and args.cores >= 1
    for key, value in settings.items():
        if key != "cores":
            assert getattr(args, key.replace("-", "_")) == value, key
    # the command line wins over the profile
    _, args = parse_args(["--workflow-profile", str(PROFILE.parent), "--cores", "3"])
    assert args.cores == 3
    assert "--workflow-profile $(PROFILE)" in (REPO / "Makefile").read_text()


SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"


def rule_names() -> set[str]:
    """Every rule and checkpoint of the workflow that runs as a job (not `all`)."""
    text = "".join(p.read_text() for p in [REPO / "Snakefile",
                                            *sorted((REPO / "workflow/rules").glob("*.smk"))])
    return set(re.findall(r"^(?:rule|checkpoint) (\w+):", text, re.M)) - {"all"}


def test_slurm_profile_sizes_every_rule_and_asks_a_gpu_for_training():
    text = SLURM_PROFILE.read_text().splitlines()
    for k, line in enumerate(text):
        if re.match(r"^(\w|  \w+:$)", line):  # top-level keys and the rules of set-resources
            assert text[k - 1].lstrip().startswith("#"), f"no comment above '{line}'"
    settings = yaml.safe_load(SLURM_PROFILE.read_text())
    assert settings["executor"] == "slurm" and settings["jobs"] >= 1
    assert set(settings["set-threads"]) == rule_names()
    assert set(settings["set-resources"]) == rule_names()
    for rule, resources in settings["set-resources"].items():
        assert isinstance(resources["mem_mb"], int) and isinstance(resources["runtime"], int), rule
    gpus = {rule for rule, resources in settings["set-resources"].items() if "gpu" in resources}
    assert gpus == {"train", "train_fold"}
    assert settings["set-threads"]["train_fold"] == 1  # the fold models' bytes depend on it


def test_slurm_profile_is_used_alone_and_a_workflow_profile_would_override_it():
    from snakemake.cli import parse_args

    _, args = parse_args(["--profile", str(SLURM_PROFILE.parent), "--snakefile",
                          str(REPO / "Snakefile")])
    assert args.executor == "slurm" and args.retries == 1 and args.latency_wait == 60
    train = args.set_resources["train"]
    assert train["gpu"].value == 1 and train["mem_mb"].value == 32000
    assert set(args.set_resources) == rule_names()
    # workflow/profiles/default is not found on its own (Snakemake looks in profiles/default);
    # given as well, its keys win over the Slurm profile's
    _, args = parse_args(["--profile", str(SLURM_PROFILE.parent), "--workflow-profile",
                          str(PROFILE.parent), "--snakefile", str(REPO / "Snakefile")])
    assert args.executor == "slurm" and args.retries == 0


def test_the_anomaly_rule_is_planned_only_when_enabled(tmp_path, params):
    (tmp_path / "off").mkdir()
    off = dry_run(workflow_copy(tmp_path / "off", params))
    assert off.returncode == 0, off.stderr
    assert not re.search(r"^anomaly\s+1$", off.stdout, re.M)
    params["anomaly"].update(enabled=True, runs=["autoencoder"])
    (tmp_path / "on").mkdir()
    on = dry_run(workflow_copy(tmp_path / "on", params), "-p")
    assert on.returncode == 0, on.stderr
    assert re.search(r"^anomaly\s+1$", on.stdout, re.M)
    assert "brainseg anomaly --params params.yaml --slices-dir data/slices" in on.stdout
    assert "--figures-dir reports/anomaly --threads 1" in on.stdout
