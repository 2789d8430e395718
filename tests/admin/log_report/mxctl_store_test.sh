#!/usr/bin/env bash
# End to end through mxctl: connectors created with `mxctl connector add` in a fresh store are
# the groups of `mxctl log-report --json`, and --connector selects by them.
# Usage: mxctl_store_test.sh MXCTL FIXTURES_DIR
set -euo pipefail
mxctl="$1"
fixtures="$2"
dir="$(mktemp -d /tmp/mxlr-store.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/state" "$dir/drop"
cat >"$dir/mx.toml" <<TOML
state_dir = "$dir/state"
run_dir = "$dir/run"
mail_root = "$dir/mail"
hostname = "mx.example.test"
TOML
"$mxctl" --config "$dir/mx.toml" connector add demo --drop-folder "$dir/drop" --domain example.test >/dev/null
"$mxctl" --config "$dir/mx.toml" connector add old --drop-folder "$dir/drop" --domain paused.test >/dev/null
"$mxctl" --config "$dir/mx.toml" log-report --json "$fixtures/milter-reject.log" >"$dir/all.json"
"$mxctl" --config "$dir/mx.toml" log-report --json --connector old "$fixtures/milter-reject.log" >"$dir/old.json"
python3 - "$dir/all.json" "$dir/old.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
o = json.load(open(sys.argv[2]))
by = {c["connector"]: c for c in a["connectors"]}
assert set(by) == {"demo", "old"}, by.keys()
assert by["demo"]["rejected"] == 5 and by["demo"]["delivered"] == 1, by["demo"]
assert by["old"]["rejects_by_reason"]["connector_inactive"] == 1, by["old"]
assert a["totals"]["delivered_to_connectors"] == 1, a["totals"]
assert o["totals"]["rejected"] == 1 and o["totals"]["delivered"] == 0, o["totals"]
print("ok")
PY
