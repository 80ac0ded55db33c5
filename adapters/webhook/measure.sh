#!/bin/sh
# measure.sh BUILD_DIR — the figures in README's funnel-webhook section, against the funneld and
# funnel-webhook built in BUILD_DIR: (1) funneld SIGSTOPped, 4 POSTs in parallel and a /healthz,
# each with its status and time; (2) 1,100 connections from 127.0.0.1 trickling a header byte a
# second, and a /healthz from 127.0.0.2 meanwhile. Needs curl and python3.
set -e
ulimit -n 4096 2>/dev/null || true
B=$1
D=$(mktemp -d)
trap 'kill -CONT $FD 2>/dev/null; kill $WH $FD 2>/dev/null; wait; rm -rf $D' EXIT
$B/funneld --database $D/db --ingest 'tcp://127.0.0.1:*' --submit 'tcp://127.0.0.1:*' \
    --publish 'tcp://127.0.0.1:*' --replay 'tcp://127.0.0.1:*' --ready-file $D/ready >$D/fd.log 2>&1 &
FD=$!
while [ ! -s $D/ready ]; do sleep 0.1; done
SUB=$(grep '^submit=' $D/ready | cut -d= -f2-)
printf 'port = 0;\nsubmit = "%s";\ntoken = "t";\nsubmit_timeout_ms = 2000;\nsubmit_attempts = 1;\nlog_level = "error";\n' \
    "$SUB" >$D/wh.conf
$B/funnel-webhook --config $D/wh.conf --ready-file $D/wready >$D/wh.log 2>&1 &
WH=$!
while [ ! -s $D/wready ]; do sleep 0.1; done
P=$(grep '^port=' $D/wready | cut -d= -f2)

kill -STOP $FD
for i in 1 2 3 4; do
    curl -s -o /dev/null -w "POST $i %{http_code} %{time_total}s\n" -H 'Authorization: Bearer t' \
        -H 'Content-Type: application/json' --data "{\"eventId\":\"m-$i\",\"leadId\":\"L\"}" \
        http://127.0.0.1:$P/v1/events/lead.created &
done
sleep 0.2
curl -s -o /dev/null -w "healthz %{http_code} %{time_total}s\n" http://127.0.0.1:$P/healthz
sleep 9
kill -CONT $FD

python3 - $P <<'PY' &
import socket, sys, time
p, socks = int(sys.argv[1]), []
for i in range(1100):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", p))
    except BlockingIOError:
        pass
    socks.append(s)
for t in range(15):
    alive = 0
    for s in socks:
        try:
            s.send(b"G")
            alive += 1
        except OSError:
            pass
    if t in (1, 14):
        print(f"t={t}s trickling connections open: {alive}", flush=True)
    time.sleep(1)
PY
TRICKLE=$!
sleep 3
curl -s -o /dev/null --max-time 20 --interface 127.0.0.2 \
    -w "healthz from 127.0.0.2 while trickling %{http_code} %{time_total}s\n" http://127.0.0.1:$P/healthz || true
wait $TRICKLE
