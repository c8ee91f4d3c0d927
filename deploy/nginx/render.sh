#!/bin/sh
# Print the nginx site of the UI's two doors (beop-ui.conf.template, next to this script) with its
# values filled in. Every value has the one-box default below; override any in the environment:
#
#   deploy/nginx/render.sh > /etc/nginx/sites-available/beop-ui
#   OPERATORS_LISTEN=10.1.2.3:443 deploy/nginx/render.sh > ...
#
# The test of the door (beop_assets_tests/test_ui_door.py) renders its nginx site with this script too.
set -eu
: "${OPERATORS_LISTEN:=443}"               # the operators' door: a port (every address) or address:port
: "${WATCHERS_LISTEN:=8443}"               # the watchers' door
: "${OPERATORS_WEBSERVER:=127.0.0.1:3000}"  # dagster-webserver (beop-dagster-webserver.service)
: "${WATCHERS_WEBSERVER:=127.0.0.1:3001}"   # dagster-webserver --read-only (...-read-only.service)
: "${OPERATORS_HTPASSWD:=/etc/nginx/beop-ui-operators.htpasswd}"
: "${WATCHERS_HTPASSWD:=/etc/nginx/beop-ui-watchers.htpasswd}"
: "${TLS_CERT:=/etc/nginx/beop-ui.crt}"
: "${TLS_KEY:=/etc/nginx/beop-ui.key}"

for webserver in "$OPERATORS_WEBSERVER" "$WATCHERS_WEBSERVER"; do
  case "$webserver" in
    127.*:* | localhost:* | \[::1\]:*) ;;
    *) echo "render.sh: $webserver is not a loopback address: on one box the webservers listen on 127.0.0.1 only" >&2
       exit 1 ;;
  esac
done

site=$(mktemp)
trap 'rm -f "$site"' EXIT
sed -e "s|@OPERATORS_LISTEN@|$OPERATORS_LISTEN|g" \
    -e "s|@WATCHERS_LISTEN@|$WATCHERS_LISTEN|g" \
    -e "s|@OPERATORS_WEBSERVER@|$OPERATORS_WEBSERVER|g" \
    -e "s|@WATCHERS_WEBSERVER@|$WATCHERS_WEBSERVER|g" \
    -e "s|@OPERATORS_HTPASSWD@|$OPERATORS_HTPASSWD|g" \
    -e "s|@WATCHERS_HTPASSWD@|$WATCHERS_HTPASSWD|g" \
    -e "s|@TLS_CERT@|$TLS_CERT|g" \
    -e "s|@TLS_KEY@|$TLS_KEY|g" \
    "$(dirname "$0")/beop-ui.conf.template" >"$site"
if grep -n '@[A-Z_]*@' "$site" >&2; then
  echo "render.sh: placeholders left unfilled (above)" >&2
  exit 1
fi
cat "$site"
