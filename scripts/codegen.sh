#!/usr/bin/env bash
# Pre-generates the Wolverine pipeline's handler code (ADR 0014) into src/Manager/Internal/Generated, which the manager
# loads in TypeLoadMode.Static (no Roslyn at run time). Run it after changing a Wolverine handler, a message, a policy
# or middleware, or a service a handler takes, and commit the result: GeneratedCodeTests fails while the checked-in
# code differs from what this writes.
#
# The old files are removed first and the manager built without them (a changed handler signature can leave the old
# generated code uncompilable), then `propeller-manager codegen write` writes the new ones and the manager is built
# again with them. Needs no database or broker.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
generated="$root/src/Manager/Internal/Generated"
rm -rf "$generated"
dotnet build "$root/src/Manager/Propeller.Manager.csproj" -v quiet -nologo
# The content root (the working directory) decides where the files go: <content root>/Internal/Generated.
(cd "$root/src/Manager" && dotnet bin/Debug/net10.0/propeller-manager.dll codegen write | grep '^Wrote')
dotnet build "$root/src/Manager/Propeller.Manager.csproj" -v quiet -nologo
