#!/bin/sh
# A coding agent's pre-tool hook: every tool call it is registered for waits
# for a reviewer's approval in Countersign. It reads the tool call as JSON on
# stdin (Claude Code's PreToolUse input: tool_name, tool_input, session_id,
# tool_use_id, cwd), files it with `countersign ask`, and exits 0 when it is
# approved and 2 otherwise, which blocks the call and shows the agent the
# reason on stderr. (Exit 1 would not block: any other failure is mapped to 2
# too, so a lost connection fails closed.)
#
# Needs countersign and jq on PATH, and COUNTERSIGN_URL and COUNTERSIGN_TOKEN
# (a token with the approvals:write scope). COUNTERSIGN_HOOK_TIMEOUT (default
# 9m) must stay under the hook timeout the agent is configured with.
set -u

call=$(cat)
action=$(printf '%s' "$call" | jq -c '{
  kind: ("coding_agent." + (.tool_name // "tool")),
  summary: ((if .tool_name == "Bash" then "Run: " + (.tool_input.command // "" | tostring)
             elif .tool_input.file_path then (.tool_name // "tool") + " " + .tool_input.file_path
             else "Use " + (.tool_name // "a tool") end)[0:200]),
  target: (.cwd // ""),
  params: (.tool_input // {}),
  risk: "medium"
}') || { echo "pretool.sh: the tool call on stdin is not JSON" >&2; exit 2; }
session=$(printf '%s' "$call" | jq -r '.session_id // ""')
call_id=$(printf '%s' "$call" | jq -r '.tool_use_id // ""')

# The tool call's id as the idempotency key: if the hook is run again for the
# same call, it waits for the same approval instead of filing a second one.
set -- --timeout "${COUNTERSIGN_HOOK_TIMEOUT:-9m}" --context agent=coding-agent --context "session=$session"
if [ -n "$call_id" ]; then
  set -- "$@" --key "hook_$call_id" --context "tool_call_id=$call_id"
fi

printf '%s' "$action" | countersign ask "$@" >/dev/null
code=$?
case $code in
  0) exit 0 ;;
  1) echo "A reviewer refused this tool call in Countersign (reason above); do not retry it unchanged." >&2 ;;
  3) echo "No reviewer decided this tool call in time; it was not run. Ask the user before trying again." >&2 ;;
  *) echo "Countersign could not be asked (exit $code), so this tool call was blocked." >&2 ;;
esac
exit 2
