#!/usr/bin/env bash
# Builds Presence's packages into dist/ (run scripts/setup.sh first):
#
#   bash packaging/build.sh [linux|windows|all]     # default: all
#
#   linux    presence-VERSION-linux-amd64.tar.xz   `fyne package -os linux`: usr/local/{bin,share}
#                                                  and a Makefile (install, user-install, uninstall)
#            presence_VERSION_amd64.deb            /usr/bin/presence, the .desktop file, the icon
#   windows  presence-VERSION-windows-amd64.exe    the program, cross-compiled with mingw-w64
#            Presence-Setup-VERSION.exe            NSIS installer (packaging/windows/presence.nsi)
#
# The name, ID, version and icon come from FyneApp.toml. Each target's
# program is compiled once, with a plain `go build` (cgo, the window
# included): `fyne package` gets that binary through --exe, because it sets
# its own CGO_CFLAGS and would otherwise compile Fyne's C code (GLFW) again,
# about 6 minutes on 2 cores. For Windows, `fyne package` always compiles a
# second time (to link its icon resource), so this script makes that
# resource itself with mingw-w64's windres and skips `fyne package`.
# macOS is built on a Mac: packaging/README.md.
#
# Every command in a step checks its own exit status: step (scripts/lib.sh)
# runs it from an `&&`/`||` list, where bash ignores `set -e`.
set -euo pipefail
SCRIPT_NAME=package
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
# shellcheck source=packaging/metadata.sh
. "$REPO_ROOT/packaging/metadata.sh"
cd "$REPO_ROOT"

target=${1:-all}
case "$target" in
linux | windows | all) ;;
*) die "usage: packaging/build.sh [linux|windows|all]" ;;
esac

# The Debian package's Maintainer field.
DEB_MAINTAINER=${PRESENCE_DEB_MAINTAINER:-Presence developers <presence-mps@users.noreply.github.com>}
# Libraries GLFW loads with dlopen when it starts (so they are not in the
# binary's NEEDED list, and dpkg-shlibdeps cannot see them): cursors,
# monitors (RandR, Xinerama), input (XInput2) and video modes.
DEB_DLOPEN_DEPENDS="libxcursor1, libxrandr2, libxinerama1, libxi6, libxxf86vm1"
# The keychain vault's Secret Service on a desktop without one.
DEB_RECOMMENDS="gnome-keyring"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/presence-package.XXXXXX") || die "mktemp failed"
SYSO=$REPO_ROOT/zz_packaging_windows_amd64.syso
cleanup() {
	rm -rf "$WORK"
	rm -f "$SYSO"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM # bash skips the EXIT trap when a signal kills it
mkdir -p "$DIST"

need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || die "$c is missing: run scripts/setup.sh"
	done
}

# --- Linux --------------------------------------------------------------------

linux_binary() {
	mkdir -p "$WORK/linux" || die "mkdir failed"
	local cmd=(go build -ldflags "-s -w $VERSION_LDFLAG" -o "$WORK/linux/presence" .)
	echo "+ ${cmd[*]}   (with the window: cgo, GL)"
	"${cmd[@]}" || die "go build failed"
	file "$WORK/linux/presence"
	"$WORK/linux/presence" version || die "the program does not run"
}

linux_archive() {
	local fyne=$PRESENCE_TOOLS_BIN/fyne
	[ -x "$fyne" ] || die "$fyne missing: run scripts/setup.sh"
	tool_is_pinned "$fyne" fyne.io/tools "$FYNE_TOOLS_VERSION" ||
		echo "WARNING: $fyne is not fyne.io/tools $FYNE_TOOLS_VERSION built with $(go env GOVERSION); run scripts/setup.sh" >&2
	# fyne package writes NAME.tar.xz into its working directory and reads
	# FyneApp.toml from --src; with --exe it builds nothing. But after every
	# package it adds 1 to Build in --src's FyneApp.toml (and rewrites the
	# file), so --src is a scratch copy: FyneApp.toml, the icon, and a Go
	# file (it wants one there).
	local src=$WORK/fyne-src
	mkdir -p "$src/$(dirname "$APP_ICON_REL")" || die "mkdir failed"
	cp FyneApp.toml "$src/" || die "cp failed"
	cp "$APP_ICON" "$src/$APP_ICON_REL" || die "cp failed"
	printf 'package main\n' >"$src/main.go"
	echo "+ fyne package -os linux --exe $WORK/linux/presence --src $src   ($src: a copy of FyneApp.toml and the icon)"
	(cd "$WORK/linux" && "$fyne" package -os linux --exe "$WORK/linux/presence" --src "$src") ||
		die "fyne package failed"
	mv "$WORK/linux/$APP_NAME.tar.xz" "$DIST/$TARXZ_FILE" || die "fyne package wrote no $APP_NAME.tar.xz"
	tar -tvJf "$DIST/$TARXZ_FILE" || die "cannot list $TARXZ_FILE"
	tar -tJf "$DIST/$TARXZ_FILE" | grep -q '/Makefile$' || die "$TARXZ_FILE has no Makefile"
	tar -tJf "$DIST/$TARXZ_FILE" | grep -q '/bin/presence$' || die "$TARXZ_FILE has no bin/presence"
}

