#!/usr/bin/env bash
# A Slurm cluster on this machine, to try the Slurm profile (workflow/profiles/slurm) without a
# real cluster: munge, slurmctld and one slurmd per node run as root, every file they write
# (configuration, key, sockets, spool, logs) lives in one state folder.
#
#   scripts/slurm-local.sh up       install slurm-wlm + munge when absent, start, wait for idle
#   scripts/slurm-local.sh down     stop every daemon it started (nothing left running)
#   scripts/slurm-local.sh status   the daemons, `sinfo`, and the SLURM_CONF to export
#
# Options (before or after the command):
#   --state-dir DIR   the state folder (default $BRAINSEG_SLURM_DIR or /tmp/brainseg-slurm)
#   --timeout S       seconds `up` waits for the node to be idle (default 60)
#   --cpus N          each node offers N CPUs to jobs (default: all of this machine's; at
#                     most that many): to see how the pipeline fans out on fewer
#   --nodes N         N nodes (default 1), each its own slurmd on this machine: for jobs
#                     that span nodes (srun across them, torchrun --nnodes)
#   --gpus N          each node declares N GPUs (GRES gpu, default 0) that jobs can ask for
#                     (--gpus, --gres=gpu:N) and Slurm schedules and counts; there is no
#                     device behind them (STATE/dev/gpuK are empty files): jobs run on CPU
#   -h, --help        this text
#
# The cluster: one node by default (this machine: its CPUs and memory from `slurmd -C`), or
# with --nodes N the nodes node1..nodeN (all this machine, at 127.0.0.1, each slurmd on its
# own port, this machine's memory shared between them), one partition named `local` (the
# default). No accounting database: `sacct` does not answer here, so
# Snakemake's Slurm executor is run with `--slurm-status-command squeue`; finished jobs stay
# visible to `squeue` for MinJobAge (10 minutes), and each one is written to
# STATE/jobcomp.log (jobcomp/filetxt: its nodes, tasks and TRES, GPUs included). The Slurm commands find the configuration through
# SLURM_CONF=STATE/slurm.conf (`status` prints the line to export); `up` also links
# /etc/slurm/slurm.conf to it (replacing a stale link of an earlier state folder, never a
# regular file), and `down` removes that link.
# Every command is idempotent: `up` on a running cluster checks it, `down` on a stopped one
# does nothing. Root is needed (apt-get, the daemons).
set -euo pipefail

