"""The smoke pipeline on a Slurm cluster of scripts/slurm-local.sh with the Slurm profile.

The cluster has two nodes on this machine (`--nodes 2`, each with this machine's 2 CPUs and
one stand-in GPU, `--gpus 1`), so that jobs spread over nodes and a training can span
them. Every job goes through sbatch (workflow/profiles/slurm fitted to the cluster by
benchmarks.bench_slurm.fit_profile: its partition, no GPU unless asked, 2 threads and
4000 MB at most), and the outputs are the same bytes as the local run of the
`snakemake_repo` fixture.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from benchmarks.bench_slurm import fit_profile
from tests.conftest import REPO, digest
from tests.integration.conftest import copy_repo, tool_env

pytestmark = pytest.mark.integration
SCRIPT = REPO / "scripts" / "slurm-local.sh"
NODE_CPUS = 2  # at most 2 threads a job: the machine the tests run on may have no more
NODES = ("node1", "node2")  # slurm-local.sh --nodes 2
# outputs that a run gives as the same bytes whatever runs its jobs
SAME_BYTES = ["data/raw", "data/extracted", "data/slices", "data/splits.csv",
              "data/predictions", "models/model.pt", "reports/train_history.csv",
              "reports/postprocess.json", "reports/postprocess.csv", "reports/metrics.json",
              "reports/per_subject.csv"]


def as_root() -> list[str] | None:
    """The prefix that runs a command as root: none for root, `sudo -n` where it works."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"],
                                               capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def cannot_run() -> str | None:
    """Why a local Slurm cluster cannot be started here (None: it can)."""
    if as_root() is None:
        return ("scripts/slurm-local.sh needs root or sudo without a password (apt-get, the "
                "munge and Slurm daemons)")
    if not (shutil.which("slurmctld") or shutil.which("apt-get")):
        return "Slurm is not installed and there is no apt-get to install it"
    return None


def files_under(root: Path, rel: str) -> list[str]:
    path = root / rel
    if path.is_file():
        return [rel]
    # a directory output's .snakemake_timestamp: written by the job's snakemake on the node
    return sorted(p.relative_to(root).as_posix() for p in path.rglob("*")
                  if p.is_file() and p.name != ".snakemake_timestamp")


SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


def plant_stale_link(old_state: Path, root: list[str]) -> bool:
    """Link /etc/slurm/slurm.conf to a dead cluster's configuration, where nothing is there."""
    if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
        return False
    (old_state / "slurm.conf").write_text("ClusterName=dead\n")
    subprocess.run([*root, "mkdir", "-p", str(SYSTEM_CONF.parent)], check=True)
    subprocess.run([*root, "ln", "-s", str(old_state / "slurm.conf"), str(SYSTEM_CONF)],
                   check=True)
    return True


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running one-node cluster; stopped afterwards, whatever the test gave."""
    reason = cannot_run()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"in CI the Slurm test must run: {reason}")
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-state")
    root = as_root()
    # a cluster that was killed rather than brought down leaves its /etc/slurm/slurm.conf
    # link behind, which job steps read: `up` must point it at the new cluster
    stale = plant_stale_link(tmp_path_factory.mktemp("old-slurm-state"), root)
    up = subprocess.run([*root, str(SCRIPT), "up", "--state-dir", str(state), "--nodes",
                         str(len(NODES)), "--cpus", str(NODE_CPUS), "--gpus", "1"],
                        capture_output=True, text=True, timeout=900)
    try:
        assert up.returncode == 0, f"slurm-local.sh up failed:\n{up.stdout}{up.stderr}"
        if stale:
            assert "replacing the stale link" in up.stdout, up.stdout
            assert SYSTEM_CONF.resolve() == state / "slurm.conf"
        yield state
    finally:
        down = subprocess.run([*root, str(SCRIPT), "down", "--state-dir", str(state)],
                              capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, f"slurm-local.sh down failed:\n{down.stdout}{down.stderr}"
        assert sorted(p.name for p in state.glob("*.pid")) == [], "daemons left running"
        for name in ("munged", "slurmctld", "slurmd"):
            left = subprocess.run(["pgrep", "-f", f"{name}.*{state}"], capture_output=True)
            assert left.returncode == 1, f"{name} of {state} left running"
        assert not SYSTEM_CONF.is_symlink(), f"{SYSTEM_CONF} left linked"


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory) -> tuple[Path, str, float]:
    repo = copy_repo(tmp_path_factory.mktemp("slurm-repo"))
    profile = fit_profile(tmp_path_factory.mktemp("slurm-profile") / "slurm", NODE_CPUS)
    env = tool_env() | {"SLURM_CONF": str(slurm_cluster / "slurm.conf")}
    start = time.perf_counter()
    result = subprocess.run(["snakemake", "--profile", str(profile)], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode != 0:
        logs = "".join(f"\n--- {p}\n{p.read_text()[-2000:]}"
                       for p in sorted(repo.glob(".snakemake/slurm_logs/**/*.log")))
        pytest.fail(f"snakemake --profile slurm exited {result.returncode}:\n"
                    f"{output[-6000:]}{logs}")
    return repo, output, seconds


def job_stats(output: str) -> Counter:
    """The `Job stats:` table Snakemake prints: rule -> number of jobs (`all` left out)."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    counts = Counter({m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)})
    counts.pop("all", None)
    return counts