# shlib_depends ROOT BIN prints the Depends dpkg-shlibdeps finds for BIN
# (a path inside the package tree ROOT/debian/presence), e.g.
# "libc6 (>= 2.34), libgl1, libx11-6 (>= 2:1.2.99.901)".
shlib_depends() {
	local root=$1 bin=$2 out
	printf 'Source: presence\n\nPackage: presence\nArchitecture: amd64\n' >"$root/debian/control"
	out=$(cd "$root" && dpkg-shlibdeps -O -e"$bin") || return 1
	sed -n 's/^shlibs:Depends=//p' <<<"$out"
}

linux_deb() {
	local root=$WORK/deb pkg=$WORK/deb/debian/presence desktop depends size
	rm -rf "$root"
	mkdir -p "$pkg/DEBIAN" || die "mkdir failed"
	install -Dm0755 "$WORK/linux/presence" "$pkg/usr/bin/presence" || die "install failed"
	# The .desktop file is the one fyne package wrote (Exec=presence,
	# Icon=the app ID), taken from the archive so both packages agree.
	tar -xJf "$DIST/$TARXZ_FILE" -C "$root" --wildcards "*/applications/$APP_ID.desktop" ||
		die "no $APP_ID.desktop in $TARXZ_FILE"
	desktop=$(find "$root" -path '*/applications/*' -name "$APP_ID.desktop" -not -path "$pkg/*" | head -n1)
	[ -n "$desktop" ] || die "no $APP_ID.desktop in $TARXZ_FILE"
	install -Dm0644 "$desktop" "$pkg/usr/share/applications/$APP_ID.desktop" || die "install failed"
	install -Dm0644 "$APP_ICON" "$pkg/usr/share/icons/hicolor/512x512/apps/$APP_ID.png" || die "install failed"
	depends=$(shlib_depends "$root" debian/presence/usr/bin/presence) || die "dpkg-shlibdeps failed"
	[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies"
	rm -f "$root/debian/control"
	size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
	cat >"$pkg/DEBIAN/control" <<EOF
Package: presence
Version: $APP_VERSION
Architecture: amd64
Maintainer: $DEB_MAINTAINER
Installed-Size: $size
Depends: $depends, $DEB_DLOPEN_DEPENDS
Recommends: $DEB_RECOMMENDS
Section: net
Priority: optional
Homepage: $APP_WEBSITE
Description: $APP_GENERIC_NAME
 $APP_COMMENT.
 .
 Intel AMT machines outside the office open CIRA tunnels to Presence;
 management consoles on the office LAN reach their AMT ports (WS-Man, the
 AMT web UI, Serial-over-LAN, KVM) through its HTTP and SOCKS proxy.
 Running \`presence\` opens the desktop window; \`presence serve\` runs the
 server without one.
EOF
	(cd "$pkg" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums" || die "md5sums failed"
	dpkg-deb --root-owner-group -Zxz --build "$pkg" "$DIST/$DEB_FILE" || die "dpkg-deb --build failed"
	dpkg-deb --info "$DIST/$DEB_FILE" || die "dpkg-deb cannot read $DEB_FILE"
	dpkg-deb --contents "$DIST/$DEB_FILE" || die "dpkg-deb cannot list $DEB_FILE"
}

# --- Windows ------------------------------------------------------------------

windows_binary() {
	local res=$WORK/windows/res
	mkdir -p "$res" || die "mkdir failed"
	# The icon (for the program and the installer) and the manifest
	# (`fyne package -os windows` writes the same one) ...
	convert "$APP_ICON" -define icon:auto-resize=256,128,64,48,32,16 "$res/presence.ico" || die "convert failed"
	cat >"$res/presence.exe.manifest" <<EOF
<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<assembly xmlns="urn:schemas-microsoft-com:asm.v1" manifestVersion="1.0" xmlns:asmv3="urn:schemas-microsoft-com:asm.v3">
<assemblyIdentity version="$APP_VERSION.$APP_BUILD" processorArchitecture="*" name="$APP_NAME" type="win32"/>
</assembly>
EOF
	# ... go into a resource object next to main.go for the link; the
	# _windows_amd64 suffix keeps every other build from seeing it, and the
	# EXIT trap removes it.
	x86_64-w64-mingw32-windres -I "$res" -DVERSION_COMMA="${APP_VERSION//./,},$APP_BUILD" -DVERSION_STR="\\\"$APP_VERSION\\\"" \
		-O coff -i packaging/windows/presence.rc -o "$SYSO" || die "windres failed"
	local cmd=(go build -ldflags "-H=windowsgui -s -w $VERSION_LDFLAG" -o "$WORK/windows/presence.exe" .)
	echo "+ CC=x86_64-w64-mingw32-gcc CGO_ENABLED=1 GOOS=windows GOARCH=amd64 ${cmd[*]}"
	CC=x86_64-w64-mingw32-gcc CGO_ENABLED=1 GOOS=windows GOARCH=amd64 "${cmd[@]}" || { rm -f "$SYSO"; die "go build failed"; }
	rm -f "$SYSO"
	file "$WORK/windows/presence.exe"
	file "$WORK/windows/presence.exe" | grep -q 'PE32+ executable (GUI) x86-64' || die "presence.exe is not a 64-bit Windows GUI program"
	# Only DLLs every Windows has: a mingw runtime DLL here would be missing
	# on the user's machine.
	local dlls
	dlls=$(x86_64-w64-mingw32-objdump -p "$WORK/windows/presence.exe" | sed -n 's/^[[:space:]]*DLL Name: //p' | sort -u)
	[ -n "$dlls" ] || die "objdump found no DLL imports in presence.exe"
	echo "imports: $(tr '\n' ' ' <<<"$dlls")"
	if grep -Eiv '^(kernel32|user32|gdi32|shell32|ole32|opengl32|advapi32|winmm|ws2_32|dnsapi|iphlpapi|crypt32|secur32|userenv|bcrypt|bcryptprimitives|ntdll|powrprof|mswsock|shlwapi|imm32|dwmapi|msvcrt|comdlg32|comctl32|oleaut32|uxtheme|setupapi|version|cfgmgr32|dinput8|xinput[0-9_]*)\.dll$' <<<"$dlls"; then
		die "presence.exe imports the DLLs above, which Windows does not have"
	fi
	x86_64-w64-mingw32-objdump -h "$WORK/windows/presence.exe" | grep -q '\.rsrc' || die "presence.exe has no resources (icon, version)"
	cp "$WORK/windows/presence.exe" "$DIST/$WINEXE_FILE" || die "cp failed"
}

windows_installer() {
	local cmd=(makensis -V2 -DVERSION="$APP_VERSION" -DBUILD="$APP_BUILD" -DEXE="$WORK/windows/presence.exe"
		-DICON="$WORK/windows/res/presence.ico" -DOUTFILE="$DIST/$SETUP_FILE" packaging/windows/presence.nsi)
	echo "+ ${cmd[*]}"
	"${cmd[@]}" || die "makensis failed"
	file "$DIST/$SETUP_FILE"
	file "$DIST/$SETUP_FILE" | grep -q 'Nullsoft Installer' || die "$SETUP_FILE is not an NSIS installer"
}

# ------------------------------------------------------------------------------

echo "package: $APP_NAME $APP_VERSION (build $APP_BUILD), $APP_ID -> $DIST"
failed=0
if [ "$target" = linux ] || [ "$target" = all ]; then
	need go tar xz file dpkg-deb dpkg-shlibdeps
	rm -f "$DIST/$TARXZ_FILE" "$DIST/$DEB_FILE"
	step "linux: go build" linux_binary &&
		step "linux: fyne package" linux_archive &&
		step "linux: .deb" linux_deb || failed=1
fi
if [ "$target" = windows ] || [ "$target" = all ]; then
	need go x86_64-w64-mingw32-gcc x86_64-w64-mingw32-windres x86_64-w64-mingw32-objdump makensis convert file
	rm -f "$DIST/$WINEXE_FILE" "$DIST/$SETUP_FILE"
	step "windows: go build (mingw-w64)" windows_binary &&
		step "windows: NSIS installer" windows_installer || failed=1
fi
step_summary
if [ "$failed" -ne 0 ]; then
	echo "package: FAILED (see the steps above)" >&2
	exit 1
fi
(cd "$DIST" && ls -l -- *"$APP_VERSION"*)
