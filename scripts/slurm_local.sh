#!/usr/bin/env bash
# slurm_local.sh — a one-machine Slurm cluster (Debian 12's slurm-wlm 22.05 with munge), so that
# `srun --mpi=pmix -n 2 build/bin/copper ...` can be tried, and tests/test_dist.cpp's
# Dist.TwoRanksUnderSrunEqualOneProcess runs instead of skipping. Needs root; not used by
# `make test`, which skips that test when no Slurm controller answers.
#
#   sudo scripts/slurm_local.sh          install (apt-get), configure, start munged, slurmctld, slurmd
#   sudo scripts/slurm_local.sh stop     stop the three daemons
#
# It writes /etc/slurm/slurm.conf for this host alone (all its CPUs, one partition "local") and
# refuses to replace one it did not write.
set -euo pipefail

MARK="# written by copper's scripts/slurm_local.sh"
CONF=/etc/slurm/slurm.conf

if [[ ${1:-} == stop ]]; then
  for d in slurmd slurmctld munged; do
    pkill -x "$d" || true
    for _ in $(seq 20); do pgrep -x "$d" >/dev/null || break; sleep 0.5; done
  done
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "slurm_local.sh: run it as root (it installs packages and starts daemons)" >&2
  exit 2
fi
if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
  echo "slurm_local.sh: $CONF exists and was not written by this script; leaving it alone" >&2
  exit 2
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmd slurmctld slurm-client munge
fi

host=$(hostname -s)
cpus=$(nproc)
mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm
cat >"$CONF" <<EOF
$MARK
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmUser=root
SlurmdUser=root
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
ReturnToService=2
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF

# munged runs as its own user and insists that its folders belong to it
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chown -R munge:munge /var/log/munge
pgrep -x munged >/dev/null || runuser -u munge -- munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 20); do
  if sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then
    sinfo
    srun --mpi=list
    exit 0
  fi
  sleep 1
done
echo "slurm_local.sh: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
