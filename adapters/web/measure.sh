#!/bin/sh
# measure.sh BUILD_DIR DATABASE [N] — the speed figures in README's funnel-web section: starts
# the funnel-web of BUILD_DIR on DATABASE (bench_workload --keep's funneld-full.db, with the
# funneld.conf beside it for the quotas; funneld need not run), waits until the report models
# are read (503 until then), and times N (default 20) sequential requests per read route as an
# admin with curl, printing p50, p95 and max per route; the first request of each route is
# shown on its own. Needs curl.
set -e
B=$1
DB=$2
N=${3:-20}
D=$(mktemp -d)
trap 'kill $WEB 2>/dev/null; wait; rm -rf $D' EXIT
TOKEN=$(echo measure | $B/funnel-web --users $D/users --add-user m --role admin 2>/dev/null)
CONF=$(dirname "$DB")/funneld.conf
[ -f "$CONF" ] || CONF=
printf 'port = 0;\ndatabase = "%s";\nusers = "%s/users";\nfunneld_config = "%s";\nlog_level = "warn";\n' \
    "$DB" "$D" "$CONF" >$D/web.conf
$B/funnel-web --config $D/web.conf --ready-file $D/ready >$D/web.log 2>&1 &
WEB=$!
while [ ! -s $D/ready ]; do sleep 0.1; done
P=$(grep '^http=' $D/ready | cut -d= -f2)
get() { curl -s -o /dev/null -w "%{http_code} %{time_total}\n" -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$P/api/v1/$1"; }
for model in "funnel?by=campaign" "attribution?by=campaign"; do
    while [ "$(get "$model" | cut -d' ' -f1)" = 503 ]; do sleep 0.2; done
done
MONTH=$(date -u +%Y-%m)
# the page's compliance query: the last 4 weeks (app.js weeksBack)
DAY=$(($(date -u +%s) / 86400))
FROM=$(date -u -d "@$(((DAY - (DAY + 3) % 7 - 21) * 86400))" +%Y-%m-%d)
REP=$(sqlite3 "file:$DB?mode=ro" "SELECT rep FROM ledger_entry LIMIT 1" 2>/dev/null || echo rep-01)
for route in "me" "sla?state=breached" "sla?state=open" "sla?state=open&limit=100" "sla?state=met&limit=100" \
    "sla/1" "sla/compliance?by=owner" "sla/compliance?by=policy&per=week" \
    "sla/compliance?by=owner&per=week&from=$FROM" "sla/compliance?by=owner&per=week" "quota" \
    "funnel?by=campaign" "funnel?by=channel" "funnel?by=month" \
    "attribution?by=campaign&model=linear" "attribution?by=campaign&model=all" \
    "statements/$REP?period=$MONTH" "statements/$REP?period=$MONTH&format=csv" "rejected?limit=50"; do
    for i in $(seq 0 "$N"); do get "$route"; done >$D/times
    first=$(head -1 $D/times)
    tail -n +2 $D/times | sort -k2 -n | awk -v r="$route" -v f="$first" '
        { t[NR] = $2; s[$1]++ }
        END { p50 = t[int((NR + 1) / 2)]; p95 = t[int(NR * 0.95 + 0.999)];
              st = ""; for (k in s) st = st k "x" s[k] " ";
              printf "%-40s first %s  p50 %.3fs  p95 %.3fs  max %.3fs  (%s)\n", r, f, p50, p95, t[NR], st }'
done
