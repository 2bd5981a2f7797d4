#!/usr/bin/env bash
# Remove Semtrace. Keeps the data dir unless --purge.
#   ./uninstall.sh [--prefix DIR] [--data-dir DIR] [--purge] [--no-service] [--config-dir DIR]
# The config dir (/etc/semtrace: the passphrase, which also opens every backup taken, and
# the policies) is kept either way; it is named at the end.
set -euo pipefail
prefix="/opt/semtrace"; data_dir="/var/lib/semtrace"; purge=0; service=1; etc="/etc/semtrace"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --data-dir) data_dir="$2"; shift 2 ;;
    --purge) purge=1; shift ;;
    --no-service) service=0; shift ;;
    --config-dir) etc="$2"; shift 2 ;;
    -h|--help) sed -n 2,5p "$0"; exit 0 ;;
    *) echo "uninstall: unknown option $1" >&2; exit 2 ;;
  esac
done
die() { echo "uninstall: $*" >&2; exit 1; }
# as another user, systemctl failed unseen and rm then stopped on its own raw error
if [ "$service" = 1 ] && [ "$(id -u)" != 0 ]; then
  die "removing the service needs root (run it with sudo; --no-service for an install without one); nothing was removed."
fi
# rm -rf only what install.sh made: a mistyped --prefix or --data-dir removes nothing
if [ -e "$prefix" ] && ! { [ -f "$prefix/pyvenv.cfg" ] && [ -e "$prefix/bin/semtrace" ]; }; then
  die "$prefix is not a Semtrace install (no pyvenv.cfg and bin/semtrace); nothing was removed."
fi
if [ "$purge" = 1 ] && [ -e "$data_dir" ] && [ ! -f "$data_dir/keyring.json" ] \
    && [ -n "$(ls -A "$data_dir" 2>/dev/null)" ]; then
  die "$data_dir is not a Semtrace data dir (no keyring.json); nothing was removed."
fi
# a backup holds a keyring.json too: a --data-dir mistyped as the backup's folder removed it
if [ "$purge" = 1 ] && [ -f "$data_dir/backup.json" ]; then
  die "$data_dir is a backup made by 'semtrace backup', not a data dir: give the data dir to purge (an uninstall never removes a backup; delete it by hand once it is not needed); nothing was removed."
fi
# A mistyped folder that does not exist was not refused: the unit went, and the uninstall
# said it had removed the data dir while the store (its records and keys) stayed on disk.
unit=/etc/systemd/system/semtrace.service
if [ "$service" = 1 ] && [ -f "$unit" ]; then
  was_prefix=$(sed -n 's|^ExecStart=\(/[^ ]*\)/bin/semtrace serve .*|\1|p' "$unit" | head -1)
  was_data=$(sed -n 's/^ExecStart=.* --data-dir \([^ ]*\).*/\1/p' "$unit" | head -1)
  if [ -n "$was_prefix" ] && [ "$(realpath -m "$was_prefix")" != "$(realpath -m "$prefix")" ]; then
    die "the service installed here runs from $was_prefix, not $prefix: give --prefix $was_prefix; nothing was removed."
  fi
  if [ "$purge" = 1 ] && [ -n "$was_data" ] \
      && [ "$(realpath -m "$was_data")" != "$(realpath -m "$data_dir")" ]; then
    die "the service installed here keeps its data in $was_data, not $data_dir: give --data-dir $was_data to purge it; nothing was removed."
  fi
fi
if [ "$purge" = 1 ] && [ ! -e "$data_dir" ]; then
  die "there is no data dir $data_dir to purge (a mistyped --data-dir?): give the data dir to remove, or leave out --purge; nothing was removed."
fi
if [ ! -e "$prefix" ] && [ "$purge" = 0 ] && ! { [ "$service" = 1 ] && [ -f "$unit" ]; }; then
  die "there is no Semtrace install in $prefix (a mistyped --prefix?); nothing was removed."
fi
had_prefix=0; [ -e "$prefix" ] && had_prefix=1
metrics_group=""
if [ "$service" = 1 ] && [ -f /etc/systemd/system/semtrace.service ]; then
  # install.sh --metrics-group made the metrics socket's group (or found it)
  metrics_group=$(sed -n 's/^SupplementaryGroups=\([^ ]*\).*/\1/p' /etc/systemd/system/semtrace.service | head -1)
  systemctl disable --now semtrace 2>/dev/null || true
  rm -f /etc/systemd/system/semtrace.service
  systemctl daemon-reload 2>/dev/null || true
fi
rm -rf "$prefix"
# each sentence names only what was there: the wrapper left by install.sh goes with the prefix,
# so the data dir kept is removed later with the bundle's uninstall.sh
if [ "$had_prefix" = 1 ]; then removed="removed $prefix"; else removed="$prefix held no install"; fi
if [ "$purge" = 1 ]; then
  rm -rf "$data_dir"
  if [ "$had_prefix" = 1 ]; then
    echo "uninstall: removed $prefix and the data dir $data_dir."
  else
    echo "uninstall: removed the data dir $data_dir ($prefix held no install)."
  fi
elif [ -e "$data_dir" ]; then
  echo "uninstall: $removed; the data dir $data_dir was kept (remove it later with the bundle's uninstall.sh --purge --data-dir $data_dir)."
else
  echo "uninstall: $removed."
fi
if [ -e "$etc" ]; then
  echo "uninstall: kept $etc (the passphrase, which opens every backup taken, and the policies); remove it by hand once no backup is needed."
fi
# install.sh made the service's user and group (or found them): an install again reuses them
if [ "$service" = 1 ] && id semtrace >/dev/null 2>&1; then
  if [ "$purge" = 1 ]; then
    echo "uninstall: kept the system user and group semtrace (the gateway's user may be in the group); remove them with 'userdel semtrace' once nothing else uses them."
  else
    echo "uninstall: kept the system user and group semtrace, which own the data dir $data_dir."
  fi
fi
if [ -n "$metrics_group" ] && getent group "$metrics_group" >/dev/null 2>&1; then
  echo "uninstall: kept the system group $metrics_group (the metrics socket's: a scraper's user may be in it); remove it with 'groupdel $metrics_group' once nothing else uses it."
fi
