#!/usr/bin/env bash
# Runs govulncheck against an offline vulnerability database and exits
# non-zero when a reachable vulnerability is found (govulncheck's exit 3).
#
#   bash scripts/vulncheck.sh                  # scan ./... of this repo
#   bash scripts/vulncheck.sh -show verbose ./...   # extra govulncheck args
#   bash scripts/vulncheck.sh -C /some/module ./... # scan another module
#   bash scripts/vulncheck.sh --db-only        # only build/refresh the DB
#
# vuln.go.dev is not reachable from our machines, so the database is built
# from the golang.org/x/vulndb module (served by the Go module proxy) with its
# cmd/gendb, and cached in $PRESENCE_CACHE/vulndb-<version>. The version is
# pinned in scripts/lib.sh; VULNDB_VERSION=latest (or any version) overrides.
set -euo pipefail
SCRIPT_NAME=vulncheck
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

db_only=false
if [ "${1:-}" = "--db-only" ]; then
	db_only=true
	shift
fi

vulndb_version=${VULNDB_VERSION:-$VULNDB_VERSION_PIN}
if [ "$vulndb_version" = latest ]; then
	vulndb_version=$(cd / && go list -m -f '{{.Version}}' golang.org/x/vulndb@latest)
fi
db_dir="$PRESENCE_CACHE/vulndb-$vulndb_version"

# shellcheck disable=SC2317  # called through step
build_db() {
	local src work
	src=$(cd / && go mod download -json "golang.org/x/vulndb@$vulndb_version" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[ -d "$src/data" ] || die "could not download golang.org/x/vulndb@$vulndb_version"
	mkdir -p "$PRESENCE_CACHE"
	work=$(mktemp -d "$PRESENCE_CACHE/vulndb-build.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$work'" EXIT  # step() runs this in a subshell
	cp -r "$src" "$work/src"
	chmod -R u+w "$work/src"
	# gendb reads the reports from a git repository: make a one-commit
	# snapshot of the module's data.
	(
		cd "$work/src"
		git init -q
		git add -A data go.mod
		git -c user.email=vulncheck@localhost -c user.name=vulncheck \
			-c commit.gpgsign=false commit -qm "golang.org/x/vulndb@$vulndb_version"
		# Quiet unless it fails: it downloads ~70 modules on first use.
		if ! go run ./cmd/gendb -repo . -out "$work/out" >"$work/gendb.log" 2>&1; then
			tail -n 40 "$work/gendb.log" >&2
			exit 1
		fi
	)
	[ -f "$work/out/index/db.json" ] || die "gendb produced no index/db.json"
	# Atomic publish; a concurrent run may have won the race, which is fine.
	mv -T "$work/out" "$db_dir" 2>/dev/null || [ -f "$db_dir/index/db.json" ]
}

if [ -f "$db_dir/index/db.json" ]; then
	echo "vulnerability db: $db_dir (cached)"
else
	echo "vulnerability db: building $db_dir from golang.org/x/vulndb@$vulndb_version"
	step "build vulnerability db" build_db
fi
if $db_only; then
	exit 0
fi

govulncheck="$PRESENCE_TOOLS_BIN/govulncheck"
[ -x "$govulncheck" ] || die "$govulncheck missing: run scripts/setup.sh first"

if [ "$#" -eq 0 ]; then
	if [ -z "$(go list ./... 2>/dev/null)" ]; then
		echo "vulncheck: no packages in $REPO_ROOT yet, nothing to scan"
		exit 0
	fi
	set -- ./...
fi

echo "vulncheck: $(go env GOVERSION), govulncheck $GOVULNCHECK_VERSION, db golang.org/x/vulndb@$vulndb_version"
rc=0
"$govulncheck" -db "file://$db_dir" "$@" || rc=$?
case $rc in
0) echo "vulncheck: no reachable vulnerabilities" ;;
3) echo "vulncheck: FAIL: reachable vulnerabilities found (see above)" >&2 ;;
*) echo "vulncheck: FAIL: govulncheck exited $rc" >&2 ;;
esac
exit "$rc"
