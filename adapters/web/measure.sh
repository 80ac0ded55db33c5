#!/bin/sh
# measure.sh [-u] BUILD_DIR DATABASE [N] — the speed figures in README's funnel-web section: starts
# the funnel-web of BUILD_DIR on DATABASE (bench_workload --keep's funneld-full.db, with the
# funneld.conf beside it for the quotas; funneld need not run), waits until the report models
# are read (503 until then), and times N (default 20) sequential requests per read route as an
# admin with curl, printing p50, p95 and max per route; the first request of each route is
# shown on its own, and the CPU funnel-web spent per request of the route (all of them, the
# first included). -u: with answers_cache = 0, so every request computes its answer, as each
# does while funneld commits (the kept answers go at each commit). Needs curl.
set -e
CACHE=1
[ "$1" = -u ] && CACHE=0 && shift
B=$1
DB=$2
N=${3:-20}
D=$(mktemp -d)
trap 'kill $WEB 2>/dev/null; wait; rm -rf $D' EXIT
TOKEN=$(echo measure | $B/funnel-web --users $D/users --add-user m --role admin 2>/dev/null)
CONF=$(dirname "$DB")/funneld.conf
[ -f "$CONF" ] || CONF=
printf 'port = 0;\ndatabase = "%s";\nusers = "%s/users";\nfunneld_config = "%s";\nlog_level = "warn";\nanswers_cache = %d;\n' \
    "$DB" "$D" "$CONF" "$CACHE" >$D/web.conf
$B/funnel-web --config $D/web.conf --ready-file $D/ready >$D/web.log 2>&1 &
WEB=$!
while [ ! -s $D/ready ]; do sleep 0.1; done
P=$(grep '^http=' $D/ready | cut -d= -f2)
# funnel-web's CPU time so far (user + system, in clock ticks): on a shared machine the wall
# time of a request is mostly waiting for a core, its CPU time is what it costs
TICKS=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' /proc/$WEB/stat; }
get() { curl -s -o /dev/null -w "%{http_code} %{time_total}\n" -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$P/api/v1/$1"; }
T0=$(date +%s.%N)
for model in "funnel?by=campaign" "attribution?by=campaign"; do
    while [ "$(get "$model" | cut -d' ' -f1)" = 503 ]; do sleep 0.2; done
    echo "$model ready $(echo "$(date +%s.%N) - $T0" | bc) s after the port opened," \
        "RSS: $(grep -E '^(VmHWM|RssAnon|RssFile)' /proc/$WEB/status | tr -s ' \t' ' ' | tr '\n' ' ')" \
        "(RssFile: the database's pages mapped by the readers)"
done
kept() { curl -s "http://127.0.0.1:$P/metrics" | awk '/^funnel_web_answers_kept_total/ { print $2 }'; }
if [ $CACHE = 1 ]; then # the keeper's first pass: the page's 4 default answers
    while [ "$(kept)" -lt 4 ]; do sleep 0.2; done
    echo "the page's defaults kept $(echo "$(date +%s.%N) - $T0" | bc) s after the port opened"
fi
MONTH=$(date -u +%Y-%m)
# the page's compliance query: the last 4 weeks (app.js weeksBack)
DAY=$(($(date -u +%s) / 86400))
FROM=$(date -u -d "@$(((DAY - (DAY + 3) % 7 - 21) * 86400))" +%Y-%m-%d)
REP=$(sqlite3 "file:$DB?mode=ro" "SELECT rep FROM ledger_entry LIMIT 1" 2>/dev/null || echo rep-01)
# the board's first page and its "Show more" (the page's cursor after the first 50)
BOARD="sla?state=live&order=due&limit=50"
NEXT=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$P/api/v1/$BOARD" |
    sed -n 's/.*"next":"\([0-9:-]*\)".*/\1/p')
for route in "me" "$BOARD" "$BOARD&after=$NEXT" \
    "sla?state=breached" "sla?state=open" "sla?state=open&limit=100" "sla?state=met&limit=100" \
    "sla/1" "sla/compliance?by=owner" "sla/compliance?by=policy&per=week" \
    "sla/compliance?by=owner&per=week&from=$FROM" "sla/compliance?by=owner&per=week" "quota" \
    "funnel?by=campaign" "funnel?by=channel" "funnel?by=month" \
    "attribution?by=campaign&model=linear" "attribution?by=campaign&model=all" \
    "statements/$REP?period=$MONTH" "statements/$REP?period=$MONTH&format=csv" "rejected?limit=50"; do
    c0=$(cpu)
    for i in $(seq 0 "$N"); do get "$route"; done >$D/times
    c1=$(cpu)
    first=$(head -1 $D/times)
    tail -n +2 $D/times | sort -k2 -n | awk -v r="$route" -v f="$first" -v cpu=$(((c1 - c0) * 1000 / TICKS)) '
        { t[NR] = $2; s[$1]++ }
        END { p50 = t[int((NR + 1) / 2)]; p95 = t[int(NR * 0.95 + 0.999)];
              st = ""; for (k in s) st = st k "x" s[k] " ";
              printf "%-40s first %s  p50 %.3fs  p95 %.3fs  max %.3fs  cpu %.1f ms/request  (%s)\n",
                     r, f, p50, p95, t[NR], cpu / (NR + 1), st }'
done