def test_every_job_is_a_completed_slurm_job(slurm_run, slurm_cluster):
    repo, output, _ = slurm_run
    expected = job_stats(output)
    assert {"download_subject", "extract", "normalize", "train", "evaluate"} <= set(expected)
    # the plugin's log of each job: .snakemake/slurm_logs/rule_<rule>/<wildcards>/<id>.log
    logs = sorted(repo.glob(".snakemake/slurm_logs/rule_*/**/*.log"))
    by_rule = Counter(p.relative_to(repo / ".snakemake/slurm_logs").parts[0][len("rule_"):]
                      for p in logs)
    assert by_rule == expected
    ids = {p.stem for p in logs}
    assert len(ids) == len(logs) and all(i.isdigit() for i in ids)
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", output))
    assert submitted == ids
    # ... and Slurm's own record of each: jobcomp/filetxt, one line per finished job
    records = dict(re.findall(r"^JobId=(\d+) .*?JobState=(\w+)",
                              (slurm_cluster / "jobcomp.log").read_text(), re.M))
    assert {i: records.get(i) for i in ids} == {i: "COMPLETED" for i in ids}


def test_outputs_are_the_bytes_of_a_local_run(slurm_run, snakemake_repo):
    repo = slurm_run[0]
    for rel in SAME_BYTES:
        files = files_under(repo, rel)
        assert files and files == files_under(snakemake_repo, rel), rel
        # compared by digest: pytest's diff of two large differing byte strings takes hours
        differ = [f for f in files if digest(repo / f) != digest(snakemake_repo / f)]
        assert differ == [], f"{rel}: these differ from the local run's"
    for png in ("learning_curves", "dice_boxplot"):
        assert (repo / f"reports/figures/{png}.png").is_file()


