; The Windows installer for Presence. packaging/build.sh runs
;
;   makensis -DVERSION=0.1.0 -DBUILD=1 -DEXE=presence.exe -DICON=presence.ico -DOUTFILE=Presence-Setup-0.1.0.exe presence.nsi
;
; What it does, by double-click: asks for administrator rights (UAC), installs
; presence.exe for all users into Program Files\Presence, adds a Start-menu
; shortcut (and a desktop shortcut, ticked by default, which the user may
; untick), and registers the uninstaller in Settings > Apps (Add/Remove
; Programs). It never uses the network. The uninstaller removes what the
; installer put there and nothing else: each user's data directory
; (%AppData%\presence, with the certificate authority) and the secrets in
; Credential Manager are kept, because deleting the CA root would mean
; provisioning every AMT device again.
;
; `Presence-Setup-VERSION.exe /S` installs silently (with the desktop
; shortcut); `uninstall.exe /S` removes silently.

; The installer is a 32-bit program, as most NSIS installers are (every
; Windows runs it, and on 32-bit Windows it can say why Presence cannot be
; installed); it installs into the 64-bit Program Files and registry view.
; -DTARGET=amd64-unicode makes a 64-bit one instead, which Debian's wine64
; can run for a test.
!ifndef TARGET
  !define TARGET x86-unicode
!endif
Target ${TARGET}
ManifestDPIAware true
ManifestSupportedOS all
SetCompressor /SOLID lzma
RequestExecutionLevel admin

!macro Need NAME
  !ifndef ${NAME}
    !error "define ${NAME} with -D${NAME}=... (packaging/build.sh does)"
  !endif
!macroend
!insertmacro Need VERSION
!insertmacro Need BUILD
!insertmacro Need EXE
!insertmacro Need ICON
!insertmacro Need OUTFILE

!define APP_NAME "Presence"
!define PUBLISHER "Presence developers"
!define WEBSITE "https://github.com/presence-mps/presence"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APP_NAME}"

!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "x64.nsh"
!include "FileFunc.nsh"

Name "${APP_NAME}"
OutFile "${OUTFILE}"
InstallDir "$PROGRAMFILES64\${APP_NAME}"
BrandingText "${APP_NAME} ${VERSION}"

VIProductVersion "${VERSION}.${BUILD}"
VIAddVersionKey "ProductName" "${APP_NAME}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}.${BUILD}"
VIAddVersionKey "FileDescription" "${APP_NAME} ${VERSION} setup"
VIAddVersionKey "CompanyName" "${PUBLISHER}"
VIAddVersionKey "LegalCopyright" "${PUBLISHER}"

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING
!define MUI_COMPONENTSPAGE_NODESC
!define MUI_FINISHPAGE_NOAUTOCLOSE
; No "Run Presence" box on the last page: the installer runs elevated, and
; the window would run as the administrator, with the administrator's data
; directory. The Start menu starts it as the user.

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH

!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES

!insertmacro MUI_LANGUAGE "English"

Function .onInit
  ${IfNot} ${RunningX64}
    MessageBox MB_ICONSTOP|MB_OK "${APP_NAME} needs 64-bit Windows."
    Abort
  ${EndIf}
  SetRegView 64
  SetShellVarContext all
  ; A reinstall or an upgrade goes where the last install went, unless /D=
  ; says otherwise. (InstallDirRegKey would read the 32-bit registry view.)
  ${If} $INSTDIR == "$PROGRAMFILES64\${APP_NAME}"
    ReadRegStr $0 HKLM "${UNINSTALL_KEY}" "InstallLocation"
    ${If} $0 != ""
      StrCpy $INSTDIR $0
    ${EndIf}
  ${EndIf}
FunctionEnd

Function un.onInit
  SetRegView 64
  SetShellVarContext all
FunctionEnd

Section "${APP_NAME} (with a Start-menu shortcut)" SecApp
  SectionIn RO
  SetOutPath "$INSTDIR"
  File "/oname=presence.exe" "${EXE}"
  WriteUninstaller "$INSTDIR\uninstall.exe"
  CreateShortcut "$SMPROGRAMS\${APP_NAME}.lnk" "$INSTDIR\presence.exe" "" "$INSTDIR\presence.exe" 0

  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayName" "${APP_NAME}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "URLInfoAbout" "${WEBSITE}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\presence.exe,0"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKLM "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  IntFmt $0 "0x%08X" $0
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "EstimatedSize" "$0"
SectionEnd

Section "Desktop shortcut" SecDesktop
  CreateShortcut "$DESKTOP\${APP_NAME}.lnk" "$INSTDIR\presence.exe" "" "$INSTDIR\presence.exe" 0
SectionEnd

Section "Uninstall"
  Delete "$DESKTOP\${APP_NAME}.lnk"
  Delete "$SMPROGRAMS\${APP_NAME}.lnk"
  Delete "$INSTDIR\presence.exe"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKLM "${UNINSTALL_KEY}"
SectionEnd
