#!/bin/bash
# Issue 15: a 3-task Pareto study of SUPPORT2 (tune.objective: pareto, 2 epochs a trial,
# --jobs 2), killed with SIGKILL (the whole process group) once 10 trials have finished,
# then resumed by the same command to 40.   benchmarks/tune_kill_resume.sh OUT
set -u
OUT=$1
PY=${PYTHON:-python}
mkdir -p "$OUT"
PYTHONPATH=src $PY -c "
from polytask.datasets.support2 import *
load_support2()[[*SUPPORT2_FEATURES, 'hospdead', 'slos', 'sfdm2']].to_csv('$OUT/support2.csv', index=False)"
cat > "$OUT/tune.yaml" <<'YAML'
data: {path: support2.csv}
tasks:
  - {name: hospdead, kind: binary}
  - {name: slos, kind: regression, transform: log1p}
  - {name: sfdm2, kind: multiclass}
training: {epochs: 2, patience: null}
tune:
  objective: pareto
YAML
CMD="env PYTHONPATH=src $PY -m polytask tune --config $OUT/tune.yaml --trials 40 --jobs 2 --out $OUT/study"
count() { $PY -c "
import sqlite3; c=sqlite3.connect('$OUT/study/study.db', timeout=30)
print(c.execute(\"select count(*) from trials where state in ('COMPLETE','PRUNED')\").fetchone()[0])" 2>/dev/null || echo 0; }
states() { $PY -c "
import sqlite3; c=sqlite3.connect('$OUT/study/study.db', timeout=30)
print(c.execute('select state, count(*) from trials group by state').fetchall())"; }
start=$(date +%s)
setsid $CMD > "$OUT/first.log" 2>&1 &
pid=$!
while [ "$(count)" -lt 10 ]; do sleep 2; done
kill -KILL -- -$pid
echo "killed at $(count) finished after $(( $(date +%s) - start ))s"; sleep 1; states
t=$(date +%s)
$CMD > "$OUT/second.log" 2>&1
echo "resumed: rc=$? after $(( $(date +%s) - t ))s"; states
