#!/usr/bin/env bash
# The import rules of shared/DESIGN.md, held by a test rather than by hope:
#
#   1. nothing under mps/ or vault/ imports Fyne or the app's packages, even
#      indirectly (go list -deps): the engine builds, tests and runs
#      headless without cgo;
#   2. the window's packages (app, app/ui, app/ui/admin) reach the engine
#      only through its value types: of this module they import only the
#      window's own packages, assets, internal/launch, internal/settings,
#      internal/logring, mps (devices, sessions, tunnel info), mps/history
#      (history records), mps/toolbox and mps/wsman (the AMT toolbox's
#      statuses, actions, sentences and log records) and vault; app/adapter is the one place where the
#      window meets the running engine;
#   3. production code never imports mps/amtsim (the simulator), except the
#      demo and simulate commands (internal/cli/demo.go, simulate.go, simulate_lan.go); test
#      support packages (mps/amtsim/simenv among them), benchmarks and
#      scripts/loadtest may.
#
#   bash scripts/imports.sh        # prints each broken rule; exit 1 if any
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
MOD=$(go list -m) || exit 1
broken=0
complain() { echo "imports: $*" >&2; broken=1; }

# 1. The engine and the vault never depend on Fyne or the window.
while read -r pkg deps; do
	bad=()
	for d in $deps; do
		case $d in
		fyne.io/* | "$MOD"/app | "$MOD"/app/*) bad+=("${d#"$MOD"/}") ;;
		esac
	done
	[ "${#bad[@]}" -eq 0 ] ||
		complain "${pkg#"$MOD"/} depends on ${bad[0]} (and ${#bad[@]} packages of Fyne or the window in all, through go list -deps): nothing under mps/ or vault/ may import Fyne or the window"
done < <(go list -f '{{.ImportPath}} {{join .Deps " "}}' ./mps/... ./vault/...)

# 2. The window's packages import only value types of the engine.
allowed=" $MOD/assets $MOD/internal/launch $MOD/internal/settings $MOD/internal/logring $MOD/mps $MOD/mps/history $MOD/mps/toolbox $MOD/mps/wsman $MOD/vault "
while read -r pkg imports; do
	for i in $imports; do
		case $i in
		"$MOD"/app | "$MOD"/app/*) continue ;;
		"$MOD"/*) ;;
		*) continue ;;
		esac
		case $allowed in
		*" $i "*) ;;
		*) complain "${pkg#"$MOD"/} imports ${i#"$MOD"/}: the window reaches the engine only through mps value types (or app/adapter)" ;;
		esac
	done
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./app ./app/ui ./app/ui/admin)

# 3. The simulator stays out of production code.
sim=$MOD/mps/amtsim
while read -r pkg deps; do
	case ${pkg#"$MOD"} in
	"" | /internal/cli | /mps/amtsim | /mps/amtsim/simenv | /scripts/* | /app/uibench | */instancetest | */vaulttest | /internal/testutil) continue ;;
	esac
	case " $deps " in
	*" $sim "*) complain "${pkg#"$MOD"/} depends on mps/amtsim: production code never imports the simulator" ;;
	esac
done < <(go list -f '{{.ImportPath}} {{join .Deps " "}}' ./...)
while read -r f; do
	case $(basename "$f") in
	demo.go | simulate.go | simulate_lan.go) ;;
	*) complain "internal/cli/$(basename "$f") imports mps/amtsim: only the demo and simulate commands may" ;;
	esac
done < <(go list -f '{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}' ./internal/cli ./ | xargs grep -l "\"$sim\"")

if [ "$broken" -ne 0 ]; then
	exit 1
fi
echo "import rules hold: the engine and vault never reach Fyne or the window; the window reaches the engine through its value types; the simulator stays in the demo and simulate commands"