STATE_DIR=${BRAINSEG_SLURM_DIR:-/tmp/brainseg-slurm}
TIMEOUT=60
CPUS=
NODES=1
GPUS=0
PARTITION=local
CMD=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "slurm-local: error: $*" >&2; exit 1; }
say() { echo "slurm-local: $*"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        up|down|status) CMD=$1 ;;
        --state-dir) [[ $# -ge 2 ]] || die "--state-dir needs a folder"; STATE_DIR=$2; shift ;;
        --state-dir=*) STATE_DIR=${1#*=} ;;
        --timeout) [[ $# -ge 2 ]] || die "--timeout needs seconds"; TIMEOUT=$2; shift ;;
        --timeout=*) TIMEOUT=${1#*=} ;;
        --cpus) [[ $# -ge 2 ]] || die "--cpus needs a number"; CPUS=$2; shift ;;
        --cpus=*) CPUS=${1#*=} ;;
        --nodes) [[ $# -ge 2 ]] || die "--nodes needs a number"; NODES=$2; shift ;;
        --nodes=*) NODES=${1#*=} ;;
        --gpus) [[ $# -ge 2 ]] || die "--gpus needs a number"; GPUS=$2; shift ;;
        --gpus=*) GPUS=${1#*=} ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1' (expected up, down or status)" ;;
    esac
    shift
done
[[ -n $CMD ]] || { usage >&2; die "no command given (up, down or status)"; }
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout must be whole seconds, not '$TIMEOUT'"
[[ -z $CPUS || $CPUS =~ ^[1-9][0-9]*$ ]] || die "--cpus must be a whole number >= 1, not '$CPUS'"
[[ $NODES =~ ^[1-9][0-9]*$ && $NODES -le 16 ]] || die "--nodes must be 1 to 16, not '$NODES'"
[[ $GPUS =~ ^[0-9]+$ && $GPUS -le 16 ]] || die "--gpus must be 0 to 16, not '$GPUS'"
STATE_DIR=$(realpath -m "$STATE_DIR")
CONF=$STATE_DIR/slurm.conf
MUNGE_SOCKET=$STATE_DIR/munge/munge.socket
export SLURM_CONF=$CONF

# pid of a daemon from its pid file, when that process is still alive
alive() {
    local pidfile=$STATE_DIR/$1.pid pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

stop() {  # stop one daemon by its pid file, waiting up to 10 s, then SIGKILL
    local name=$1 pid i
    pid=$(alive "$name") || { rm -f "$STATE_DIR/$name.pid"; return 0; }
    kill "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name (pid $pid) did not stop in 10 s: killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE_DIR/$name.pid"
    say "stopped $name (pid $pid)"
}

install_packages() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die "${missing[*]} missing and no apt-get to install them"
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"$STATE_DIR/log/apt.log" 2>&1 \
        || die "apt-get update failed (see $STATE_DIR/log/apt.log)"
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >>"$STATE_DIR/log/apt.log" 2>&1 \
        || die "apt-get install slurm-wlm munge failed (see $STATE_DIR/log/apt.log)"
}

# the node names: this machine's short name for one node, node1..nodeN for several
node_names() {
    if [[ -s $STATE_DIR/nodes ]] && alive slurmctld >/dev/null; then cat "$STATE_DIR/nodes"
    elif ((NODES == 1)); then hostname -s
    else seq -f 'node%g' "$NODES"; fi
}

write_config() {
    local node cpus mem host names i gres=
    node=$(slurmd -C | head -1) || die "slurmd -C could not describe this machine"
    host=$(hostname -s)
    cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    [[ -n $cpus && -n $mem ]] || die "could not read CPUs and RealMemory from 'slurmd -C': $node"
    # this machine's memory less 5 % for the system, shared between the nodes, so that a
    # job's --mem is always granted within what is there
    mem=$((mem * 95 / 100 / NODES))
    [[ -z $CPUS ]] || ((CPUS <= cpus)) || die "--cpus $CPUS: this machine has $cpus CPUs"
    mapfile -t names < <(NODES=$NODES node_names)
    printf '%s\n' "${names[@]}" >"$STATE_DIR/nodes"
    # GPUs: each node's are stand-in files (gres.conf needs a File per GPU), none by default
    echo "AutoDetect=off" >"$STATE_DIR/gres.conf"
    if ((GPUS > 0)); then
        mkdir -p "$STATE_DIR/dev"
        gres="GresTypes=gpu"
        for i in "${!names[@]}"; do
            touch $(seq -f "$STATE_DIR/dev/gpu%g" $((i * GPUS)) $((i * GPUS + GPUS - 1)))
            echo "NodeName=${names[i]} Name=gpu File=$STATE_DIR/dev/gpu[$((i * GPUS))-$((i * GPUS + GPUS - 1))]" \
                >>"$STATE_DIR/gres.conf"
        done
    fi
    local lines=
    for i in "${!names[@]}"; do
        if ((NODES == 1)) && [[ -z $CPUS ]]; then
            # the node line of `slurmd -C` as is (its sockets, cores, threads)
            lines+=$(sed "s/RealMemory=[0-9]*/RealMemory=$mem/" <<<"$node")
        else  # one socket of that many single-thread cores
            lines+="NodeName=${names[i]} CPUs=${CPUS:-$cpus} Boards=1 SocketsPerBoard=1"
            lines+=" CoresPerSocket=${CPUS:-$cpus} ThreadsPerCore=1 RealMemory=$mem"
        fi
        if ((NODES > 1)); then  # several slurmd on this machine: one port each
            lines+=" NodeHostname=$host NodeAddr=127.0.0.1 Port=$((6818 + i))"
        fi
        ((GPUS == 0)) || lines+=" Gres=gpu:$GPUS"
        lines+=" State=UNKNOWN"$'\n'
    done
    cat >"$CONF.tmp" <<EOF
# Written by scripts/slurm-local.sh: ${NODES} node(s) on this machine, every file under $STATE_DIR.
ClusterName=brainseg-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool/%n
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd-%n.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd-%n.log
# no cgroups in a container: processes tracked by their parent, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# no accounting database: finished jobs stay in squeue 10 minutes, and go to a text file
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE_DIR/jobcomp.log
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
$gres
${lines}PartitionName=$PARTITION Nodes=$(IFS=,; echo "${names[*]}") Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munge() {
    if alive munged >/dev/null; then return 0; fi
    if [[ ! -s $STATE_DIR/munge/munge.key ]]; then
        dd if=/dev/urandom of="$STATE_DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 0700 "$STATE_DIR/munge"; chmod 0600 "$STATE_DIR/munge/munge.key"
    munged --force --key-file "$STATE_DIR/munge/munge.key" --socket "$MUNGE_SOCKET" \
        --pid-file "$STATE_DIR/munged.pid" --log-file "$STATE_DIR/log/munged.log" \
        --seed-file "$STATE_DIR/munge/munge.seed" \
        || die "munged did not start (see $STATE_DIR/log/munged.log)"
    say "started munged (pid $(alive munged || echo '?'))"
}

start_daemon() {  # slurmctld, or slurmd for one node (pid file slurmd-NODE), in the background
    local name=$1 node=${2:-} i
    local pidname=$name${node:+-$node}
    if alive "$pidname" >/dev/null; then return 0; fi
    "$name" -f "$CONF" ${node:+-N "$node"} \
        || die "$pidname did not start (see $STATE_DIR/log/$pidname.log)"
    for i in $(seq 50); do alive "$pidname" >/dev/null && break; sleep 0.2; done
    alive "$pidname" >/dev/null || die "$pidname exited at start (see $STATE_DIR/log/$pidname.log:
$(tail -5 "$STATE_DIR/log/$pidname.log" 2>/dev/null))"
    say "started $pidname (pid $(alive "$pidname"))"
}

# Job steps (srun inside a batch job) may read /etc/slurm/slurm.conf whatever SLURM_CONF the
# job was given, so it must be this cluster's. A link there is one this script made (a real
# cluster has a regular file, which is left alone): a link to another state folder is from a
# cluster that was never brought down, and is pointed here.
link_system_conf() {
    local system=/etc/slurm/slurm.conf
    if [[ -L $system || ! -e $system ]]; then
        if [[ -L $system && $(readlink "$system") != "$CONF" ]]; then
            say "replacing the stale link $system -> $(readlink "$system")"
        fi
        mkdir -p /etc/slurm && ln -sfn "$CONF" "$system"
    elif ! cmp -s "$system" "$CONF"; then
        say "warning: $system is another cluster's configuration; job steps that read it" \
            "instead of SLURM_CONF will not reach this cluster"
    fi
}

# the nodes' states, one word for all when they agree (`idle`), else each (`idle down`)
node_state() { { sinfo -h -N -p "$PARTITION" -o '%t' 2>/dev/null || true; } | sort -u | xargs; }

up() {
    [[ $(id -u) -eq 0 ]] || die "needs root (apt-get, the munge and Slurm daemons)"
    mkdir -p "$STATE_DIR"/{log,ctld,spool,munge}
    local node
    install_packages
    # a configuration from an earlier run is kept while its daemons run (idempotent `up`)
    if ! alive slurmctld >/dev/null; then write_config; fi
    link_system_conf
    start_munge
    start_daemon slurmctld
    for node in $(node_names); do mkdir -p "$STATE_DIR/spool/$node"; start_daemon slurmd "$node"; done
    local state i
    for i in $(seq "$TIMEOUT"); do
        state=$(node_state)
        case $state in
            idle|mix|alloc) say "node(s) $(node_names | xargs) $state in partition '$PARTITION'"
                             say "export SLURM_CONF=$CONF"; return 0 ;;
            *down*|*drain*|*fail*) scontrol update nodename="$(node_names | paste -sd,)" state=resume \
                                    >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    die "the node is not idle after $TIMEOUT s (sinfo: '${state:-no answer}'); see
$STATE_DIR/log/slurmctld.log and slurmd.log:
$(tail -5 "$STATE_DIR/log/slurmctld.log" 2>/dev/null)"
}

down() {
    if [[ -d $STATE_DIR ]]; then
        # cancel what is queued or running so that no job outlives the cluster
        local i
        if alive slurmctld >/dev/null; then
            scancel --quiet --user root 2>/dev/null || true
            for i in $(seq 30); do
                [[ -z $(squeue -h -t RUNNING,COMPLETING,PENDING -o %i 2>/dev/null) ]] && break
                sleep 1
            done
        fi
        local pidfile
        for pidfile in "$STATE_DIR"/slurmd*.pid; do
            [[ -e $pidfile ]] && stop "$(basename "$pidfile" .pid)"
        done
        stop slurmctld
        stop munged
    fi
    if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$CONF" ]]; then
        rm -f /etc/slurm/slurm.conf
    fi
    say "down (state kept in $STATE_DIR)"
}

status() {
    local name pid rc=0
    for name in munged slurmctld $(node_names | sed 's/^/slurmd-/'); do
        if pid=$(alive "$name"); then say "$name running (pid $pid)"
        else say "$name not running"; rc=3; fi
    done
    if [[ $rc -eq 0 ]]; then sinfo; say "export SLURM_CONF=$CONF"; fi
    return $rc
}

"$CMD"
