#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (Debian's slurm-wlm + munge), for tests.
# Needs root. Idempotent: does nothing if the node is already up.
set -euo pipefail
if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then exit 0; fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
host=$(hostname)
# The node's hardware as slurmd sees it (CPUs, sockets, cores, memory). Not `nproc`: that
# honours OMP_NUM_THREADS and CPU affinity, and a node declared with fewer CPUs than jobs
# ask for leaves those jobs pending forever.
node=$(slurmd -C | head -1)
case "$node" in NodeName=*) ;; *) echo "slurmd -C gave no node line: $node" >&2; exit 1 ;; esac
mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge
[ -s /etc/munge/munge.key ] || mungekey -c -k /etc/munge/munge.key
chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=dlpipe
SlurmctldHost=${host}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=3600
ReturnToService=2
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
${node} State=UNKNOWN
PartitionName=main Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then exit 0; fi
  scontrol update nodename="${host}" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "SLURM node did not come up:" >&2; sinfo >&2 || true; tail -5 /var/log/slurm/slurmctld.log >&2 || true
exit 1
