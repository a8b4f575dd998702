#!/usr/bin/env bash
# Install the third-party peers the tests drive:
# Mono's WCF (with System.ServiceModel.Web), Node.js, curl, Chromium, systemd-analyze,
# nats-server and HAProxy (apt; the cluster tests start them on loopback); python `wcf` and `pynettcp` (PyPI, in a
# venv under target/peers); `hyco-ws` and `hyco-https` (npm, in
# tests/peers/hc), rhea (npm, tests/peers/amqp), ws with bufferutil (npm,
# tests/peers/wsnode, for a benchmark); websocat (crates.io, under target/peers/tools).
# Idempotent: what is already there is not fetched again.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
peers="$root/target/peers"
mkdir -p "$peers"

apt_packages=()
command -v mcs >/dev/null || apt_packages+=(mono-mcs libmono-system-servicemodel4.0a-cil mono-runtime)
[ -f /usr/lib/mono/4.5/System.ServiceModel.Web.dll ] || apt_packages+=(libmono-system-servicemodel-web4.0-cil)
command -v python3 >/dev/null || apt_packages+=(python3 python3-venv)
command -v node >/dev/null || apt_packages+=(nodejs npm)
command -v curl >/dev/null || apt_packages+=(curl)
command -v systemd-analyze >/dev/null || apt_packages+=(systemd)
command -v chromium >/dev/null || apt_packages+=(chromium)
[ -x /usr/sbin/nats-server ] || [ -x /usr/bin/nats-server ] || apt_packages+=(nats-server)
[ -x /usr/sbin/haproxy ] || [ -x /usr/bin/haproxy ] || apt_packages+=(haproxy)
if ((${#apt_packages[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
fi

if ! "$peers/venv/bin/python" -c 'import wcf, pynettcp' 2>/dev/null; then
  rm -rf "$peers/venv"
  python3 -m venv "$peers/venv"
  "$peers/venv/bin/pip" install -q --disable-pip-version-check pynettcp==0.1.0 wcf==0.5.5
fi

# The Mono WCF peer, rebuilt when its source changes.
src="$root/tests/peers/MonoPeer.cs"
exe="$peers/MonoPeer.exe"
if [ ! -f "$exe" ] || [ "$src" -nt "$exe" ]; then
  mcs -nologo -out:"$exe" -r:System.ServiceModel.dll -r:System.Runtime.Serialization.dll -r:System.Xml.dll "$src"
fi

# The Mono WCF web peer (WebHttpBinding, BasicHttpBinding), likewise.
src="$root/tests/peers/MonoWeb.cs"
exe="$peers/MonoWeb.exe"
if [ ! -f "$exe" ] || [ "$src" -nt "$exe" ]; then
  mcs -nologo -out:"$exe" -r:System.ServiceModel.dll -r:System.ServiceModel.Web.dll -r:System.Runtime.Serialization.dll "$src"
fi

# The Hybrid Connections SDKs (npm), with the `http` override in tests/peers/hc/package.json.
hc="$root/tests/peers/hc"
if [ ! -d "$hc/node_modules/hyco-ws" ] || [ ! -d "$hc/node_modules/hyco-https" ]; then
  (cd "$hc" && npm install --no-audit --no-fund --loglevel=error)
fi

# rhea (npm), an independent AMQP 1.0 client playing a WCF relay listener.
amqp="$root/tests/peers/amqp"
if [ ! -d "$amqp/node_modules/rhea" ]; then
  (cd "$amqp" && npm install --no-audit --no-fund --loglevel=error)
fi

# ws 8 with bufferutil (npm): the Node.js endpoints and relay of the
# Hybrid Connections throughput benchmark (not needed by the tests).
wsnode="$root/tests/peers/wsnode"
if [ ! -d "$wsnode/node_modules/bufferutil" ]; then
  (cd "$wsnode" && npm install --no-audit --no-fund --loglevel=error)
fi

# websocat (crates.io), a raw WebSocket client used as a Hybrid Connections sender.
if [ ! -x "$peers/tools/bin/websocat" ]; then
  cargo install --quiet --locked --root "$peers/tools" --version '^1' websocat
fi
echo "peers ready in $peers"
