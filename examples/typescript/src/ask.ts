// Files an action for approval and waits for the decision.
//
//   COUNTERSIGN_URL=http://localhost:8080 COUNTERSIGN_TOKEN=cs_... \
//     node dist/ask.js [--timeout SECONDS] [--key KEY] < action.json
//
// Prints the approval's id as soon as it is filed, then the decided Approval
// as JSON. Exits 0 approved (execute outcome.params), 1 refused (rejected,
// changes requested, cancelled, failed), 3 still pending at the timeout,
// 2 on a usage or API error.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Client, type Action } from "./countersign.js";

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { timeout: { type: "string", default: "300" }, key: { type: "string", default: "" } } });
  const url = process.env.COUNTERSIGN_URL, token = process.env.COUNTERSIGN_TOKEN;
  if (!url || !token) {
    console.error("ask.js: set COUNTERSIGN_URL and COUNTERSIGN_TOKEN");
    return 2;
  }
  let action: Action;
  try {
    action = JSON.parse(readFileSync(0, "utf8"));
  } catch (e) {
    console.error(`ask.js: the action on stdin is not JSON: ${(e as Error).message}`);
    return 2;
  }
  const client = new Client(url, token);
  let approval;
  try {
    approval = await client.requestApproval(action, values.key || `ts_${randomUUID()}`,
      { context: { agent: "examples/typescript/ask.ts" } });
    console.log(`approval ${approval.id} ${approval.status}`);
    approval = await client.wait(approval, Number(values.timeout));
  } catch (e) {
    console.error(`ask.js: ${(e as Error).message}`);
    return 2;
  }
  console.log(JSON.stringify(approval, null, 2));
  if (approval.status === "approved") return 0;
  return approval.status === "pending" ? 3 : 1;
}

process.exitCode = await main();