def test_a_job_slurm_refuses_ends_the_run_with_nothing_recorded(slurm_cluster, tmp_path):
    """More memory than the node has: sbatch refuses the job at submission."""
    repo = copy_repo(tmp_path / "repo")
    profile = fit_profile(tmp_path / "profile" / "slurm", NODE_CPUS)
    env = tool_env() | {"SLURM_CONF": str(slurm_cluster / "slurm.conf")}
    target = "data/raw/SMOKE-000/SMOKE-000_t1.nii.gz"
    result = subprocess.run(
        ["snakemake", target, "--profile", str(profile), "--set-resources",
         "download_subject:mem_mb=100000000"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "SLURM sbatch failed" in output, output[-3000:]
    assert "Memory specification can not be satisfied" in output, output[-3000:]
    assert not (repo / target).exists()
    # nothing reached the queue, and Snakemake has no record of the output
    queued = subprocess.run(["squeue", "-h", "-o", "%i %j"], env=env, capture_output=True,
                            text=True, check=True).stdout
    assert "download_subject" not in queued
    # Snakemake does not take the job as done: a dry run still has it to run
    dry = subprocess.run(["snakemake", target, "-n", "--cores", "1"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0 and "download_subject" in dry.stdout, dry.stdout + dry.stderr


def test_training_under_torchrun_with_two_processes_is_one_slurm_job(slurm_run, slurm_cluster,
                                                                      tmp_path):
    """`processes: 2` for train: one job of 2 CPUs running torchrun (gloo, 2 ranks)."""
    repo = slurm_run[0]  # after the byte comparison: this retrains models/model.pt
    profile = fit_profile(tmp_path / "profile" / "slurm", NODE_CPUS)
    env = tool_env() | {"SLURM_CONF": str(slurm_cluster / "slurm.conf")}
    result = subprocess.run(
        ["snakemake", "models/model.pt", "--profile", str(profile), "--forcerun", "train",
         "--set-resources", "train:processes=2"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "torchrun --standalone --nproc_per_node 2 -m brainseg train --threads 1" in output
    job = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert len(job) == 1, output[-3000:]
    record = re.search(rf"^JobId={job[0]} .*$", (slurm_cluster / "jobcomp.log").read_text(),
                       re.M)
    assert record and "JobState=COMPLETED" in record[0] and "ProcCnt=2" in record[0], record
    log = (repo / "logs" / "train.log").read_text()
    assert "2 process(es)" in log, log[-2000:]


def yaml_of(profile: Path) -> dict:
    return yaml.safe_load((profile / "config.yaml").read_text())


def job_details(job: str, env: dict[str, str]) -> str:
    """`scontrol show job -d` of a job (slurmctld keeps a finished one for MinJobAge)."""
    return subprocess.run(["scontrol", "show", "job", "-d", job], env=env, capture_output=True,
                          text=True, check=True).stdout


def retrain(repo: Path, profile: Path, env: dict[str, str], *extra: str) -> tuple[str, str]:
    """Run `train` again through Slurm: Snakemake's output and the one Slurm job's id."""
    result = subprocess.run(
        ["snakemake", "models/model.pt", "--profile", str(profile), "--forcerun", "train",
         *extra], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    job = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert len(job) == 1, output[-3000:]
    return output, job[0]


def test_a_training_asks_slurm_for_the_gpu_of_the_profile(slurm_run, slurm_cluster,
                                                           snakemake_repo, tmp_path):
    """The profile's `gpu: 1` as committed: sbatch --gpus=1, granted a GPU of the node."""
    repo = slurm_run[0]
    profile = fit_profile(tmp_path / "profile" / "slurm", NODE_CPUS, gpu=True)
    assert yaml_of(profile)["set-resources"]["train"]["gpu"] == 1
    env = tool_env() | {"SLURM_CONF": str(slurm_cluster / "slurm.conf")}
    _, job = retrain(repo, profile, env)
    details = job_details(job, env)
    assert "JobState=COMPLETED" in details, details
    assert "TresPerJob=gres:gpu:1" in details, details
    assert "JOB_GRES=gpu:1" in details, details
    # no CUDA behind the stand-in GPU: the same CPU training, the same bytes as locally
    assert digest(repo / "models/model.pt") == digest(snakemake_repo / "models/model.pt")


def test_a_training_over_two_nodes_runs_one_torchrun_per_node(slurm_run, slurm_cluster,
                                                               tmp_path):
    """`nodes: 2` (with `tasks: 2`, `mpi: srun`): one Slurm job on both nodes, whose srun
    starts a torchrun on each; rank 0 on the first node hosts the rendezvous."""
    repo = slurm_run[0]
    profile = fit_profile(tmp_path / "profile" / "slurm", NODE_CPUS)
    # in the profile: a command-line --set-resources would replace the profile's whole list
    config = yaml_of(profile)
    config["set-resources"]["train"].update(nodes=2, tasks=2, mpi="srun", gres="gpu:1")
    (profile / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = tool_env() | {"SLURM_CONF": str(slurm_cluster / "slurm.conf")}
    output, job = retrain(repo, profile, env)
    assert "srun --nodes 2 --ntasks-per-node 1" in output, output[-3000:]
    details = job_details(job, env)
    assert "JobState=COMPLETED" in details and "NumNodes=2" in details, details
    assert "TresPerNode=gres:gpu:1" in details and "JOB_GRES=gpu:2" in details, details
    log = (repo / "logs" / "train.log").read_text()
    placed = set(re.findall(r"process (\d) of 2 \(local rank 0\) on node (\w+)", log))
    assert placed == {("0", NODES[0]), ("1", NODES[1])}, log[-3000:]
    assert "2 process(es)" in log, log[-2000:]
    assert (repo / "models" / "model.pt").stat().st_size > 0


def test_nodes_without_tasks_and_mpi_end_clearly(slurm_run, slurm_cluster, tmp_path):
    """`nodes: 2` alone would run the training under the job step's srun: refused first."""
    repo = slurm_run[0]
    profile = fit_profile(tmp_path / "profile" / "slurm", NODE_CPUS)
    env = tool_env() | {"SLURM_CONF": str(slurm_cluster / "slurm.conf")}
    result = subprocess.run(
        ["snakemake", "models/model.pt", "--profile", str(profile), "--forcerun", "train",
         "--set-resources", "train:nodes=2"], cwd=repo, env=env, capture_output=True,
        text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "training on nodes=2 needs tasks=2 (one per node) and mpi=srun" in output, \
        output[-3000:]
    assert "has been submitted with SLURM jobid" not in output
