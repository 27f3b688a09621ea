#!/usr/bin/env bash
# A real single-node SLURM cluster on this Debian machine, for MOSAIC's `slurm` tests and for trying
# `hydra/launcher=slurm` without a cluster:
#   scripts/slurm-local.sh start    # install (apt, as root) if needed, start munged, slurmctld, slurmd; wait for `srun true`
#   scripts/slurm-local.sh stop     # stop the daemons
#   scripts/slurm-local.sh status   # exit 0 if `srun true` works
# Idempotent: start on a running cluster only checks it. No systemd and no cgroups are assumed, so
# process tracking is linuxproc and there is no accounting database; `sacct` (which submitit polls)
# is replaced by a stand-in that answers from `squeue`.
set -euo pipefail

STATE_DIR="${SLURM_LOCAL_DIR:-/var/lib/mosaic-slurm}"
CONF=/etc/slurm/slurm.conf
PARTITION="${SLURM_LOCAL_PARTITION:-debug}"
SACCT_STANDIN=/usr/local/bin/sacct

die() { echo "slurm-local: $*" >&2; exit 1; }

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v srun >/dev/null \
        && command -v munged >/dev/null && return
    [ "$(id -u)" = 0 ] || die "installing SLURM needs root (apt-get)"
    command -v apt-get >/dev/null || die "installing SLURM needs apt-get (Debian/Ubuntu)"
    echo "slurm-local: installing slurmctld slurmd slurm-client munge" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null \
        || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; } \
        || die "apt-get could not install the SLURM packages"
}

write_config() {
    local host cpus memory
    host="$(hostname -s)"
    cpus="$(nproc)"
    memory="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
    mkdir -p "$STATE_DIR/ctld" "$STATE_DIR/d" "$(dirname "$CONF")"
    chown -R slurm:slurm "$STATE_DIR" 2>/dev/null || true
    cat >"$CONF" <<CONFIG
ClusterName=mosaic-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/d
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MinJobAge=3600
ReturnToService=2
MailProg=/bin/true
SchedulerType=sched/backfill
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONFIG
}

install_sacct_standin() {
    # Without an accounting database `sacct` fails and submitit would poll a finished job forever.
    cat >"$SACCT_STANDIN" <<'STANDIN'
#!/usr/bin/env bash
# sacct stand-in (scripts/slurm-local.sh): JobID|State|NodeList rows from squeue for `-j IDS`.
ids=""
while [ $# -gt 0 ]; do
    case "$1" in
        -j) [ $# -ge 2 ] || break; ids="$ids,$2"; shift 2 ;;
        -j*) ids="$ids,${1#-j}"; shift ;;
        --jobs=*) ids="$ids,${1#--jobs=}"; shift ;;
        *) shift ;;
    esac
done
echo "JobID|State|NodeList"
[ -n "$ids" ] && squeue -h -r -t all -j "${ids#,}" -o '%i|%T|%N' 2>/dev/null
exit 0
STANDIN
    chmod +x "$SACCT_STANDIN"
}

start_munge() {
    pgrep -x munged >/dev/null && return
    [ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- munged
}

ready() { timeout 20 srun -t 1 true >/dev/null 2>&1; }

start() {
    if command -v srun >/dev/null && pgrep -x slurmctld >/dev/null && pgrep -x slurmd >/dev/null && ready; then
        # The stand-in belongs to this script's cluster only, never to a real one that happens to answer.
        if [ "$(id -u)" = 0 ] && grep -qs "ClusterName=mosaic-local" "$CONF"; then install_sacct_standin; fi
        echo "slurm-local: running"; return
    fi
    [ "$(id -u)" = 0 ] || die "starting SLURM daemons needs root"
    install_packages
    write_config
    install_sacct_standin
    start_munge
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 60); do
        if ready; then echo "slurm-local: running ($(nproc) CPUs, partition $PARTITION)"; return; fi
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    die "srun true did not succeed within a minute; see $STATE_DIR/slurmctld.log and slurmd.log"
}

stop() {
    # Let finishing jobs report completion first: a job step whose controller is gone retries forever.
    for _ in $(seq 20); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    pkill -9 -x slurmstepd 2>/dev/null || true
    for _ in $(seq 20); do pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break; sleep 0.5; done
    echo "slurm-local: stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) ready ;;
    *) die "usage: $0 start|stop|status" ;;
esac
