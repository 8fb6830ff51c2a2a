#!/usr/bin/env bash
# The main job (README's first command). Until the end-to-end demo exists, it runs the event-store demo:
# infrastructure up, a task stream created, started, dispatched and completed, its history replayed and printed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

echo "==> [1/3] infrastructure (PostgreSQL + mosquitto on loopback)"
scripts/infra.sh up
eval "$(scripts/infra.sh env)"

echo "==> [2/3] building the manager (Release)"
dotnet build src/Manager/Propeller.Manager.csproj -c Release -nologo -clp:ErrorsOnly

echo "==> [3/3] event-store demo"
dotnet src/Manager/bin/Release/net10.0/propeller-manager.dll demo
